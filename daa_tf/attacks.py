"""The public attack functions: FGSM / Rand+FGSM, PGD, momentum PGD, DAA-BLOB, DAA-DGF, APGD
(with PGD's or DAA's directions), MultiTargeted, APGD-T, FAB, FAB-T and Square, on one batch.

Every function has the same signature (:func:`attack`'s settings; a setting left None takes the
attack's own default from its catalogue entry, :mod:`daa_tf.specs`) and runs ``steps`` steps
inside one compiled loop (:mod:`daa_tf.loop`): a direction ``V`` (the step rule,
:mod:`daa_tf.steps`) and a move along it (the schedule, :mod:`daa_tf.schedules`: PGD's
``x <- proj(x + a * sign(V))`` or APGD's). Every attack accepts the ODI start (``init="odi"``,
docs/algorithms.md#odi), can return its best iterate instead of its last (``best``,
docs/algorithms.md#best-iterates) and becomes MultiTargeted with ``targets=k``
(docs/algorithms.md#multitargeted; eager only: the target classes are chosen on the host and
the runs go through the driver). Exact rules: docs/algorithms.md.

Arguments: ``model`` (a ``keras.Model`` or any callable returning logits ``[N, C]``), ``x``
(clean batch ``[N, ...]`` in ``[clip_min, clip_max]``), ``y`` (int labels ``[N]``, or targets
when ``targeted``), ``eps`` (L-inf radius, pixel units), ``step_size`` (pixel units), ``steps``,
``seed`` (default 0; an int, an int64 scalar tensor, or a ``[2]`` stateless seed). They return
the adversarial batch, a float32 ``tf.Tensor`` of ``x``'s shape, in the box and the ball.
"""
import inspect
from typing import Any, Callable, Dict, Optional

import numpy as np
import tensorflow as tf

from daa_tf import driver, engine, loop, validation
from daa_tf.engine import SeedLike
from daa_tf.projection import project
from daa_tf.settings import SETTING_NAMES, LossSpec, unread_settings
from daa_tf.specs import ATTACKS, DEFAULT_SEED


def attack(name: str, model: loop.Model, x: Any, y: Any, *, x_init: Any = None,
           seed: SeedLike = DEFAULT_SEED, **settings: Any) -> tf.Tensor:
    """Attack ``name`` (a key of :data:`daa_tf.specs.ATTACKS`) on the batch ``x`` with
    ``settings`` (the names of :data:`daa_tf.settings.SETTING_NAMES`); ``x_init`` (``x``'s
    shape) gives the starting points instead of ``x`` (with ``random_start=False``). Works
    eagerly (inputs checked) and inside a ``tf.function`` (no checks; the loop in the graph)."""
    unknown = sorted(set(settings) - set(SETTING_NAMES))
    if unknown:
        raise TypeError(f"{name}() got unknown setting(s) {unknown}: it takes "
                        f"{', '.join(SETTING_NAMES)}, x_init and seed")
    unread = unread_settings(name, settings)
    if unread:
        raise TypeError(f"{name}() does not read {unread}: they belong to another attack's step "
                        "rule (c and particles: DAA; decay: momentum PGD)")
    cfg = engine.make_config(name, **settings)
    s = cfg.settings
    if x_init is not None and s.random_start:
        raise ValueError("x_init gives the starting points; pass random_start=False with it")
    if s.targets:
        return _over_targets(model, x, y, cfg, x_init, seed)
    if tf.executing_eagerly():
        y = _check_inputs(model, x, y, x_init, s.clip_min, s.clip_max)
    x0 = tf.cast(tf.convert_to_tensor(x), tf.float32)
    y_t = tf.cast(tf.convert_to_tensor(y), tf.int32)
    seed_t = engine.seed_tensor(seed)
    if x_init is not None:
        start = project(tf.cast(tf.convert_to_tensor(x_init), tf.float32), x0, s.eps,
                        s.clip_min, s.clip_max)
    else:
        start = engine.start_points(cfg, x0, seed_t)
    start = engine.odi_start(model, cfg, x0, start, seed_t)
    keys = engine.example_keys(seed_t, tf.shape(x0)[0]) if cfg.random else None
    return engine.points(cfg, engine.run_loop(model, cfg, x0, y_t, start, keys=keys))


def _check_inputs(model: loop.Model, x: Any, y: Any, x_init: Any, clip_min: float,
                  clip_max: float) -> np.ndarray:
    """The eager checks: the batch, its labels, the model's output and ``x_init``; returns the
    labels as ``[N]`` (the one label rule: ``[N]`` or ``[N, 1]``)."""
    x_np = validation.as_batch(x, np.float32, "x")
    y_np = validation.check_batch(x_np, np.asarray(y), clip_min, clip_max)
    validation.check_model_output(lambda t: loop.call_model(model, t), x_np[:32], y_np)
    if x_init is not None:
        init_np = validation.as_batch(x_init, np.float32, "x_init")
        if init_np.shape != x_np.shape:
            raise ValueError(f"x_init has shape {init_np.shape}, x has {x_np.shape}")
        if not np.all(np.isfinite(init_np)):
            raise ValueError("x_init contains NaN or inf values")
    return y_np


