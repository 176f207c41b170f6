"""The attacks: FGSM / Rand+FGSM, PGD, momentum PGD, DAA-BLOB, DAA-DGF, APGD (with any of these
directions) and MultiTargeted (:mod:`daa_tf.multitarget`).

Each public function runs ``steps`` steps on the batch it is given inside one compiled loop
(:mod:`daa_tf.loop`): a direction ``V`` (the step rule, :mod:`daa_tf.steps`) and a move along it
(the schedule, :mod:`daa_tf.schedules`: PGD's ``x <- proj(x + a * sign(V))`` or APGD's). Every
attack accepts the ODI start (``init="odi"``, docs/algorithms.md#odi) and can return its best
iterate instead of its last (``best``, docs/algorithms.md#best-iterates). Exact rules:
docs/algorithms.md.

Uniform arguments: ``model`` (a ``keras.Model`` or any callable returning logits ``[N, C]``), ``x``
(clean batch ``[N, ...]`` in ``[clip_min, clip_max]``), ``y`` (labels ``[N]``, or targets when
``targeted``), ``eps`` (L-inf radius, pixel units), ``step_size`` (pixel units), ``steps``. They
return the adversarial batch, a float32 ``tf.Tensor`` of ``x``'s shape.
"""
import dataclasses
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from daa_tf import catalogue, losses, schedules, validation
from daa_tf import loop
from daa_tf.steps import Momentum, Particles, SignGradient, StepRule
from daa_tf.losses import LossFn, get_loss
from daa_tf.projection import project, random_start as draw_random_start

ATTACKS = tuple(catalogue.ATTACKS)
SeedLike = Union[None, int, tf.Tensor]  # see seed_tensor
# Streams folded into a run's seed: the ODI weights, and MultiTargeted's k-th target run
# (docs/algorithms.md#randomness-of-the-new-attacks).
ODI_STREAM = 1
TARGET_STREAM = 16


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """What the compiled loop needs: the validated settings, resolved for this device.

    ``rule``: the step rule (static, hashable); ``params``: the numbers the rule and the schedule
    read as tensors (``c``, ``decay``, APGD's ``alpha`` and ``rho``; DGF's ``c`` already scaled for
    the pixel range); ``jit_compile`` resolved; ``schedule``: how ``x`` moves along the direction
    (static, hashable); ``best``: the loop tracks and returns the best iterates.
    """

    settings: catalogue.AttackSettings
    rule: StepRule
    params: Dict[str, float]
    jit_compile: bool
    schedule: schedules.Schedule = schedules.FixedStep()
    best: bool = False

    @property
    def interacting(self) -> bool:
        """True for DAA, whose examples interact inside groups (and so need rounds)."""
        return self.settings.interacting

    @property
    def loss_fn(self) -> LossFn:
        """The loss the loop ascends: the settings' loss, or its form toward a target class for
        MultiTargeted (labels ``[N, 2]``)."""
        s = self.settings
        return losses.target_form(s.loss) if s.targets else get_loss(s.loss)

    @property
    def loop_key(self) -> Tuple:
        """What the compiled loop is built for (a cache key)."""
        s = self.settings
        return (self.loss_fn, self.rule, s.targeted, self.jit_compile, self.schedule, self.best)


def step_rule(settings: catalogue.AttackSettings) -> Tuple[StepRule, Dict[str, float]]:
    """The step rule of ``settings`` and its tensor parameters (docs/algorithms.md)."""
    direction = settings.spec.direction
    if direction == "momentum":
        return Momentum(), {"decay": settings.decay}
    if direction in ("blob", "dgf"):
        return Particles(direction, settings.particles), {"c": settings.effective_c}
    return SignGradient(), {}


def schedule_of(settings: catalogue.AttackSettings
                ) -> Tuple[schedules.Schedule, Dict[str, float]]:
    """The schedule of ``settings`` and its tensor parameters (docs/algorithms.md#apgd)."""
    if settings.spec.schedule == "apgd":
        return schedules.APGD(), {"alpha": schedules.APGD_ALPHA, "rho": schedules.APGD_RHO}
    return schedules.FixedStep(), {}


