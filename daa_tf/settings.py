"""An attack's validated settings (:class:`AttackSettings`) and the plain-Python checks behind
them. No TensorFlow. Defaults come from the attack's catalogue entry (:mod:`daa_tf.specs`):
a setting left ``None`` takes the attack's own value.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, ClassVar, Dict, List, Optional, Tuple, Union

from daa_tf.specs import (ATTACKS, DEFAULT_DECAY, DEFAULT_ODI_STEPS, DEFAULT_PARTICLES, LOSSES,
                          AttackSpec, get_spec)

LossSpec = Union[str, Callable[..., Any]]

# The settings every attack function takes (daa_tf.attacks) besides model, data, x_init and seed.
SETTING_NAMES: Tuple[str, ...] = (
    "eps", "step_size", "steps", "loss", "random_start", "clip_min", "clip_max", "targeted", "c",
    "particles", "decay", "init", "odi_steps", "odi_step_size", "targets", "best", "jit_compile")


class MissingSetting(TypeError, ValueError):
    """A required setting is missing (a TypeError, like a missing argument; also a ValueError,
    like every other refused setting)."""


# The settings only some step rules read (daa_tf.specs.DIRECTIONS).
RULE_SETTINGS: Tuple[str, ...] = ("c", "particles", "decay")


def unread_settings(attack: str, given: Dict[str, Any]) -> List[str]:
    """The step-rule settings in ``given`` (not None) that ``attack``'s rule does not read
    (``c`` for PGD): the public functions refuse them rather than ignore them."""
    wanted = get_spec(attack).rule.settings
    return sorted(name for name in RULE_SETTINGS
                  if given.get(name) is not None and name not in wanted)


def check_loss(loss: LossSpec) -> None:
    """Accepts a loss name of :data:`daa_tf.specs.LOSSES` or a callable."""
    if not callable(loss) and loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: use one of {list(LOSSES)} or a callable "
                         "(logits [N, C], labels [N]) -> per-example loss [N]")


def positive(name: str, value: Any) -> float:
    """``value`` as a float, refusing anything but a positive finite number."""
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


def check_box(clip_min: Any, clip_max: Any) -> None:
    """Refuses a pixel box that is not finite ``clip_min < clip_max``."""
    try:
        box_ok = math.isfinite(clip_min) and math.isfinite(clip_max) and clip_min < clip_max
    except TypeError:
        box_ok = False
    if not box_ok:
        raise ValueError(f"the pixel box needs finite clip_min < clip_max, got [{clip_min}, "
                         f"{clip_max}]")


def default_step_size(attack: str, eps: Optional[float] = None,
                      configured: Optional[float] = None) -> Optional[float]:
    """The step size (pixel units) ``attack`` takes when the caller names none: its catalogue
    default in units of ``eps`` (``eps`` for the one-step attacks, ``2 eps`` under APGD's
    schedule), else ``configured`` (a challenge's or a training recipe's default; None: the
    caller must give one). With ``eps`` None an attack with its own default answers None: the
    default that :func:`attack_settings` completes from ``eps``."""
    spec = get_spec(attack)
    if spec.default_step is not None:
        return None if eps is None else spec.default_step * positive("eps", eps)
    return configured


@dataclasses.dataclass(frozen=True)
class AttackSettings:
    """A validated attack configuration: everything but the model and the data.

    ``eps``, ``step_size``, ``clip_min``, ``clip_max`` are in pixel units. ``c`` is DAA's constant
    as the user states it (DGF's per unit pixel range; see :attr:`effective_c`), None for the other
    attacks; ``particles`` the DAA group size (None otherwise); ``decay`` momentum PGD's (None
    otherwise). ``jit_compile`` None means "choose per device" (:mod:`daa_tf.device`).
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
        return attack_settings(fields.pop("attack"), **fields)


