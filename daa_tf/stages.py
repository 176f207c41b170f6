"""A cascade's stages and validated settings (docs/algorithms.md#strongest): :class:`Stage`, the
default sequence and its reinvested sizes (docs/algorithms.md#reinvested-budget) and
:class:`CascadeSettings`. No TensorFlow; the cascade itself runs in
:mod:`daa_tf.cascade`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, List, Mapping, Optional, Sequence, Tuple, Union

from daa_tf.settings import AttackSettings, attack_settings, check_box, positive, whole_number
from daa_tf.specs import (ATTACKS, AUTOATTACK_VERSIONS, CASCADES, DEFAULT_BUDGET,
                          DEFAULT_ODI_STEPS, LOSS_LABELS, CascadeSpec)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a cascade: ``attack`` (a name of :data:`daa_tf.specs.ATTACKS`) with
    ``settings`` (``steps``, ``loss``, ``targets``, ``init``, ``step_size``, ...; ``eps``, the box
    and the compilation come from the cascade) and ``restarts``. Its budget per image:
    ``restarts x max(1, targets) x (odi_steps + steps)``."""

    attack: str
    settings: Mapping[str, Any]
    restarts: int = 1

    def resolved(self) -> AttackSettings:
        """The stage's settings, validated (at a placeholder ``eps`` of 1)."""
        return attack_settings(self.attack, eps=1.0, **self.settings)

    def gradients(self, classes: int) -> int:
        """Gradients per image of this stage on a model with ``classes`` logits (0 for a query
        attack: Square)."""
        s = self.resolved()
        runs = min(s.targets, classes - 1) if s.targets else 1
        return self.restarts * runs * (s.odi_steps + (0 if s.spec.query_based else s.steps))

    def queries(self, classes: int) -> int:
        """Queries (forward passes of the attack's loop) per image of a query attack's stage,
        0 for a gradient attack."""
        s = self.resolved()
        runs = min(s.targets, classes - 1) if s.targets else 1
        return self.restarts * runs * s.steps if s.spec.query_based else 0

    @property
    def label(self) -> str:
        """The stage's name in tables: its attack's label, with the loss it was given."""
        loss = self.settings.get("loss")
        spec = ATTACKS[self.attack]
        return spec.label + (f"-{LOSS_LABELS[loss]}" if isinstance(loss, str) else "")

    def record(self) -> List[Any]:
        """``[attack, sorted (setting, repr(value)) pairs, restarts]``: what a saved result of
        a cascade depends on (its fingerprints)."""
        return [self.attack, sorted((k, repr(v)) for k, v in self.settings.items()),
                self.restarts]

    def describe(self) -> str:
        """``attack (setting value, ...)`` for logs and tables."""
        shown = ", ".join(f"{k} {v}" for k, v in sorted(self.settings.items()))
        return f"{self.attack} ({shown})" + (f" x {self.restarts}" if self.restarts > 1 else "")


# The default sequence (docs/algorithms.md#strongest): APGD-CE, then the targeted attacks
# (MultiTargeted: APGD toward each target with the margin loss, which beat APGD-T's targeted DLR
# at a cascade's lengths, docs/algorithms.md#which-targeted-stage; FAB-T) and DAA's directions,
# APGD with varied losses and ODI starts. Each stage's share of the budget is set when it starts
# (:func:`reinvested`).
DEFAULT_SEQUENCE: Tuple[Tuple[str, Mapping[str, Any]], ...] = (
    ("apgd", {"loss": "xent"}),
    ("multitargeted", {}),
    ("apgd_daa_blob", {"loss": "cw"}),
    ("fab_t", {}),
    ("apgd_daa_dgf", {"loss": "xent"}),
    ("apgd", {"loss": "dlr"}),
    ("apgd", {"loss": "margin", "init": "odi"}),
    ("apgd_daa_blob", {"loss": "margin"}),
    ("apgd", {"loss": "xent", "init": "odi"}),
    ("apgd_daa_blob", {"loss": "xent"}),
)
MIN_STAGE_STEPS = 50  # gradients per stage (docs/algorithms.md#strongest: measured at budget 100)


def _runs(attack: str, settings: Mapping[str, Any], classes: int) -> int:
    """Runs per image of a stage: its target classes (at most ``classes - 1``), else 1."""
    targets = attack_settings(attack, eps=1.0, **{**settings, "steps": 1}).targets
    return min(targets, classes - 1) if targets else 1


def sized(stage: Stage, share: int, classes: int = 10) -> Stage:
    """``stage`` (an attack of :data:`DEFAULT_SEQUENCE`) with the most steps whose gradients per
    image fit ``share``: ``share // runs`` per target class, less the ODI start's steps (the ODI
    start is dropped when the share is at most twice them). At least one step."""
    settings = dict(stage.settings)
    settings.pop("steps", None)
    per_run = share // _runs(stage.attack, settings, classes)
    odi = settings.get("init") == "odi" and per_run > 2 * DEFAULT_ODI_STEPS
    if not odi:
        settings.pop("init", None)
    settings["steps"] = max(1, per_run - (DEFAULT_ODI_STEPS if odi else 0))
    return Stage(stage.attack, settings, stage.restarts)