def make_config(attack: Union[str, catalogue.AttackSettings], **settings: Any) -> AttackConfig:
    """The loop's configuration from validated settings, or from an attack name and its settings
    (validated by :func:`daa_tf.catalogue.attack_settings`)."""
    if isinstance(attack, catalogue.AttackSettings):
        if settings:
            attack = attack.replace(**settings)
        validated = attack
    else:
        validated = catalogue.attack_settings(attack, **settings)
    rule, params = step_rule(validated)
    schedule, schedule_params = schedule_of(validated)
    return AttackConfig(settings=validated, rule=rule, params={**params, **schedule_params},
                        jit_compile=loop.resolve_jit_compile(validated.jit_compile),
                        schedule=schedule, best=validated.best)


def seed_tensor(seed: Union[None, int, tf.Tensor], stream: Union[int, tf.Tensor] = 0
                ) -> tf.Tensor:
    """A stateless-RNG seed ``[2]`` int64 ``[seed, stream]``.

    ``seed``: an int, an int64 scalar tensor (so a compiled caller, e.g. a training step, can feed
    a new seed every call without retracing), a ``[2]`` tensor used as it is, or None (a fresh
    draw from the OS; inside a ``tf.function`` that draw happens once, at trace time).
    """
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
    if isinstance(seed, (tf.Tensor, tf.Variable)):
        seed = tf.cast(seed, tf.int64)
        if seed.shape.rank == 1:
            return seed
        return tf.stack([seed, tf.cast(stream, tf.int64)])
    return tf.constant([int(seed), int(stream)], tf.int64)


def derive_seed(seed: tf.Tensor, stream: int) -> tf.Tensor:
    """A seed ``[2]`` for another use of the same run (ODI weights, a MultiTargeted target run),
    statelessly folded from ``seed``."""
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), stream)


def target_seed(seed: tf.Tensor, target: int) -> tf.Tensor:
    """The seed of MultiTargeted's run on the ``target``-th most likely wrong class."""
    return derive_seed(seed, TARGET_STREAM + int(target))