def attack_settings(attack: str, *, eps: float, step_size: Optional[float] = None,
                    steps: Optional[int] = None, loss: Optional[LossSpec] = None,
                    random_start: Optional[bool] = None, clip_min: float = 0.0,
                    clip_max: float = 1.0, targeted: bool = False, c: Optional[float] = None,
                    particles: Optional[int] = None, decay: Optional[float] = None,
                    jit_compile: Optional[bool] = None, init: Optional[str] = None,
                    odi_steps: Optional[int] = None, odi_step_size: Optional[float] = None,
                    targets: Optional[int] = None, best: Optional[bool] = None) -> AttackSettings:
    """Validates and completes an attack's settings (see :class:`AttackSettings`); a setting
    left None takes the attack's own default (:class:`daa_tf.specs.AttackSpec`).

    FGSM and Rand+FGSM take exactly one step, of ``step_size`` (default ``eps``); Rand+FGSM always
    starts at random (``random_start=False`` is refused). APGD-scheduled attacks start with
    ``step_size`` ``2 eps``. ``steps`` defaults to the attack's (100 for APGD-T, FAB and
    FAB-T; the others need it). DAA's ``c`` defaults per loss, its ``particles`` to
    :data:`~daa_tf.specs.DEFAULT_PARTICLES`; momentum's ``decay`` to
    :data:`~daa_tf.specs.DEFAULT_DECAY`; settings of another attack's step rule (``c`` for PGD)
    are ignored. ``init="odi"`` (or ``odi_steps > 0``) adds the ODI start, ``odi_steps`` default
    :data:`~daa_tf.specs.DEFAULT_ODI_STEPS`. ``targets`` defaults to the attack's (9 for
    MultiTargeted, APGD-T and FAB-T, else 0) and excludes ``targeted``; ``best`` defaults to
    the attack's.
    Square (docs/algorithms.md#square): ``steps`` are queries (default 5000), ``step_size``
    the change inside a square (default ``2 eps``), the loss ``margin`` (``xent`` when
    targeted, as AutoAttack's), the random start its vertical stripes, no ODI start.
    """
    spec = get_spec(attack)
    if loss is None:
        loss = spec.targeted_loss if targeted and spec.targeted_loss else spec.default_loss
    check_loss(loss)
    if spec.losses is not None and isinstance(loss, str) and loss not in spec.losses:
        raise ValueError(f"{attack} moves to the zero set of its loss, the decision boundary "
                         f"only for {' or '.join(spec.losses)}: got loss {loss!r}")
    if spec.forced_start and random_start is False:
        raise ValueError(f"{attack} always starts at random: random_start=False is {attack} "
                         "without its random step; use fgsm for that")
    random_start = spec.random_start if random_start is None else random_start
    eps, step_size, steps = _step_settings(spec, eps, step_size, steps)
    check_box(clip_min, clip_max)
    extra: Dict[str, Any] = {**_rule_settings(spec, loss, c, particles, decay),
                             **_start_settings(init, odi_steps, odi_step_size),
                             **_target_settings(spec, targets, targeted, loss)}
    extra["best"] = spec.best if best is None else bool(best)
    if spec.query_based and extra["odi_steps"]:
        raise ValueError(f"{attack} takes no ODI start: its start is its own ({spec.start}) and "
                         "its budget is in queries, not gradients")
    return AttackSettings(attack=attack, eps=eps, step_size=step_size, steps=steps, loss=loss,
                          random_start=bool(random_start), clip_min=float(clip_min),
                          clip_max=float(clip_max), targeted=bool(targeted),
                          jit_compile=None if jit_compile is None else bool(jit_compile), **extra)


def _step_settings(spec: AttackSpec, eps: Any, step_size: Any, steps: Any
                   ) -> Tuple[float, float, int]:
    """``(eps, step_size, steps)`` checked: one-step attacks take one step, step sizes default
    to the attack's (:func:`default_step_size`)."""
    eps = positive("eps", eps)
    if spec.one_step:
        if steps not in (None, 1):
            raise ValueError(f"{spec.name} takes exactly one step, got steps={steps}: use pgd "
                             "for more")
        steps = 1
    if step_size is None:
        step_size = default_step_size(spec.name, eps)
    if steps is None:
        steps = spec.default_steps
    if step_size is None or steps is None:
        missing = [name for name, v in (("step_size", step_size), ("steps", steps)) if v is None]
        raise MissingSetting(f"{spec.name} needs {' and '.join(missing)}: it has no default "
                             f"for {'them' if len(missing) > 1 else 'it'}; pass "
                             + ", ".join(f"{name}=..." for name in missing))
    return eps, positive("step_size", step_size), whole_number("steps", steps, 1)


def _rule_settings(spec: AttackSpec, loss: LossSpec, c: Optional[float],
                   particles: Optional[int], decay: Optional[float]) -> Dict[str, Any]:
    """The settings ``spec``'s step rule reads (DAA's ``particles`` and ``c``, momentum's
    ``decay``), completed with their defaults; the others are dropped."""
    wanted = spec.rule.settings
    extra: Dict[str, Any] = {}
    if "particles" in wanted:
        extra["particles"] = whole_number(
            "particles (the DAA group size)",
            DEFAULT_PARTICLES if particles is None else particles, 2)
    if "c" in wanted:
        c = spec.c_for(loss) if c is None else c
        if c is None or not math.isfinite(c):
            raise ValueError(f"c must be finite, got {c!r}")
        extra["c"] = float(c)
    if "decay" in wanted:
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
        extra["odi_step_size"] = positive("odi_step_size", odi_step_size)
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
