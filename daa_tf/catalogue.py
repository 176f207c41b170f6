"""The attack catalogue: every attack's name, label and defaults, the loss names, the run-time
choices, and the plain-Python validation of an attack's settings.

This is the one home of these settings. It imports no TensorFlow, so the command-line layer reads
it before parsing flags; :mod:`daa_tf.attacks` builds the step rules from it and
:mod:`daa_tf.losses` binds the loss names to their functions. Rules: ``docs/algorithms.md``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Tuple, Union

# Loss names (docs/algorithms.md#losses) and their labels in tables.
LOSS_LABELS: Dict[str, str] = {"xent": "xent", "cw": "CW", "dlr": "DLR", "margin": "margin"}
LOSSES: Tuple[str, ...] = tuple(LOSS_LABELS)
PAPER_LOSSES: Tuple[str, ...] = ("xent", "cw")  # the DAA paper's (and the report's) columns

DEFAULT_PARTICLES = 200      # DAA: particles per group M
DEFAULT_DECAY = 1.0          # momentum PGD's mu
DEFAULT_STEPS_PER_ROUND = 10  # DAA: steps per round s (Algorithm 1)
DEFAULT_BATCH = 1000         # examples per compiled call when the caller gives none
DEFAULT_ODI_STEPS = 2        # ODI start: steps of output diversification (Tashiro et al. 2020)
DEFAULT_TARGETS = 9          # MultiTargeted: target classes per example (Gowal et al. 2019)
APGD_INITIAL_STEP = 2.0      # APGD: the initial step size, in units of eps

# tf.distribute strategies of daa_tf.distribute.make_strategy, and the XLA choices of the CLIs.
STRATEGIES: Tuple[str, ...] = ("none", "mirrored", "multi_worker")
JIT_CHOICES: Dict[str, Optional[bool]] = {"auto": None, "true": True, "false": False}

LossSpec = Union[str, Callable[..., Any]]


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One attack of the catalogue.

    ``direction``: the step rule's kind, ``sign`` (``V = G``), ``momentum`` or the DAA particle
    rules ``blob`` / ``dgf``. ``one_step``: FGSM (exactly one step of ``eps`` by default).
    ``default_c``: DAA's constant per loss; ``c_per_unit_range``: ``c`` is stated for a unit pixel
    range and scaled by ``1 / (clip_max - clip_min)^2`` (DGF). ``random_start``: forced on or off
    whatever the caller asks (Rand+FGSM), None to follow the caller.
    ``schedule``: how ``x`` moves along the direction, ``fixed`` (PGD's ``x <- proj(x + a
    sign(V))``) or ``apgd`` (APGD's step-size schedule, docs/algorithms.md#apgd; initial step
    ``2 eps`` unless given). ``targets``: the default number of target classes (MultiTargeted,
    docs/algorithms.md#multitargeted; 0: an ordinary attack). ``best``: whether the attack
    returns its best iterate by default (docs/algorithms.md#best-iterates).
    """

    name: str
    label: str
    direction: str
    one_step: bool = False
    random_start: Optional[bool] = None
    default_c: Mapping[str, float] = dataclasses.field(default_factory=dict)
    c_per_unit_range: bool = False
    schedule: str = "fixed"
    targets: int = 0
    best: bool = False

    @property
    def interacting(self) -> bool:
        """True for DAA, whose examples interact inside groups (and so need rounds)."""
        return self.direction in ("blob", "dgf")

    def c_for(self, loss: LossSpec) -> Optional[float]:
        """The default ``c`` for ``loss`` (a callable loss takes xent's), None without one."""
        if not self.interacting:
            return None
        return self.default_c.get(loss if isinstance(loss, str) else "xent")


# DAA's c per loss (the authors' MNIST settings for xent and cw; margin is cw without its relu and
# offset, so it takes cw's; dlr is a ratio of logit differences of order one, like xent's loss
# scale: it takes xent's, unmeasured).
_BLOB_C: Mapping[str, float] = {"xent": 1.1, "cw": 10.0, "dlr": 1.1, "margin": 10.0}
_DGF_C: Mapping[str, float] = {"xent": -0.001, "cw": -0.01, "dlr": -0.001, "margin": -0.01}