def _over_targets(model: loop.Model, x: Any, y: Any, cfg: engine.AttackConfig, x_init: Any,
                  seed: SeedLike) -> tf.Tensor:
    """MultiTargeted on one batch: the driver's target runs (one restart, one call per target
    over the whole batch; docs/algorithms.md#multitargeted)."""
    if not tf.executing_eagerly():
        raise NotImplementedError("targets (MultiTargeted) runs eagerly only: its target classes "
                                  "are chosen on the host; call it outside tf.function")
    if x_init is not None:
        raise ValueError("x_init does not apply with targets: each target run starts afresh")
    if isinstance(seed, (tf.Tensor, tf.Variable)):
        if seed.shape.rank:
            raise ValueError("targets (MultiTargeted) takes an int seed, not a [2] seed tensor")
        seed = int(seed.numpy())
    x_np = validation.as_batch(x, np.float32, "x")
    result = driver.run(model, x_np, y, cfg.settings, restarts=1, verbose=0,
                        seed=DEFAULT_SEED if seed is None else int(seed),
                        batch_size=None if cfg.interacting else len(x_np))
    return tf.constant(result.x_adv)


def _signature(model: loop.Model, x: Any, y: Any, *, eps: float,
               step_size: Optional[float] = None, steps: Optional[int] = None,
               loss: Optional[LossSpec] = None, random_start: Optional[bool] = None,
               x_init: Any = None, clip_min: float = 0.0, clip_max: float = 1.0,
               targeted: bool = False, seed: SeedLike = DEFAULT_SEED, c: Optional[float] = None,
               particles: Optional[int] = None, decay: Optional[float] = None,
               init: Optional[str] = None, odi_steps: Optional[int] = None,
               odi_step_size: Optional[float] = None, targets: Optional[int] = None,
               best: Optional[bool] = None, jit_compile: Optional[bool] = None
               ) -> tf.Tensor:
    """The one signature of every attack function (never called)."""
    raise NotImplementedError


_SETTINGS_DOC = """
    Settings (None: this attack's default): ``eps`` (required), ``step_size``, ``steps``,
    ``loss`` (``xent``, ``cw``, ``dlr``, ``margin`` or a callable ``(logits [N, C], labels [N])
    -> [N]``), ``random_start``, ``x_init``, ``clip_min``/``clip_max`` (the pixel box),
    ``targeted``, ``seed`` (default 0), DAA's ``c`` and ``particles``, momentum's ``decay``,
    ``init="odi" / ``odi_steps`` /
    ``odi_step_size`` (the ODI start), ``targets`` (MultiTargeted over this attack), ``best``,
    ``jit_compile`` (None: XLA on GPU/TPU, the plain graph on CPU). A missing required setting is a
    TypeError, as is a setting of another attack's step rule. Returns float32 ``[N, ...]``.
"""


def _public(name: str, doc: str) -> Callable[..., tf.Tensor]:
    """The public function of catalogue attack ``name``: :func:`attack` with the one signature."""
    def function(model: loop.Model, x: Any, y: Any, **settings: Any) -> tf.Tensor:
        return attack(name, model, x, y, **settings)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc + _SETTINGS_DOC
    function.__signature__ = inspect.signature(_signature)  # type: ignore[attr-defined]
    function.__annotations__ = dict(_signature.__annotations__)
    return function


fgsm = _public("fgsm", """FGSM: one step ``proj(x + a sign(G))``, ``a = eps`` by default, from
    ``x`` (``random_start=True`` gives Rand+FGSM); ``steps`` other than 1 is refused.""")
rand_fgsm = _public("rand_fgsm", """Rand+FGSM: one step ``proj(x + a sign(G))`` from a random
    start (always; ``random_start=False`` is refused), ``a = eps`` by default (pass a smaller
    ``step_size``, as Tramer et al. do).""")
pgd = _public("pgd", """PGD (Madry et al.): ``steps`` steps ``x <- proj(x + a sign(G))``
    from a random start (default).""")
momentum_pgd = _public("momentum_pgd", """Momentum PGD (paper eq. 7): ``g <- decay g + G_i /
    ||G_i||_1``, ``x <- proj(x + a sign(g))``; ``g`` starts at zero on every call, ``decay``
    default 1.""")
daa_blob = _public("daa_blob", """DAA-BLOB (paper eq. 21) on consecutive groups of
    ``particles`` (default 200) examples of ``x``. ``c`` defaults to 1.1 (xent) / 10 (cw);
    ``c = 0`` is PGD. Groups never interact, so a batch of whole groups runs the same algorithm
    whatever its size (up to the model's float rounding, which on CPU kernels can depend on the
    batch size).""")
