"""The attack catalogue's entries: every attack's name, label, step rule, schedule and defaults,
the loss names and the library's constants. No TensorFlow: the command line reads it before
parsing flags. The step rules and schedules the keys name live in :mod:`daa_tf.steps` and
:mod:`daa_tf.schedules` (``RULES``, ``SCHEDULES``); rules: docs/algorithms.md.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional, Tuple

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
DEFAULT_SEED = 0             # every entry point's seed when the caller gives none
DEFAULT_BUDGET = 1000        # a cascade's gradients per image when the caller gives none

# tf.distribute strategies of daa_tf.distribute.make_strategy, and the XLA choices of the CLIs.
STRATEGIES: Tuple[str, ...] = ("none", "mirrored", "multi_worker")
JIT_CHOICES: Dict[str, Optional[bool]] = {"auto": None, "true": True, "false": False}


@dataclasses.dataclass(frozen=True)
class Direction:
    """A step rule as the catalogue knows it: ``name`` (its key in :data:`daa_tf.steps.RULES`),
    whether examples ``interact`` (DAA's particles: groups, rounds, no padding) and the
    ``settings`` the rule reads."""

    name: str
    interacting: bool = False
    settings: Tuple[str, ...] = ()


DIRECTIONS: Dict[str, Direction] = {d.name: d for d in (
    Direction("sign"),
    Direction("momentum", settings=("decay",)),
    Direction("blob", interacting=True, settings=("c", "particles")),
    Direction("dgf", interacting=True, settings=("c", "particles")),
)}


# The laws of a random start (docs/algorithms.md#projection-and-random-start): PGD's uniform one
# and AutoAttack's point on the L-inf sphere (APGD-T, FAB); Square's vertical stripes.
STARTS: Tuple[str, ...] = ("uniform", "sphere", "stripes")


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One attack of the catalogue.

    ``direction``: the step rule's key in :data:`DIRECTIONS` (``sign``: ``V = G``; ``momentum``;
    DAA's particle rules ``blob`` / ``dgf``). ``schedule``: how ``x`` moves along the direction,
    its key in :data:`daa_tf.schedules.SCHEDULES` (``fixed``: PGD's ``x <- proj(x + a sign(V))``;
    ``apgd``: docs/algorithms.md#apgd). ``one_step``: exactly one step (FGSM).
    ``default_step``: the step size in units of ``eps`` when the caller gives none (None: the
    caller must). ``random_start``: the default, or forced with ``forced_start`` (Rand+FGSM).
    ``start``: the random start's law, a key of :data:`STARTS` (``uniform``: ``proj(X0 +
    U(-eps, eps))``; ``sphere``: AutoAttack's point at L-inf distance ``start_radius x eps``;
    ``stripes``: Square's vertical stripes, docs/algorithms.md#square);
    ``clean_first``: restart 0 starts at ``X0`` and later restarts at random (FAB's restarts;
    docs/algorithms.md#fab). ``default_steps``: the steps (a query attack's queries) when the
    caller gives none (None: the caller must).
    ``default_loss``: the loss when the caller gives none; ``losses``: the loss names the attack
    accepts (None: every one; FAB: the margins, whose zero set is the decision boundary).
    ``default_c``: DAA's constant per
    loss; ``c_per_unit_range``: ``c`` is stated for a unit pixel range and scaled by
    ``1 / (clip_max - clip_min)^2`` (DGF). ``targets``: the default number of target classes
    (MultiTargeted, docs/algorithms.md#multitargeted; 0: an ordinary attack). ``best``: whether
    the attack returns its best iterate by default (docs/algorithms.md#best-iterates).
    ``targeted_loss``: the default loss of the targeted attack when it differs from
    ``default_loss``.
    """

    name: str
    label: str
    direction: str
    schedule: str = "fixed"
    one_step: bool = False
    default_step: Optional[float] = None
    random_start: bool = True
    forced_start: bool = False
    start: str = "uniform"
    start_radius: float = 1.0
    clean_first: bool = False
    default_steps: Optional[int] = None
    default_loss: str = "xent"
    losses: Optional[Tuple[str, ...]] = None
    default_c: Mapping[str, float] = dataclasses.field(default_factory=dict)
    c_per_unit_range: bool = False
    targets: int = 0
    best: bool = False
    targeted_loss: Optional[str] = None

    @property
    def query_based(self) -> bool:
        """True when the attack's budget is in queries (forward passes), not gradients."""
        return self.schedule in QUERY_SCHEDULES

    @property
    def rule(self) -> Direction:
        """The step rule's catalogue entry."""
        return DIRECTIONS[self.direction]

    @property
    def interacting(self) -> bool:
        """True for DAA, whose examples interact inside groups (and so need rounds)."""
        return self.rule.interacting

    def c_for(self, loss: object) -> Optional[float]:
        """The default ``c`` for ``loss`` (a callable loss takes xent's), None without one."""
        if "c" not in self.rule.settings:
            return None
        return self.default_c.get(loss if isinstance(loss, str) else "xent")


# DAA's c per loss (the authors' MNIST settings for xent and cw; margin is cw without its relu and
# offset, so it takes cw's; dlr is a ratio of logit differences of order one, like xent's loss
# scale: it takes xent's, unmeasured).
_BLOB_C: Mapping[str, float] = {"xent": 1.1, "cw": 10.0, "dlr": 1.1, "margin": 10.0}
_DGF_C: Mapping[str, float] = {"xent": -0.001, "cw": -0.01, "dlr": -0.001, "margin": -0.01}
# The schedules whose loop makes forward passes only (daa_tf.schedules: needs_gradients False).
QUERY_SCHEDULES: Tuple[str, ...] = ("square",)
SQUARE_QUERIES = 5000  # Square's queries per image when the caller gives none (AutoAttack's)
SQUARE_STEP = 2.0  # Square's change inside the square, in units of eps: lands on x0 +- eps
APGD_INITIAL_STEP = 2.0  # APGD's initial step size, in units of eps (AutoAttack's)
_APGD = dict(schedule="apgd", default_step=APGD_INITIAL_STEP, best=True)
AUTOATTACK_STEPS = 100  # AutoAttack's iterations per run (APGD-T and FAB-T, per target class)
FAB_START_RADIUS = 0.5  # FAB's random restarts: a point at L-inf distance eps / 2
# FAB (docs/algorithms.md#fab): its step size is not used (1 eps, only so that settings hold one).
_FAB = dict(schedule="fab", default_step=1.0, start="sphere", start_radius=FAB_START_RADIUS,
            clean_first=True, default_steps=AUTOATTACK_STEPS, default_loss="margin",
            losses=("margin", "dlr"))

ATTACKS: Dict[str, AttackSpec] = {spec.name: spec for spec in (
    AttackSpec("fgsm", "FGSM", "sign", one_step=True, default_step=1.0, random_start=False),
    AttackSpec("rand_fgsm", "Rand+FGSM", "sign", one_step=True, default_step=1.0,
               forced_start=True),
    AttackSpec("pgd", "PGD", "sign"),
    AttackSpec("momentum_pgd", "momentum PGD", "momentum"),
    AttackSpec("daa_blob", "DAA-BLOB", "blob", default_c=_BLOB_C),
    AttackSpec("daa_dgf", "DAA-DGF", "dgf", default_c=_DGF_C, c_per_unit_range=True),
    AttackSpec("apgd", "APGD", "sign", **_APGD),
    AttackSpec("apgd_daa_blob", "APGD-DAA-BLOB", "blob", default_c=_BLOB_C, **_APGD),
    AttackSpec("apgd_daa_dgf", "APGD-DAA-DGF", "dgf", default_c=_DGF_C, c_per_unit_range=True,
               **_APGD),
    AttackSpec("multitargeted", "MultiTargeted", "sign", default_loss="margin",
               targets=DEFAULT_TARGETS, **_APGD),
    AttackSpec("apgd_t", "APGD-T", "sign", default_loss="dlr", targets=DEFAULT_TARGETS,
               start="sphere", default_steps=AUTOATTACK_STEPS, **_APGD),
    AttackSpec("fab", "FAB", "sign", **_FAB),
    AttackSpec("fab_t", "FAB-T", "sign", targets=DEFAULT_TARGETS, **_FAB),
    AttackSpec("square", "Square", "sign", schedule="square", default_step=SQUARE_STEP,
               default_loss="margin", targeted_loss="xent", start="stripes",
               default_steps=SQUARE_QUERIES),
)}
if any(spec.start not in STARTS for spec in ATTACKS.values()):
    raise ImportError(f"a catalogue entry names a start outside {STARTS}")
DAA_ATTACKS: Tuple[str, ...] = tuple(name for name, spec in ATTACKS.items() if spec.interacting)


@dataclasses.dataclass(frozen=True)
class CascadeSpec:
    """A cascade of catalogue attacks run one after another within a gradient budget
    (docs/algorithms.md#strongest)."""

    name: str
    label: str
    checks: bool = False  # AutoAttack's checks of the model before, and of Square after


CASCADES: Dict[str, CascadeSpec] = {spec.name: spec for spec in (
    CascadeSpec("strongest", "strongest"),
    CascadeSpec("autoattack", "AutoAttack", checks=True),
)}
AUTOATTACK_VERSIONS: Tuple[str, ...] = ("standard", "plus")
# Everything a runner's --attack takes: the attacks, then the cascades.
RUNNABLE: Tuple[str, ...] = (*ATTACKS, *CASCADES)


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