def start_points(cfg: AttackConfig, x0: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The starting points of a run: ``proj(x0 + U(-eps, eps))`` or ``x0``."""
    s = cfg.settings
    if not s.random_start:
        return x0
    return draw_random_start(x0, tf.constant(s.eps, x0.dtype), tf.constant(s.clip_min, x0.dtype),
                             tf.constant(s.clip_max, x0.dtype), seed)


def loop_arguments(cfg: AttackConfig, steps: Optional[int] = None
                   ) -> Tuple[Tuple[tf.Tensor, ...], Dict[str, tf.Tensor]]:
    """The compiled loop's scalar arguments ``(eps, step_size, steps, clip_min, clip_max)`` and
    rule and schedule parameters, as tensors (``steps`` defaults to the settings')."""
    s = cfg.settings
    f32 = lambda v: tf.constant(v, tf.float32)  # noqa: E731
    scalars = (f32(s.eps), f32(s.step_size), tf.constant(s.steps if steps is None else steps,
                                                         tf.int32),
               f32(s.clip_min), f32(s.clip_max))
    return scalars, {k: f32(v) for k, v in cfg.params.items()}


def compiled_steps(model: loop.Model, cfg: AttackConfig):
    """The cached compiled loop of ``cfg`` for ``model`` (see :func:`daa_tf.loop.compiled_loop`):
    it returns the last iterate, or ``(x_last, x_best, objective, fooled)`` when ``cfg.best``."""
    s = cfg.settings
    return loop.compiled_loop(model, cfg.loss_fn, cfg.rule, s.targeted, cfg.jit_compile,
                                  cfg.schedule, cfg.best)


def run_loop(model: loop.Model, cfg: AttackConfig, x0: tf.Tensor, y: tf.Tensor,
             x_start: tf.Tensor, steps: Optional[int] = None) -> Any:
    """The compiled loop's raw output for ``steps`` (default the settings') steps from
    ``x_start``: the last iterate, or ``(x_last, x_best, objective, fooled)`` with ``cfg.best``
    (the driver merges the latter across rounds, :func:`daa_tf.iterates.merge`). No checks."""
    scalars, params = loop_arguments(cfg, steps)
    return compiled_steps(model, cfg)(x0, y, x_start, *scalars, params)


def run_steps(model: loop.Model, cfg: AttackConfig, x0: tf.Tensor, y: tf.Tensor,
              x_start: tf.Tensor, steps: Optional[int] = None) -> tf.Tensor:
    """Runs ``steps`` (default the settings') steps from ``x_start`` and returns the attack's
    points: the last iterate, or the best ones with ``cfg.best`` (no checks: callers
    validate). ``x0`` is the clean batch (centre of the ball), float32; ``y`` int32 labels
    (``[N, 2]`` (true, target) pairs for MultiTargeted's configurations)."""
    out = run_loop(model, cfg, x0, y, x_start, steps)
    return out[1] if cfg.best else out


def odi_config(cfg: AttackConfig) -> AttackConfig:
    """The configuration of ``cfg``'s ODI start (docs/algorithms.md#odi): ``odi_steps`` sign
    steps of ``odi_step_size`` (default ``eps``) ascending ``w . logits``, in the same compiled
    loop (PGD's rule and schedule, the ODI loss, labels = the weights ``w`` ``[N, C]``)."""
    s = cfg.settings
    settings = catalogue.attack_settings(
        "pgd", eps=s.eps, step_size=s.eps if s.odi_step_size is None else s.odi_step_size,
        steps=s.odi_steps, loss=losses.odi, random_start=False, clip_min=s.clip_min,
        clip_max=s.clip_max, jit_compile=cfg.jit_compile)
    return make_config(settings)


def odi_weights(seed: tf.Tensor, n: int, classes: int) -> tf.Tensor:
    """ODI's output directions ``w ~ U[-1, 1)^C`` per example, ``[n, classes]`` float32, drawn
    statelessly from the run's ``seed`` (stream :data:`ODI_STREAM`)."""
    return tf.random.stateless_uniform([n, classes], seed=derive_seed(seed, ODI_STREAM),
                                       minval=-1.0, maxval=1.0, dtype=tf.float32)


def num_classes(model: loop.Model, x0: tf.Tensor) -> int:
    """The number of logits of ``model`` (from one example of ``x0``)."""
    return int(loop.call_model(model, x0[:1]).shape[-1])


def odi_start(model: loop.Model, cfg: AttackConfig, x0: tf.Tensor, x_start: tf.Tensor,
              seed: tf.Tensor, rows: Optional[tf.Tensor] = None) -> tf.Tensor:
    """``x_start`` moved by ``cfg``'s ODI steps (``x_start`` itself without ODI). The weights are
    drawn for the whole batch ``x0`` from ``seed``; with ``rows`` (int ``[n]``) only those rows of
    ``x0`` are moved, ``x_start`` holding just them (so a subset gets the weights it would get in
    the whole batch)."""
    if not cfg.settings.odi_steps:
        return x_start
    w = odi_weights(seed, tf.shape(x0)[0], num_classes(model, x0))
    if rows is not None:
        x0, w = tf.gather(x0, rows), tf.gather(w, rows)
    return run_steps(model, odi_config(cfg), x0, w, x_start)


def _attack(attack: str, model: loop.Model, x: Any, y: Any, x_init: Any, seed: Any,
            **settings: Any) -> tf.Tensor:
    cfg = make_config(attack, **settings)
    s = cfg.settings
    if x_init is not None and s.random_start:
        raise ValueError("x_init gives the starting points; pass random_start=False with it")
    if tf.executing_eagerly():
        x_np = validation.as_batch(x, np.float32, "x")
        y_np = np.asarray(y)
        validation.check_batch(x_np, y_np, s.clip_min, s.clip_max)
        validation.check_model_output(lambda t: loop.call_model(model, t), x_np[:32],
                                      y_np)
        if x_init is not None:
            init_np = validation.as_batch(x_init, np.float32, "x_init")
            if init_np.shape != x_np.shape:
                raise ValueError(f"x_init has shape {init_np.shape}, x has {x_np.shape}")
            if not np.all(np.isfinite(init_np)):
                raise ValueError("x_init contains NaN or inf values")
    x0 = tf.cast(tf.convert_to_tensor(x), tf.float32)
    y_t = tf.cast(tf.convert_to_tensor(y), tf.int32)
    seed_t = seed_tensor(seed)
    if x_init is not None:
        start = project(tf.cast(tf.convert_to_tensor(x_init), tf.float32), x0, s.eps,
                        s.clip_min, s.clip_max)
    else:
        start = start_points(cfg, x0, seed_t)
    start = odi_start(model, cfg, x0, start, seed_t)
    return run_steps(model, cfg, x0, y_t, start)


# Keyword arguments every public attack accepts (docs/algorithms.md#odi, #best-iterates):
# init="odi" (or odi_steps > 0): the ODI start, odi_steps (default 2) sign steps of odi_step_size
# (default eps) ascending w . logits from the start point; best: return each example's best iterate
# (default: the attack's own, False for the paper's attacks, True for APGD).
Init = Optional[str]


def fgsm(model: loop.Model, x: Any, y: Any, *, eps: float, step_size: Optional[float] = None,
         steps: int = 1, loss: Union[str, LossFn] = "xent", random_start: bool = False,
         x_init: Any = None, clip_min: float = 0.0, clip_max: float = 1.0,
         targeted: bool = False, seed: SeedLike = None, init: Init = None,
         odi_steps: Optional[int] = None, odi_step_size: Optional[float] = None,
         best: Optional[bool] = None, jit_compile: Optional[bool] = None) -> tf.Tensor:
    """FGSM: one step ``proj(x + a sign(G))``, ``a = eps`` by default; ``random_start=True`` gives
    Rand+FGSM (pass a smaller ``step_size`` then, as Tramer et al. do)."""
    return _attack("fgsm", model, x, y, x_init, seed, eps=eps, step_size=step_size, steps=steps,
                   loss=loss, random_start=random_start, clip_min=clip_min, clip_max=clip_max,
                   targeted=targeted, init=init, odi_steps=odi_steps,
                   odi_step_size=odi_step_size, best=best, jit_compile=jit_compile)


def rand_fgsm(model: loop.Model, x: Any, y: Any, *, eps: float,
              step_size: Optional[float] = None, steps: int = 1,
              loss: Union[str, LossFn] = "xent", random_start: bool = True,
              clip_min: float = 0.0, clip_max: float = 1.0, targeted: bool = False,
              seed: SeedLike = None, init: Init = None, odi_steps: Optional[int] = None,
              odi_step_size: Optional[float] = None, best: Optional[bool] = None,
              jit_compile: Optional[bool] = None) -> tf.Tensor:
    """Rand+FGSM: one step ``proj(x + a sign(G))`` from a random start, ``a = eps`` by default
    (the catalogue's ``rand_fgsm``: the random start is always on)."""
    return _attack("rand_fgsm", model, x, y, None, seed, eps=eps, step_size=step_size,
                   steps=steps, loss=loss, random_start=random_start, clip_min=clip_min,
                   clip_max=clip_max, targeted=targeted, init=init, odi_steps=odi_steps,
                   odi_step_size=odi_step_size, best=best, jit_compile=jit_compile)


def pgd(model: loop.Model, x: Any, y: Any, *, eps: float, step_size: float, steps: int,
        loss: Union[str, LossFn] = "xent", random_start: bool = True, x_init: Any = None,
        clip_min: float = 0.0, clip_max: float = 1.0, targeted: bool = False,
        seed: SeedLike = None, init: Init = None, odi_steps: Optional[int] = None,
        odi_step_size: Optional[float] = None, best: Optional[bool] = None,
        jit_compile: Optional[bool] = None) -> tf.Tensor:
    """PGD (Madry et al.): ``steps`` times ``x <- proj(x + a sign(G))``."""
    return _attack("pgd", model, x, y, x_init, seed, eps=eps, step_size=step_size, steps=steps,
                   loss=loss, random_start=random_start, clip_min=clip_min, clip_max=clip_max,
                   targeted=targeted, init=init, odi_steps=odi_steps,
                   odi_step_size=odi_step_size, best=best, jit_compile=jit_compile)


def momentum_pgd(model: loop.Model, x: Any, y: Any, *, eps: float, step_size: float,
                 steps: int, loss: Union[str, LossFn] = "xent", random_start: bool = True,
                 x_init: Any = None, clip_min: float = 0.0, clip_max: float = 1.0,
                 targeted: bool = False, seed: SeedLike = None,
                 decay: float = catalogue.DEFAULT_DECAY, init: Init = None,
                 odi_steps: Optional[int] = None, odi_step_size: Optional[float] = None,
                 best: Optional[bool] = None, jit_compile: Optional[bool] = None) -> tf.Tensor:
    """Momentum PGD (paper eq. 7): ``g <- decay g + G_i / ||G_i||_1``, ``x <- proj(x + a sign(g))``;
    ``g`` starts at zero on every call."""
    return _attack("momentum_pgd", model, x, y, x_init, seed, eps=eps, step_size=step_size,
                   steps=steps, loss=loss, random_start=random_start, clip_min=clip_min,
                   clip_max=clip_max, targeted=targeted, decay=decay, init=init,
                   odi_steps=odi_steps, odi_step_size=odi_step_size, best=best,
                   jit_compile=jit_compile)


def daa_blob(model: loop.Model, x: Any, y: Any, *, eps: float, step_size: float, steps: int,
             loss: Union[str, LossFn] = "xent", random_start: bool = True, x_init: Any = None,
             clip_min: float = 0.0, clip_max: float = 1.0, targeted: bool = False,
             seed: SeedLike = None, c: Optional[float] = None,
             particles: int = catalogue.DEFAULT_PARTICLES, init: Init = None,
             odi_steps: Optional[int] = None, odi_step_size: Optional[float] = None,
             best: Optional[bool] = None, jit_compile: Optional[bool] = None) -> tf.Tensor:
    """DAA-BLOB (paper eq. 21) on consecutive groups of ``particles`` examples of ``x``.

    ``c`` defaults to 1.1 (xent) / 10 (cw); ``c = 0`` is PGD. Groups never interact, so a batch
    of whole groups runs the same algorithm whatever its size (up to the model's float rounding,
    which on CPU kernels can depend on the batch size).
    """
    return _attack("daa_blob", model, x, y, x_init, seed, eps=eps, step_size=step_size,
                   steps=steps, loss=loss, random_start=random_start, clip_min=clip_min,
                   clip_max=clip_max, targeted=targeted, c=c, particles=particles, init=init,
                   odi_steps=odi_steps, odi_step_size=odi_step_size, best=best,
                   jit_compile=jit_compile)


def daa_dgf(model: loop.Model, x: Any, y: Any, *, eps: float, step_size: float, steps: int,
            loss: Union[str, LossFn] = "xent", random_start: bool = True, x_init: Any = None,
            clip_min: float = 0.0, clip_max: float = 1.0, targeted: bool = False,
            seed: SeedLike = None, c: Optional[float] = None,
            particles: int = catalogue.DEFAULT_PARTICLES, init: Init = None,
            odi_steps: Optional[int] = None, odi_step_size: Optional[float] = None,
            best: Optional[bool] = None, jit_compile: Optional[bool] = None) -> tf.Tensor:
    """DAA-DGF (paper eq. 22) on consecutive groups of ``particles`` examples of ``x``.

    ``c`` defaults to -0.001 (xent) / -0.01 (cw) for a unit pixel range, scaled internally by
    ``1 / (clip_max - clip_min)^2``.
    """
    return _attack("daa_dgf", model, x, y, x_init, seed, eps=eps, step_size=step_size,
                   steps=steps, loss=loss, random_start=random_start, clip_min=clip_min,
                   clip_max=clip_max, targeted=targeted, c=c, particles=particles, init=init,
                   odi_steps=odi_steps, odi_step_size=odi_step_size, best=best,
                   jit_compile=jit_compile)


# apgd(direction=...) -> the catalogue's APGD-scheduled attack.
APGD_DIRECTIONS = {"sign": "apgd", "daa_blob": "apgd_daa_blob", "daa_dgf": "apgd_daa_dgf"}


def apgd(model: loop.Model, x: Any, y: Any, *, eps: float, steps: int,
         loss: Union[str, LossFn] = "xent", step_size: Optional[float] = None,
         direction: str = "sign", random_start: bool = True, x_init: Any = None,
         clip_min: float = 0.0, clip_max: float = 1.0, targeted: bool = False,
         seed: SeedLike = None, c: Optional[float] = None,
         particles: int = catalogue.DEFAULT_PARTICLES, init: Init = None,
         odi_steps: Optional[int] = None, odi_step_size: Optional[float] = None,
         best: bool = True, jit_compile: Optional[bool] = None) -> tf.Tensor:
    """APGD (Croce & Hein 2020, AutoAttack's L-inf APGD; docs/algorithms.md#apgd).

    ``steps`` gradient passes (``x_0 .. x_{steps-1}``) move the points; the last point is judged
    by one forward pass. The step size starts at ``step_size`` (default ``2 eps``, pixel units)
    per example and is halved at the checkpoints (after ``0.22 steps``, then intervals shrinking by
    ``0.03 steps`` down to ``0.06 steps``) where the objective rose in at most 0.75 of the
    interval's steps, or where the step was not halved at the previous checkpoint and the best
    objective did not improve; halved examples restart from their best point and its gradient.
    Momentum 0.75 (none at the first step). ``loss``: ``xent`` (APGD-CE), ``dlr`` (APGD-DLR),
    ``cw``, ``margin`` or a callable. ``direction``: ``sign`` (``V = G``), ``daa_blob`` or
    ``daa_dgf`` (DAA's particle directions on consecutive groups of ``particles``, ``c`` as for
    :func:`daa_blob` / :func:`daa_dgf`), the schedule unchanged. ``best`` (default True, as
    AutoAttack): return each example's last fooling iterate, else its highest-loss iterate.
    Returns float32 ``[N, ...]`` in the box, within ``eps`` of ``x``.
    """
    try:
        attack = APGD_DIRECTIONS[direction]
    except KeyError:
        raise ValueError(f"unknown direction {direction!r}: use one of "
                         f"{', '.join(APGD_DIRECTIONS)}") from None
    extra = dict(c=c, particles=particles) if direction != "sign" else {}
    return _attack(attack, model, x, y, x_init, seed, eps=eps, step_size=step_size, steps=steps,
                   loss=loss, random_start=random_start, clip_min=clip_min, clip_max=clip_max,
                   targeted=targeted, init=init, odi_steps=odi_steps,
                   odi_step_size=odi_step_size, best=best, jit_compile=jit_compile, **extra)


def _apgd_daa(direction: str):
    def attack(model: loop.Model, x: Any, y: Any, **kw: Any) -> tf.Tensor:
        return apgd(model, x, y, direction=direction, **kw)
    attack.__name__ = f"apgd_{direction}"
    attack.__doc__ = f"``apgd(..., direction={direction!r})``: DAA's direction under APGD."
    return attack


def _multitargeted(model: loop.Model, x: Any, y: Any, **kw: Any) -> tf.Tensor:
    """:func:`daa_tf.multitarget.multitargeted` (imported on use: it builds on this module)."""
    from daa_tf.multitarget import multitargeted
    return multitargeted(model, x, y, **kw)


ATTACK_FUNCTIONS = {"fgsm": fgsm, "rand_fgsm": rand_fgsm, "pgd": pgd,
                    "momentum_pgd": momentum_pgd, "daa_blob": daa_blob, "daa_dgf": daa_dgf,
                    "apgd": apgd, "apgd_daa_blob": _apgd_daa("daa_blob"),
                    "apgd_daa_dgf": _apgd_daa("daa_dgf"), "multitargeted": _multitargeted}