ATTACKS: Dict[str, AttackSpec] = {spec.name: spec for spec in (
    AttackSpec("fgsm", "FGSM", "sign", one_step=True),
    AttackSpec("rand_fgsm", "Rand+FGSM", "sign", one_step=True, random_start=True),
    AttackSpec("pgd", "PGD", "sign"),
    AttackSpec("momentum_pgd", "momentum PGD", "momentum"),
    AttackSpec("daa_blob", "DAA-BLOB", "blob", default_c=_BLOB_C),
    AttackSpec("daa_dgf", "DAA-DGF", "dgf", default_c=_DGF_C, c_per_unit_range=True),
    AttackSpec("apgd", "APGD", "sign", schedule="apgd", best=True),
    AttackSpec("apgd_daa_blob", "APGD-DAA-BLOB", "blob", default_c=_BLOB_C, schedule="apgd",
               best=True),
    AttackSpec("apgd_daa_dgf", "APGD-DAA-DGF", "dgf", default_c=_DGF_C, c_per_unit_range=True,
               schedule="apgd", best=True),
    AttackSpec("multitargeted", "MultiTargeted", "sign", schedule="apgd",
               targets=DEFAULT_TARGETS, best=True),
)}
DAA_ATTACKS: Tuple[str, ...] = tuple(name for name, spec in ATTACKS.items() if spec.interacting)


@dataclasses.dataclass(frozen=True)
class CascadeSpec:
    """A cascade of catalogue attacks run one after another within a gradient budget
    (docs/algorithms.md#strongest)."""

    name: str
    label: str


CASCADES: Dict[str, CascadeSpec] = {"strongest": CascadeSpec("strongest", "strongest")}
# Everything a runner's --attack takes: the attacks, then the cascades.
RUNNABLE: Tuple[str, ...] = (*ATTACKS, *CASCADES)
DEFAULT_BUDGET = 1000        # the cascade's gradients per image when the caller gives none


def get_spec(attack: str) -> AttackSpec:
    """The catalogue entry of ``attack``; ValueError naming the choices otherwise."""
    try:
        return ATTACKS[attack]
    except (KeyError, TypeError):
        if attack in CASCADES:
            raise ValueError(f"{attack} is a cascade of attacks, not one attack: build its "
                             "settings with cascade_settings") from None
        raise ValueError(f"unknown attack {attack!r}: use one of {', '.join(RUNNABLE)}") from None


def label(attack: str) -> str:
    """The table label of an attack or cascade of :data:`RUNNABLE`."""
    if attack in CASCADES:
        return CASCADES[attack].label
    return get_spec(attack).label


def is_cascade(attack: Any) -> bool:
    """True for a cascade's name or settings (:data:`CASCADES`, :class:`CascadeSettings`)."""
    return isinstance(attack, CascadeSettings) or (isinstance(attack, str) and
                                                    attack in CASCADES)


def check_loss(loss: LossSpec) -> None:
    """Accepts a loss name of :data:`LOSSES` or a callable."""
    if not callable(loss) and loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: use one of {list(LOSSES)} or a callable "
                         "(logits [N, C], labels [N]) -> per-example loss [N]")


