"""The engine: an attack's configuration for the compiled loop, its seeds, its starting points
(random start, ODI) and one call of the compiled loop (:mod:`daa_tf.loop`).

Everything above it (the public attack functions, the data-set driver, :mod:`daa_tf.distribute`)
runs the loop through :func:`run_loop` on a configuration from :func:`make_config`. The step rule
and the schedule come from the attack's catalogue entry (:mod:`daa_tf.specs`) through the
registries :data:`daa_tf.steps.RULES` and :data:`daa_tf.schedules.SCHEDULES`.
"""
import dataclasses
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from daa_tf import device, draws, losses, loop, squares
from daa_tf.projection import random_start as draw_random_start
from daa_tf.projection import sphere_start
from daa_tf.schedules import SCHEDULES, Schedule
from daa_tf.settings import AttackSettings, attack_settings
from daa_tf.steps import RULES, StepRule

SeedLike = Union[None, int, tf.Tensor]  # see seed_tensor
# Streams folded into a run's seed: the ODI weights, and MultiTargeted's k-th target run
# (docs/algorithms.md#randomness-of-the-new-attacks).
ODI_STREAM = 1
TARGET_STREAM = 16


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """What the compiled loop needs: the validated settings, resolved for this device.

    ``rule``: the step rule (static, hashable); ``schedule``: how ``x`` moves along the
    direction (static, hashable); ``params``: the numbers the rule and the schedule read as
    tensors (``c``, ``decay``, APGD's ``alpha`` and ``rho``; DGF's ``c`` already scaled for the
    pixel range); ``jit_compile`` resolved; ``best``: the loop tracks and returns the best
    iterates.
    """

    settings: AttackSettings
    rule: StepRule
    schedule: Schedule
    params: Dict[str, float]
    jit_compile: bool
    best: bool = False

    @property
    def interacting(self) -> bool:
        """True for DAA, whose examples interact inside groups (and so need rounds)."""
        return self.settings.interacting

    @property
    def loss_fn(self) -> losses.LossFn:
        """The loss the loop ascends: the settings' loss, or its form toward a target class for
        MultiTargeted (labels ``[N, 2]``)."""
        s = self.settings
        return losses.target_form(s.loss) if s.targets else losses.get_loss(s.loss)

    @property
    def random(self) -> bool:
        """True when the schedule draws per example inside the loop (Square): the loop takes
        per-example keys (:func:`example_keys`)."""
        return bool(getattr(self.schedule, "random", False))

    @property
    def counts_queries(self) -> bool:
        """True when the loop's outputs end with the queries each example spent (Square)."""
        return bool(getattr(self.schedule, "counts_queries", False))

    @property
    def gradients(self) -> bool:
        """False for a query attack: its loop runs forward passes only."""
        return bool(self.schedule.needs_gradients)

    @property
    def loop_key(self) -> Tuple:
        """What the compiled loop is built for (a cache key)."""
        return (self.loss_fn, self.rule, self.settings.targeted, self.jit_compile, self.schedule,
                self.best)


def make_config(attack: Union[str, AttackSettings], **settings: Any) -> AttackConfig:
    """The loop's configuration from validated settings (``settings``, if any, replace some of
    them), or from an attack name and its settings (validated by
    :func:`daa_tf.settings.attack_settings`)."""
    if isinstance(attack, AttackSettings):
        validated = attack.replace(**settings) if settings else attack
    else:
        validated = attack_settings(attack, **settings)
    spec = validated.spec
    rule, params = RULES[spec.direction].from_settings(validated)
    schedule = SCHEDULES[spec.schedule]()
    return AttackConfig(settings=validated, rule=rule, schedule=schedule,
                        params={**params, **schedule.params()},
                        jit_compile=device.resolve_jit_compile(validated.jit_compile),
                        best=validated.best)


def seed_tensor(seed: SeedLike, stream: Union[int, tf.Tensor] = 0) -> tf.Tensor:
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


def example_keys(seed: tf.Tensor, n: Union[int, tf.Tensor]) -> tf.Tensor:
    """The per-example keys ``[n]`` uint32 of the examples ``0 .. n-1`` of a run with ``seed``
    ``[2]`` (:func:`daa_tf.draws.example_keys`): a random schedule's loop takes the keys of
    its rows, and a drawn start (Square's stripes) draws from them."""
    return draws.example_keys(seed, n)


def start_points(cfg: AttackConfig, x0: tf.Tensor, seed: tf.Tensor, restart: int = 0
                 ) -> tf.Tensor:
    """The starting points of restart ``restart`` of a run on the set ``x0``: ``x0`` without a
    random start (and at restart 0 of an attack whose spec says ``clean_first``: FAB), else the
    spec's random start (``uniform``: ``proj(x0 + U(-eps, eps))``; ``sphere``: AutoAttack's
    point at L-inf distance ``start_radius x eps``; docs/algorithms.md#projection-and-random-start;
    ``stripes``: Square's vertical stripes, drawn from the keys of ``x0``'s rows,
    docs/algorithms.md#square)."""
    s = cfg.settings
    spec = s.spec
    if not s.random_start or (spec.clean_first and restart == 0):
        return x0
    eps, low, high = (tf.constant(v, x0.dtype) for v in (s.eps, s.clip_min, s.clip_max))
    if spec.start == "sphere":
        return sphere_start(x0, tf.constant(spec.start_radius * s.eps, x0.dtype), eps, low, high,
                            seed)
    if spec.start == "stripes":
        return squares.stripes(x0, eps, low, high, example_keys(seed, tf.shape(x0)[0]))
    return draw_random_start(x0, eps, low, high, seed)