daa_dgf = _public("daa_dgf", """DAA-DGF (paper eq. 22) on consecutive groups of ``particles``
    (default 200) examples of ``x``. ``c`` defaults to -0.001 (xent) / -0.01 (cw) for a unit
    pixel range, scaled internally by ``1 / (clip_max - clip_min)^2``.""")
apgd = _public("apgd", """APGD (Croce & Hein 2020, AutoAttack's L-inf APGD;
    docs/algorithms.md#apgd). ``steps`` gradient passes move the points; the last point is
    judged by one forward pass. The step size starts at ``step_size`` (default ``2 eps``) per
    example and is halved at the checkpoints (after ``0.22 steps``, then intervals shrinking by
    ``0.03 steps`` down to ``0.06 steps``) where the objective rose in at most 0.75 of the
    interval's steps, or where the step was not halved at the previous checkpoint and the best
    objective did not improve; halved examples restart from their best point. Momentum 0.75
    (none at the first step). ``loss``: ``xent`` (APGD-CE), ``dlr`` (APGD-DLR), ``cw``,
    ``margin`` or a callable. ``best`` (default True, as AutoAttack): each example's last
    fooling iterate, else its highest-loss one.""")
apgd_daa_blob = _public("apgd_daa_blob", """APGD's schedule with DAA-BLOB's direction on
    consecutive groups of ``particles`` (docs/algorithms.md#apgd-with-daa-directions); ``c`` as
    for :func:`daa_blob`.""")
apgd_daa_dgf = _public("apgd_daa_dgf", """APGD's schedule with DAA-DGF's direction on
    consecutive groups of ``particles`` (docs/algorithms.md#apgd-with-daa-directions); ``c`` as
    for :func:`daa_dgf`.""")
multitargeted = _public("multitargeted", """MultiTargeted (Gowal et al. 2019;
    docs/algorithms.md#multitargeted): APGD toward each of the ``targets`` (default 9) most
    likely wrong classes in turn, loss ``margin`` by default (its form toward the target), the
    worst case kept. Eager only. Other bases: any attack with ``targets=k``
    (``pgd(..., targets=9)``). Gradients per image: ``min(targets, C - 1) * (odi_steps +
    steps)``.""")
apgd_t = _public("apgd_t", """APGD-T as AutoAttack runs it (docs/algorithms.md#apgd-t): APGD
    toward each of the ``targets`` (default 9) most likely wrong classes in turn on the targeted
    DLR loss (``loss="dlr"``), ``steps`` (default 100) per target, each run from AutoAttack's
    random start (a point at L-inf distance ``eps``), the worst case kept. Eager only.""")
fab = _public("fab", """FAB, untargeted, L-inf (Croce & Hein 2020; docs/algorithms.md#fab):
    ``steps`` (default 100) projections onto the linearised boundary of the ``margin`` loss (the
    largest wrong logit against the true one), overshoot 1.05, bias toward the clean point's
    projection at most 0.1, a backward step of 0.9 toward ``x`` after each fooling point.
    Returns each example's smallest fooling point found when it lies within ``eps``, else ``x``
    itself (``step_size`` is not used; ``loss``: ``margin`` or ``dlr``). Starts at ``x`` (a
    driver's later restarts: at random at ``eps / 2``).""")
fab_t = _public("fab_t", """FAB-T as AutoAttack runs it (docs/algorithms.md#fab): FAB toward each of
    the ``targets`` (default 9) most likely wrong classes in turn (the hyperplane of
    ``z_t - z_y``), ``steps`` (default 100) per target, the first target's fooling point within
    ``eps`` kept. Eager only.""")
square = _public("square", """Square Attack (Andriushchenko et al. 2020), L-inf, as AutoAttack
    runs it (docs/algorithms.md#square): no gradient, ``steps`` queries (forward passes) per
    image, default 5000, the first on the start. From vertical stripes ``x0 +- eps`` (one sign
    per column and channel; ``random_start=False``: from ``x0``), each query tries the kept
    point with one random square (side from AutoAttack's schedule, ``p_init = 0.8``) moved by
    ``step_size`` (default ``2 eps``: every pixel of the square to ``x0 +- eps``, a random sign
    per channel) and keeps it when the loss strictly improves (``margin``; targeted: ``xent``
    toward the target) or the model is fooled; a fooled example stops. Draws are per example
    and stateless (the seed and the example's row), so batching and devices do not change
    them. The driver (``daa_tf.run``) reports the queries spent per image.""")

# The public function of every catalogue attack, by name.
ATTACK_FUNCTIONS: Dict[str, Callable[..., tf.Tensor]] = {
    name: globals()[name] for name in ATTACKS}