def _positive(name: str, value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def whole_number(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int, refusing non-integers and values below ``minimum``."""
    try:
        ok = int(value) == value and value >= minimum
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class AttackSettings:
    """A validated attack configuration: everything but the model and the data.

    ``eps``, ``step_size``, ``clip_min``, ``clip_max`` are in pixel units. ``c`` is DAA's constant
    as the user states it (DGF's per unit pixel range; see :attr:`effective_c`), None for the other
    attacks; ``particles`` the DAA group size (None otherwise); ``decay`` momentum PGD's (None
    otherwise). ``jit_compile`` None means "choose per device" (resolved by :mod:`daa_tf.loop`).
    ``odi_steps``: steps of the ODI start (0: none; docs/algorithms.md#odi), of ``odi_step_size``
    (None: ``eps``). ``targets``: MultiTargeted's number of target classes per example (0: an
    ordinary attack). ``best``: return each example's best iterate instead of the last.
    Build it with :func:`attack_settings`.
    """

    kind: ClassVar[str] = "attack"

    attack: str
    eps: float
    step_size: float
    steps: int
    loss: LossSpec = "xent"
    random_start: bool = True
    clip_min: float = 0.0
    clip_max: float = 1.0
    targeted: bool = False
    c: Optional[float] = None
    particles: Optional[int] = None
    decay: Optional[float] = None
    jit_compile: Optional[bool] = None
    odi_steps: int = 0
    odi_step_size: Optional[float] = None
    targets: int = 0
    best: bool = False

    @property
    def spec(self) -> AttackSpec:
        return ATTACKS[self.attack]

    @property
    def interacting(self) -> bool:
        return self.spec.interacting

    @property
    def batch_multiple(self) -> Optional[int]:
        """What a batch size must be a multiple of (DAA: its group size), None for any size."""
        return self.particles if self.interacting else None

    @property
    def effective_c(self) -> Optional[float]:
        """The ``c`` the step rule uses: DGF's scaled by ``1 / (clip_max - clip_min)^2``."""
        if self.c is None:
            return None
        if self.spec.c_per_unit_range:
            return self.c / (self.clip_max - self.clip_min) ** 2
        return self.c

    def replace(self, **changes: Any) -> "AttackSettings":
        """A copy with ``changes``, validated again."""
        fields = dataclasses.asdict(self)
        fields.update(changes)
        attack = fields.pop("attack")
        spec = get_spec(attack)
        if not spec.interacting:
            fields.pop("c"), fields.pop("particles")
        if spec.direction != "momentum":
            fields.pop("decay")
        return attack_settings(attack, **fields)


def attack_settings(attack: str, *, eps: float, step_size: Optional[float] = None,
                    steps: Optional[int] = None, loss: LossSpec = "xent",
                    random_start: bool = True, clip_min: float = 0.0, clip_max: float = 1.0,
                    targeted: bool = False, c: Optional[float] = None,
                    particles: Optional[int] = None, decay: Optional[float] = None,
                    jit_compile: Optional[bool] = None, init: Optional[str] = None,
                    odi_steps: Optional[int] = None, odi_step_size: Optional[float] = None,
                    targets: Optional[int] = None, best: Optional[bool] = None) -> AttackSettings:
    """Validates and completes an attack's settings (see :class:`AttackSettings`).

    FGSM and Rand+FGSM take exactly one step, of ``step_size`` (default ``eps``); Rand+FGSM always
    starts at random. DAA's ``c`` defaults per loss,
    its ``particles`` to :data:`DEFAULT_PARTICLES`; momentum's ``decay`` to :data:`DEFAULT_DECAY`.
    Settings that do not apply to ``attack`` are ignored.
    APGD-scheduled attacks start with ``step_size`` ``2 eps`` unless given. ``init="odi"`` (or
    ``odi_steps > 0``) adds the ODI start, ``odi_steps`` default :data:`DEFAULT_ODI_STEPS`.
    ``targets`` defaults to the attack's (:data:`DEFAULT_TARGETS` for MultiTargeted, else 0) and
    excludes ``targeted``; ``best`` defaults to the attack's (True for the APGD-scheduled ones).
    """
    spec = get_spec(attack)
    check_loss(loss)
    if spec.random_start is not None:
        random_start = spec.random_start
    eps, step_size, steps = _step_settings(spec, eps, step_size, steps)
    _check_box(clip_min, clip_max)
    extra: Dict[str, Any] = {**_direction_settings(spec, loss, c, particles, decay),
                             **_start_settings(init, odi_steps, odi_step_size),
                             **_target_settings(spec, targets, targeted, loss)}
    extra["best"] = spec.best if best is None else bool(best)
    return AttackSettings(attack=attack, eps=eps, step_size=step_size, steps=steps, loss=loss,
                          random_start=bool(random_start), clip_min=float(clip_min),
                          clip_max=float(clip_max), targeted=bool(targeted),
                          jit_compile=None if jit_compile is None else bool(jit_compile), **extra)


def default_step_size(attack: str, eps: Optional[float] = None,
                      configured: Optional[float] = None) -> Optional[float]:
    """The step size (pixel units) ``attack`` takes when the caller names none: ``eps`` for a
    one-step attack (FGSM), :data:`APGD_INITIAL_STEP` ``* eps`` for an APGD-scheduled one (its
    initial step), else ``configured`` (a challenge's or a training recipe's default; None: the
    caller must give one). With ``eps`` None the one-step and APGD-scheduled attacks answer None:
    their own default, which :func:`attack_settings` completes from ``eps``."""
    spec = get_spec(attack)
    if spec.one_step:
        return eps
    if spec.schedule == "apgd":
        return None if eps is None else APGD_INITIAL_STEP * _positive("eps", eps)
    return configured


def _step_settings(spec: AttackSpec, eps: Any, step_size: Any, steps: Any
                   ) -> Tuple[float, float, int]:
    """``(eps, step_size, steps)`` checked: one-step attacks take exactly one step; a missing
    ``step_size`` is :func:`default_step_size`'s."""
    if spec.one_step:
        if steps not in (None, 1):
            raise ValueError(f"{spec.name} takes exactly one step, got steps={steps}")
        steps = 1
    eps = _positive("eps", eps)
    if step_size is None:
        step_size = default_step_size(spec.name, eps)
    if step_size is None or steps is None:
        raise ValueError(f"{spec.name} needs step_size and steps")
    return eps, _positive("step_size", step_size), whole_number("steps", steps, 1)


def _check_box(clip_min: Any, clip_max: Any) -> None:
    try:
        box_ok = math.isfinite(clip_min) and math.isfinite(clip_max) and clip_min < clip_max
    except TypeError:
        box_ok = False
    if not box_ok:
        raise ValueError(f"the pixel box needs finite clip_min < clip_max, got [{clip_min}, "
                         f"{clip_max}]")


def _direction_settings(spec: AttackSpec, loss: LossSpec, c: Optional[float],
                        particles: Optional[int], decay: Optional[float]) -> Dict[str, Any]:
    """DAA's ``particles`` and ``c``, momentum's ``decay``: only those of ``spec``'s rule."""
    extra: Dict[str, Any] = {}
    if spec.interacting:
        extra["particles"] = whole_number(
            "particles (the DAA group size)",
            DEFAULT_PARTICLES if particles is None else particles, 2)
        c = spec.c_for(loss) if c is None else c
        if c is None or not math.isfinite(c):
            raise ValueError(f"c must be finite, got {c!r}")
        extra["c"] = float(c)
    if spec.direction == "momentum":
        extra["decay"] = float(DEFAULT_DECAY if decay is None else decay)
    return extra


def _start_settings(init: Optional[str], odi_steps: Optional[int],
                    odi_step_size: Optional[float]) -> Dict[str, Any]:
    """The ODI start's ``odi_steps`` (0: none) and ``odi_step_size``."""
    if init not in (None, "odi"):
        raise ValueError(f"init must be None or 'odi', got {init!r}")
    if init == "odi" and odi_steps is None:
        odi_steps = DEFAULT_ODI_STEPS
    extra: Dict[str, Any] = {"odi_steps": whole_number(
        "odi_steps", 0 if odi_steps is None else odi_steps, 1 if init == "odi" else 0)}
    if odi_step_size is not None:
        extra["odi_step_size"] = _positive("odi_step_size", odi_step_size)
    return extra


def _target_settings(spec: AttackSpec, targets: Optional[int], targeted: bool,
                     loss: LossSpec) -> Dict[str, Any]:
    """MultiTargeted's number of target classes (0: not MultiTargeted)."""
    count = whole_number("targets", spec.targets if targets is None else targets, 0)
    if count and targeted:
        raise ValueError("targets (MultiTargeted) picks its own target classes: it excludes "
                         "targeted=True")
    if count and callable(loss):
        raise ValueError("targets (MultiTargeted) needs a loss name (its form toward a target "
                         "is used), not a callable")
    return {"targets": count}


# ------------------------------------------------------------------------------- the cascade


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a cascade: ``attack`` (a name of :data:`ATTACKS`) with ``settings``
    (``steps``, ``loss``, ``targets``, ``init``, ``step_size``, ...; ``eps``, the box and the
    compilation come from the cascade) and ``restarts``. Its budget per image: ``restarts x
    max(1, targets) x (odi_steps + steps)``."""

    attack: str
    settings: Mapping[str, Any]
    restarts: int = 1

    def gradients(self, classes: int) -> int:
        """Gradients per image of this stage on a model with ``classes`` logits."""
        s = attack_settings(self.attack, eps=1.0, **self.settings)
        runs = min(s.targets, classes - 1) if s.targets else 1
        return self.restarts * runs * (s.odi_steps + s.steps)

    def describe(self) -> str:
        """``attack (setting value, ...)`` for logs and tables."""
        shown = ", ".join(f"{k} {v}" for k, v in sorted(self.settings.items()))
        return f"{self.attack} ({shown})" + (f" x {self.restarts}" if self.restarts > 1 else "")


# The default sequence (docs/algorithms.md#strongest): APGD with varied losses, DAA directions
# and ODI starts, each stage an equal share of the budget.
DEFAULT_SEQUENCE: Tuple[Tuple[str, Mapping[str, Any]], ...] = (
    ("apgd", {"loss": "xent"}),
    ("apgd_daa_blob", {"loss": "cw"}),
    ("apgd_daa_dgf", {"loss": "xent"}),
    ("apgd", {"loss": "dlr"}),
    ("apgd", {"loss": "margin", "init": "odi"}),
    ("apgd_daa_blob", {"loss": "margin"}),
    ("apgd", {"loss": "xent", "init": "odi"}),
    ("apgd_daa_blob", {"loss": "xent"}),
    ("apgd", {"loss": "cw"}),
    ("apgd_daa_dgf", {"loss": "cw", "init": "odi"}),
)
MIN_STAGE_STEPS = 50  # gradients per stage (docs/algorithms.md#strongest: measured at budget 100)


def default_stages(budget: int, classes: int = 10) -> List[Stage]:
    """The default sequence for ``budget`` (at least 1) gradients per image: the stages of
    :data:`DEFAULT_SEQUENCE`, as many as give each at least :data:`MIN_STAGE_STEPS` gradients
    (at most all, at least one), the budget shared equally (a stage with an ODI start spends
    :data:`DEFAULT_ODI_STEPS` of its share on it, and drops it below twice that; DLR needs 3
    classes and is skipped below)."""
    budget = whole_number("budget", budget, 1)
    sequence = [(attack, settings) for attack, settings in DEFAULT_SEQUENCE
                if classes >= 3 or settings["loss"] != "dlr"]
    count = max(1, min(len(sequence), budget // MIN_STAGE_STEPS))
    share = budget // count
    stages = []
    for attack, settings in sequence[:count]:
        settings = dict(settings)
        odi = settings.get("init") == "odi" and share > 2 * DEFAULT_ODI_STEPS
        if not odi:
            settings.pop("init", None)
        settings["steps"] = share - (DEFAULT_ODI_STEPS if odi else 0)
        stages.append(Stage(attack, settings))
    return stages


@dataclasses.dataclass(frozen=True)
class CascadeSettings:
    """A validated cascade (docs/algorithms.md#strongest): ``budget`` gradients per image (and
    restart) shared by ``stages`` (None: :func:`default_stages`), at L-inf radius ``eps`` in the
    pixel box ``[clip_min, clip_max]``. Untargeted. It answers the questions a runner asks of any
    settings (``interacting``, ``targets``, ``random_start``, ...) as an untargeted attack with
    random starts and no particles would. Build it with :func:`cascade_settings`."""

    kind: ClassVar[str] = "cascade"
    interacting: ClassVar[bool] = False
    targeted: ClassVar[bool] = False
    targets: ClassVar[int] = 0
    random_start: ClassVar[bool] = True
    particles: ClassVar[Optional[int]] = None

    attack: str
    eps: float
    budget: int
    clip_min: float = 0.0
    clip_max: float = 1.0
    jit_compile: Optional[bool] = None
    stages: Optional[Tuple[Stage, ...]] = None

    @property
    def spec(self) -> CascadeSpec:
        return CASCADES[self.attack]

    @property
    def batch_multiple(self) -> int:
        """The default sequence's DAA stages take batches of whole groups."""
        return DEFAULT_PARTICLES

    def stages_for(self, classes: int) -> List[Stage]:
        """The stages on a model with ``classes`` logits, checked against the budget."""
        stages = (default_stages(self.budget, classes) if self.stages is None
                  else list(self.stages))
        total = sum(stage.gradients(classes) for stage in stages)
        if total > self.budget:
            raise ValueError(f"the stages need {total} gradients per image, more than the "
                             f"budget {self.budget}")
        return stages

    def replace(self, **changes: Any) -> "CascadeSettings":
        """A copy with ``changes``, validated again (``targeted=True`` is refused)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields.update(changes)
        return cascade_settings(**fields)


def cascade_settings(attack: str = "strongest", *, eps: float,
                     budget: int = DEFAULT_BUDGET, clip_min: float = 0.0,
                     clip_max: float = 1.0, jit_compile: Optional[bool] = None,
                     stages: Optional[Any] = None, targeted: bool = False
                     ) -> CascadeSettings:
    """Validates a cascade's settings (see :class:`CascadeSettings`). A cascade is untargeted:
    ``targeted=True`` is refused."""
    if attack not in CASCADES:
        raise ValueError(f"unknown cascade {attack!r}: use one of {', '.join(CASCADES)}")
    if targeted:
        raise ValueError(f"{attack} is an untargeted cascade (its stages pick their own target "
                         "classes): for a targeted attack use one of the attacks")
    _check_box(clip_min, clip_max)
    if stages is not None:
        stages = tuple(stages)
        for stage in stages:
            if not isinstance(stage, Stage) or stage.attack not in ATTACKS:
                raise ValueError(f"a cascade's stages are Stage(attack, settings) of the "
                                 f"catalogue's attacks, got {stage!r}")
            whole_number("a stage's restarts", stage.restarts, 1)
            stage.gradients(10)  # validates the stage's settings
        if not stages:
            raise ValueError("a cascade needs at least one stage")
    return CascadeSettings(attack=attack, eps=_positive("eps", eps),
                           budget=whole_number("budget", budget, 1), clip_min=float(clip_min),
                           clip_max=float(clip_max),
                           jit_compile=None if jit_compile is None else bool(jit_compile),
                           stages=stages)


RunSettings = Union[AttackSettings, CascadeSettings]


def batch_size_error(attack: str, batch_size: Optional[int], particles: Optional[int]
                     ) -> Optional[str]:
    """Why ``batch_size`` does not suit ``attack`` (DAA: a multiple of ``particles``), or None.
    ``batch_size`` None (choose automatically) always suits."""
    if batch_size is None:
        return None
    if batch_size < 1:
        return f"batch_size must be positive, got {batch_size}"
    # a cascade's default sequence has DAA stages: its batches are a whole number of groups
    grouped = attack in CASCADES or get_spec(attack).interacting
    if grouped and batch_size % (particles or DEFAULT_PARTICLES):
        return (f"batch_size must be a positive multiple of particles "
                f"({particles or DEFAULT_PARTICLES}) for {attack}, got {batch_size}")
    return None


def default_batch_size(settings: AttackSettings, n: int) -> int:
    """About :data:`DEFAULT_BATCH` examples, a whole number of DAA groups, never more than
    needed."""
    if settings.interacting:
        groups = max(1, DEFAULT_BATCH // settings.particles)
        return min(groups, -(-n // settings.particles)) * settings.particles
    return min(DEFAULT_BATCH, n)


def describe(settings: RunSettings, restarts: Optional[int] = None) -> str:
    """A one-line summary of ``settings`` (and the number of restarts) for logs."""
    if isinstance(settings, CascadeSettings):
        sequence = ("default sequence" if settings.stages is None else
                    "stages " + "; ".join(stage.describe() for stage in settings.stages))
        return (f"{settings.attack} cascade, eps {settings.eps:g}, budget {settings.budget} "
                f"gradients per image" + (f" and restart, {restarts} restarts"
                                          if restarts not in (None, 1) else "")
                + f", {sequence}")
    loss = settings.loss if isinstance(settings.loss, str) else "custom"
    parts = [f"{settings.attack}, loss {loss}", f"eps {settings.eps:g}",
             f"step size {settings.step_size:g}", f"{settings.steps} steps"]
    if restarts is not None:
        parts.append(f"{restarts} restarts")
    parts.append("random start" if settings.random_start else "no random start")
    if settings.targeted:
        parts.append("targeted")
    if settings.interacting:
        default = settings.c == settings.spec.c_for(settings.loss)
        parts += [f"c {settings.c:g}" + (" (default)" if default else ""),
                  f"{settings.particles} particles per group"]
    if settings.decay is not None:
        parts.append(f"decay {settings.decay:g}")
    if settings.odi_steps:
        odi_step = settings.eps if settings.odi_step_size is None else settings.odi_step_size
        parts.append(f"ODI start ({settings.odi_steps} steps of {odi_step:g})")
    if settings.targets:
        parts.append(f"{settings.targets} target classes")
    if settings.best:
        parts.append("best iterate")
    return ", ".join(parts)