def loop_arguments(cfg: AttackConfig, steps: Optional[int] = None
                   ) -> Tuple[Tuple[tf.Tensor, ...], Dict[str, tf.Tensor]]:
    """The compiled loop's scalar arguments ``(eps, step_size, steps, clip_min, clip_max)`` and
    rule and schedule parameters, as tensors (``steps`` defaults to the settings')."""
    s = cfg.settings
    f32 = lambda v: tf.constant(v, tf.float32)  # noqa: E731
    scalars = (f32(s.eps), f32(s.step_size),
               tf.constant(s.steps if steps is None else steps, tf.int32),
               f32(s.clip_min), f32(s.clip_max))
    return scalars, {k: f32(v) for k, v in cfg.params.items()}


def compiled(model: loop.Model, cfg: AttackConfig) -> Any:
    """The cached compiled loop of ``cfg`` for ``model`` (:func:`daa_tf.loop.compiled_loop`)."""
    return loop.compiled_loop(model, cfg.loss_fn, cfg.rule, cfg.settings.targeted,
                              cfg.jit_compile, cfg.schedule, cfg.best)


def run_loop(model: loop.Model, cfg: AttackConfig, x0: tf.Tensor, y: tf.Tensor,
             x_start: tf.Tensor, steps: Optional[int] = None, keys: Any = None) -> Any:
    """One call of the compiled loop: ``steps`` (default the settings') steps from ``x_start``.
    ``x0``: the clean batch (centre of the ball), float32; ``y``: int32 labels (``[N, 2]``
    (true, target) pairs for MultiTargeted's configurations, ``[N, C]`` weights for ODI);
    ``keys``: the rows' keys ``[N]`` uint32 (:func:`example_keys`), required when
    ``cfg.random``. Returns the last iterate, or with ``cfg.best`` the tuple ``(x_last, x_best,
    objective, fooled)`` (:mod:`daa_tf.iterates`); with ``cfg.counts_queries`` the outputs end
    with the queries per example (:func:`outputs` makes a tuple of any of them, :func:`points`
    picks the attack's result, :func:`queries` the queries). No checks."""
    scalars, params = loop_arguments(cfg, steps)
    if not cfg.random:
        return compiled(model, cfg)(x0, y, x_start, *scalars, params)
    if keys is None:
        raise ValueError(f"{cfg.settings.attack} draws inside its loop: pass the rows' keys "
                         "(engine.example_keys(seed, n), rows of the set)")
    return compiled(model, cfg)(x0, y, x_start, *scalars, params, keys)


def outputs(cfg: AttackConfig, out: Any) -> Tuple[Any, ...]:
    """:func:`run_loop`'s output as a tuple: ``(x_last,)``, or ``(x_last, x_best, objective,
    fooled)`` with ``cfg.best``; then ``queries`` with ``cfg.counts_queries``."""
    return tuple(out) if cfg.best or cfg.counts_queries else (out,)


def points(cfg: AttackConfig, out: Any) -> Any:
    """The attack's points in :func:`run_loop`'s output: the best iterates with ``cfg.best``,
    else the last ones."""
    return outputs(cfg, out)[1 if cfg.best else 0]


def queries(cfg: AttackConfig, out: Any) -> Any:
    """The queries (forward passes of the loop) each example spent, in :func:`run_loop`'s
    output; None when the schedule does not count them."""
    return outputs(cfg, out)[-1] if cfg.counts_queries else None


def odi_config(cfg: AttackConfig) -> AttackConfig:
    """The configuration of ``cfg``'s ODI start (docs/algorithms.md#odi): ``odi_steps`` sign
    steps of ``odi_step_size`` (default ``eps``) ascending ``w . logits``, in the same compiled
    loop (PGD's rule and schedule, the ODI loss, labels = the weights ``w`` ``[N, C]``)."""
    s = cfg.settings
    return make_config("pgd", eps=s.eps,
                       step_size=s.eps if s.odi_step_size is None else s.odi_step_size,
                       steps=s.odi_steps, loss=losses.odi, random_start=False,
                       clip_min=s.clip_min, clip_max=s.clip_max, jit_compile=cfg.jit_compile)


def odi_weights(seed: tf.Tensor, n: int, classes: int) -> tf.Tensor:
    """ODI's output directions ``w ~ U[-1, 1)^C`` per example, ``[n, classes]`` float32, drawn
    statelessly from the run's ``seed`` (stream :data:`ODI_STREAM`)."""
    return tf.random.stateless_uniform([n, classes], seed=derive_seed(seed, ODI_STREAM),
                                       minval=-1.0, maxval=1.0, dtype=tf.float32)


def num_classes(model: loop.Model, x0: Any) -> int:
    """The number of logits of ``model`` (from one example of ``x0``)."""
    return int(loop.call_model(model, tf.convert_to_tensor(x0[:1])).shape[-1])


def odi_start(model: loop.Model, cfg: AttackConfig, x0: tf.Tensor, x_start: tf.Tensor,
              seed: tf.Tensor) -> tf.Tensor:
    """``x_start`` moved by ``cfg``'s ODI steps (``x_start`` itself without ODI), the weights
    drawn for the batch ``x0`` from ``seed``."""
    if not cfg.settings.odi_steps:
        return x_start
    w = odi_weights(seed, tf.shape(x0)[0], num_classes(model, x0))
    odi = odi_config(cfg)
    return points(odi, run_loop(model, odi, x0, w, x_start))