def _sequence(classes: int) -> List[Tuple[str, Mapping[str, Any]]]:
    """:data:`DEFAULT_SEQUENCE` on a model with ``classes`` logits: DLR and the targeted attacks
    (two target classes at least: with one, a targeted run is the untargeted one) need 3
    classes."""
    return [(attack, settings) for attack, settings in DEFAULT_SEQUENCE
            if classes >= 3 or (settings.get("loss") != "dlr" and not ATTACKS[attack].targets)]


def default_stages(budget: int, classes: int = 10) -> List[Stage]:
    """The default sequence for ``budget`` (at least 1) gradients per image, each stage at its
    nominal share: the stages of :data:`DEFAULT_SEQUENCE`, as many as give each at least
    :data:`MIN_STAGE_STEPS` gradients (at most all, at least one), the budget shared equally
    (:func:`sized`). A cascade running them sets each stage's share again when it starts
    (:func:`reinvested`)."""
    budget = whole_number("budget", budget, 1)
    sequence = _sequence(classes)
    count = max(1, min(len(sequence), budget // MIN_STAGE_STEPS))
    share = budget // count
    return [sized(Stage(attack, dict(settings)), share, classes)
            for attack, settings in sequence[:count]]


def reinvested(stages: Sequence[Stage], budget: int, starts: Sequence[int],
               classes: int = 10) -> List[Stage]:
    """The gradient stages of one pass of the default sequence, sized when each starts
    (docs/algorithms.md#reinvested-budget): ``starts[k]`` images are still
    classified correctly when stage ``k`` starts (``k < len(starts)``, ``starts[0]`` at the
    pass's start). The pass may spend ``budget x starts[0]`` gradients; each gradient stage
    gets an equal part of what the earlier ones left, over the images it starts on, at most
    ``budget`` per image (what a single attack gets), and is charged its gradients per image
    times ``starts[k]``. Query stages (Square) are kept as they are. Returns the first
    ``len(starts)`` stages, sized."""
    left = budget * starts[0]
    remaining = sum(1 for stage in stages if stage.gradients(classes))
    out = []
    for stage, images in zip(stages, starts):
        if not stage.gradients(classes):
            out.append(stage)
            continue
        if images:  # a stage no image reaches does not run: it keeps its nominal size
            stage = sized(stage, max(1, min(budget, left // (remaining * images))), classes)
            left -= stage.gradients(classes) * images
        remaining -= 1
        out.append(stage)
    return out


def strongest_stages(budget: int, queries: Optional[int] = None, classes: int = 10
                     ) -> List[Stage]:
    """``strongest``'s stages: :func:`default_stages` sharing ``budget`` gradients per image,
    then, with ``queries``, Square with the whole query budget (docs/algorithms.md#strongest)."""
    stages = default_stages(budget, classes)
    if queries is not None:
        stages.append(Stage("square", {"steps": whole_number("queries", queries, 1)}))
    return stages


# AutoAttack's versions (docs/algorithms.md#autoattack): its attacks in order, with AutoAttack's
# settings (100 iterations, 9 target classes, 5000 queries; restarts per version).
_AUTOATTACK: Mapping[str, Tuple[Tuple[str, Mapping[str, Any], int], ...]] = {
    "standard": (("apgd", {"loss": "xent", "steps": 100}, 1),
                 ("apgd_t", {"steps": 100}, 1),
                 ("fab_t", {"steps": 100}, 1),
                 ("square", {"steps": 5000}, 1)),
    "plus": (("apgd", {"loss": "xent", "steps": 100}, 5),
             ("apgd", {"loss": "dlr", "steps": 100}, 5),
             ("fab", {"steps": 100}, 5),
             ("square", {"steps": 5000}, 1),
             ("apgd_t", {"steps": 100}, 1),
             ("fab_t", {"steps": 100}, 1)),
}


def autoattack_stages(version: str = "standard") -> List[Stage]:
    """AutoAttack's attacks for ``version`` (:data:`~daa_tf.specs.AUTOATTACK_VERSIONS`) as
    stages. ``rand`` (for randomized models: APGD with expectation over 20 transformations) is
    refused: the library has no EOT gradient."""
    if version == "rand":
        raise ValueError("AutoAttack's rand version averages gradients over 20 calls of a "
                         "randomized model (EOT), which daa_tf does not implement; make the model "
                         "deterministic, or use version 'standard' or 'plus'")
    if version not in _AUTOATTACK:
        raise ValueError(f"unknown AutoAttack version {version!r}: use one of "
                         f"{', '.join(AUTOATTACK_VERSIONS)}")
    return [Stage(attack, dict(settings), restarts)
            for attack, settings, restarts in _AUTOATTACK[version]]


@dataclasses.dataclass(frozen=True)
class CascadeSettings:
    """A validated cascade (docs/algorithms.md#strongest, #autoattack): ``budget`` gradients per
    image (and restart; None: no limit) shared by ``stages`` (None: the cascade's own,
    :func:`default_stages` for ``strongest``, sized as they start, :func:`autoattack_stages` of
    ``version`` for ``autoattack``), at L-inf radius ``eps`` in the pixel box ``[clip_min,
    clip_max]``. Untargeted, with random starts: it answers the questions a runner asks of any
    run settings (``kind``, ``targeted``, ``random_start``, ``interacting``,
    ``batch_multiple``). Build it with :func:`cascade_settings`."""

    kind: ClassVar[str] = "cascade"
    interacting: ClassVar[bool] = False
    targeted: ClassVar[bool] = False
    targets: ClassVar[int] = 0
    random_start: ClassVar[bool] = True
    particles: ClassVar[Optional[int]] = None

    attack: str
    eps: float
    budget: Optional[int]
    clip_min: float = 0.0
    clip_max: float = 1.0
    jit_compile: Optional[bool] = None
    stages: Optional[Tuple[Stage, ...]] = None
    version: Optional[str] = None
    queries: Optional[int] = None

    @property
    def spec(self) -> CascadeSpec:
        return CASCADES[self.attack]

    @property
    def batch_multiple(self) -> Optional[int]:
        """What a batch size must be a multiple of: the group size of the DAA stages (the
        default sequence has some), None when no stage is DAA."""
        stages = self.stages_for(10, checked=False)
        sizes = {stage.resolved().particles for stage in stages
                 if ATTACKS[stage.attack].interacting}
        return math.lcm(*sizes) if sizes else None  # whole groups of every DAA stage

    @property
    def reinvests(self) -> bool:
        """True when the stages are ``strongest``'s default sequence, each sized when it starts
        from the budget the earlier stages left (:func:`reinvested`)."""
        return self.attack == "strongest" and self.stages is None

    def stages_for(self, classes: int, checked: bool = True) -> List[Stage]:
        """The stages on a model with ``classes`` logits, checked against the budget."""
        if self.stages is not None:
            stages = list(self.stages)
        elif self.attack == "autoattack":
            stages = autoattack_stages(self.version or "standard")
        else:
            stages = strongest_stages(self.budget or DEFAULT_BUDGET, self.queries, classes)
        if not checked:
            return stages
        for kind, budget in (("gradients", self.budget), ("queries", self.queries)):
            total = sum(getattr(stage, kind)(classes) for stage in stages)
            if budget is not None and total > budget:
                raise ValueError(f"the stages need {total} {kind} per image, more than the "
                                 f"budget {budget}")
        return stages

    def replace(self, **changes: Any) -> "CascadeSettings":
        """A copy with ``changes``, validated again (``targeted=True`` is refused)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields.update(changes)
        return cascade_settings(**fields)


def cascade_settings(attack: str = "strongest", *, eps: float,
                     budget: Optional[int] = None, clip_min: float = 0.0,
                     clip_max: float = 1.0, jit_compile: Optional[bool] = None,
                     stages: Optional[Any] = None, targeted: bool = False,
                     version: Optional[str] = None, queries: Optional[int] = None
                     ) -> CascadeSettings:
    """Validates a cascade's settings (see :class:`CascadeSettings`). A cascade is untargeted:
    ``targeted=True`` is refused. ``budget`` None: ``strongest``'s default
    (:data:`~daa_tf.specs.DEFAULT_BUDGET`), no limit for ``autoattack``; ``version`` is
    AutoAttack's (default ``standard``); ``queries`` (``strongest``) the query budget per image
    (None: no query stage in the default sequence, no limit on given stages)."""
    if attack not in CASCADES:
        raise ValueError(f"unknown cascade {attack!r}: use one of {', '.join(CASCADES)}")
    if targeted:
        raise ValueError(f"{attack} is an untargeted cascade (its stages pick their own target "
                         "classes): for a targeted attack use one of the attacks")
    check_box(clip_min, clip_max)
    if version is not None and attack != "autoattack":
        raise ValueError(f"version is AutoAttack's setting, not {attack}'s")
    if queries is not None and attack == "autoattack":
        raise ValueError("AutoAttack runs Square with its own 5000 queries: queries is "
                         "strongest's setting")
    if attack == "autoattack":
        autoattack_stages(version or "standard")  # validates the version
    elif budget is None:
        budget = DEFAULT_BUDGET
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
    return CascadeSettings(attack=attack, eps=positive("eps", eps),
                           budget=None if budget is None else whole_number("budget", budget, 1),
                           clip_min=float(clip_min), clip_max=float(clip_max),
                           jit_compile=None if jit_compile is None else bool(jit_compile),
                           stages=stages, version=version,
                           queries=None if queries is None else whole_number("queries", queries,
                                                                             1))


RunSettings = Union[AttackSettings, CascadeSettings]


def is_cascade(attack: Any) -> bool:
    """True for a cascade's name or settings (the one test of the library and the runners)."""
    if isinstance(attack, str):
        return attack in CASCADES
    return getattr(attack, "kind", None) == "cascade"
