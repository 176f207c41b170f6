"""Schedules: how the loop moves ``x`` once the step rule has given the direction ``V``.

The compiled loop (:mod:`daa_tf.loop`) runs, per iteration ``i``: a gradient pass at ``x``; the
schedule's :meth:`~Schedule.observe` (which may replace ``x`` and ``G`` per example, e.g. APGD's
restart from its best point); the step rule's direction ``V``; the schedule's
:meth:`~Schedule.step`. Step rules (:mod:`daa_tf.steps`) and schedules compose freely: DAA's
particle directions run under APGD's schedule unchanged.

- :class:`FixedStep`: PGD's ``x <- proj(x + a sign(V))`` (docs/algorithms.md#pgd); it needs no
  loss values, so the loop keeps its gradient-only pass.
- :class:`APGD`: the step-size schedule of Croce & Hein (2020), with momentum, checkpoints and the
  restart from the best point (docs/algorithms.md#apgd).
- :class:`daa_tf.boundary.FAB`: FAB's projections onto the linearised boundary, the smallest
  fooling point kept (docs/algorithms.md#fab).
- :class:`Square`: Square Attack's random search (docs/algorithms.md#square): forward passes
  only, one candidate per pass, kept when the loss improves.

Schedules are static, hashable configuration; their numbers (APGD's ``alpha`` and ``rho``) arrive
as tensors in ``params``, and the step budget as the loop's ``steps`` tensor, so changing them never
retraces.
"""
import dataclasses
from typing import Any, ClassVar, Dict, List, Protocol, Tuple, Type

import tensorflow as tf

from daa_tf.boundary import FAB
from daa_tf import squares
from daa_tf.specs import QUERY_SCHEDULES

State = Tuple[tf.Tensor, ...]
Params = Dict[str, tf.Tensor]

# APGD's constants (AutoAttack's defaults): momentum alpha and the oscillation threshold rho (its
# initial step, 2 eps, is the catalogue's: daa_tf.specs.APGD_INITIAL_STEP).
APGD_ALPHA = 0.75
APGD_RHO = 0.75


class Schedule(Protocol):
    """The "how x moves" hook of the loop: hashable static configuration.

    ``needs_values``: whether :meth:`observe` reads the per-example objective (then the loop's
    gradient pass also returns the loss and the logits). ``init_state(x, step_size, steps,
    params)``: the schedule's loop state for starting points ``x``. ``observe(i, x, grad,
    objective, state, params) -> (x, grad, state)``: called after the gradient pass at iteration
    ``i`` (0-based) with the objective ``[N]`` the attack ascends (the loss, negated for targeted
    attacks). ``step(i, x, v, state, step_size, low, high, params) -> (x, state)``: the move along
    the direction ``v``, ``low``/``high`` the bounds of ``proj`` (ball and box).
    ``params()``: the schedule's numbers, passed to the loop as tensors. ``owns_result``: the
    loop adds ``x0``, ``eps``, ``clip_min``, ``clip_max`` to the ``params`` the schedule sees,
    and each pass's success ``fooled`` ``[N]`` to those of ``observe``; after the loop, one
    forward pass judges the last point and ``result(x, objective, fooled, state, params)`` gives
    the loop's point (FAB's smallest fooling point within ``eps``).

    Optional hooks of query attacks (absent: False / not called): ``needs_success`` (the
    ``params`` of ``observe`` hold ``fooled`` ``[N]``, whether each example's point fools the
    model, as for ``owns_result``); ``random`` (the loop takes per-example uint32 keys,
    ``params["keys"]`` ``[N]``, for stateless draws: :mod:`daa_tf.draws`); ``running(state)``
    (a scalar bool: the loop stops early once it is False); ``counts_queries`` (the loop also
    returns ``queries(state)``, int32 ``[N]``, the forward passes each example spent).
    """

    needs_values: ClassVar[bool]
    needs_gradients: ClassVar[bool]  # False: the loop's pass is a forward pass only (queries)
    owns_result: ClassVar[bool]  # True: result() gives the loop's point (FAB)

    def params(self) -> Dict[str, float]: ...

    def init_state(self, x: tf.Tensor, step_size: tf.Tensor, steps: tf.Tensor,
                   params: Params) -> State: ...

    def observe(self, i: tf.Tensor, x: tf.Tensor, grad: tf.Tensor, objective: tf.Tensor,
                state: State, params: Params) -> Tuple[tf.Tensor, tf.Tensor, State]: ...

    def step(self, i: tf.Tensor, x: tf.Tensor, v: tf.Tensor, state: State, step_size: tf.Tensor,
             low: tf.Tensor, high: tf.Tensor, params: Params) -> Tuple[tf.Tensor, State]: ...

    def result(self, x: tf.Tensor, objective: tf.Tensor, fooled: tf.Tensor, state: State,
               params: Params) -> tf.Tensor: ...


@dataclasses.dataclass(frozen=True)
class FixedStep:
    """PGD's move: ``x <- clip(x + a sign(V), low, high)`` with the fixed step ``a``."""

    needs_values: ClassVar[bool] = False
    needs_gradients: ClassVar[bool] = True
    owns_result: ClassVar[bool] = False

    def params(self) -> Dict[str, float]:
        return {}

    def init_state(self, x, step_size, steps, params) -> State:
        return ()

    def observe(self, i, x, grad, objective, state, params):
        return x, grad, state

    def step(self, i, x, v, state, step_size, low, high, params):
        return tf.clip_by_value(x + step_size * tf.sign(v), low, high), state


def _per_example(values: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Reshapes ``values`` ``[N]`` to broadcast against ``like`` ``[N, ...]``."""
    return tf.reshape(values, [-1] + [1] * (len(like.shape) - 1))


def apgd_intervals(steps: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(first, shrink, minimum)`` interval lengths in steps for a budget of ``steps``:
    ``max(floor(0.22 N), 1)``, ``max(floor(0.03 N), 1)``, ``max(floor(0.06 N), 1)``, computed
    in exact integer arithmetic (equal to AutoAttack's ``int(0.22 * N)`` etc. for every N)."""
    n = tf.cast(steps, tf.int32)
    one = tf.constant(1, tf.int32)
    return (tf.maximum(22 * n // 100, one), tf.maximum(3 * n // 100, one),
            tf.maximum(6 * n // 100, one))


def apgd_checkpoints(steps: int) -> List[int]:
    """The iterations (1-based gradient passes after the start) at which APGD checks its step
    size for a budget of ``steps``: ``p_1 = first``, ``p_{j+1} = p_j + max(len_j - shrink,
    minimum)``. Plain Python, for documentation and tests."""
    first, shrink, minimum = (max(22 * steps // 100, 1), max(3 * steps // 100, 1),
                              max(6 * steps // 100, 1))
    points, at, length = [], first, first
    while at < steps:
        points.append(at)
        length = max(length - shrink, minimum)
        at += length
    return points


@dataclasses.dataclass(frozen=True)
class APGD:
    """APGD's schedule (Croce & Hein 2020; AutoAttack's ``autopgd_base.py``, L-inf), per example.

    State: the previous base point, the step size ``[N, 1, ...]`` (starts at the loop's
    ``step_size``, 2 eps by default), the best point, its gradient and objective, the previous
    objective, the count of increases in the current interval, the objective and the halving flag
    at the last checkpoint, and the scalars (steps since the checkpoint, current interval length,
    shrink, minimum length). ``params``: ``alpha`` (momentum, 0.75) and ``rho`` (0.75).
    Exact rules and AutoAttack's quirks kept: docs/algorithms.md#apgd.
    """

    needs_values: ClassVar[bool] = True
    needs_gradients: ClassVar[bool] = True
    owns_result: ClassVar[bool] = False

    def params(self) -> Dict[str, float]:
        return {"alpha": APGD_ALPHA, "rho": APGD_RHO}

    def init_state(self, x, step_size, steps, params) -> State:
        n = tf.shape(x)[0]
        size = _per_example(tf.fill([n], tf.cast(step_size, x.dtype)), x)
        first, shrink, minimum = apgd_intervals(steps)
        neg_inf = tf.fill([n], tf.constant(-float("inf"), x.dtype))
        zeros = tf.zeros([n], x.dtype)
        return (x, size, x, tf.zeros_like(x), neg_inf, zeros, zeros, neg_inf,
                tf.ones([n], tf.bool), tf.constant(0, tf.int32), first, shrink, minimum)

    def observe(self, i, x, grad, objective, state, params):
        (x_prev, size, x_best, g_best, best, previous, increases, best_at_check, halved_at_check,
         counter, length, shrink, minimum) = state
        # The best point so far (strict improvement; the start point is iteration 0).
        better = objective > best
        x_best = tf.where(_per_example(better, x), x, x_best)
        g_best = tf.where(_per_example(better, grad), grad, g_best)
        best = tf.where(better, objective, best)
        # Increases of the objective over the current interval. AutoAttack compares its first
        # step's loss with 0, not with the start's loss (``previous`` starts at 0): kept.
        later = i > 0
        increases = increases + tf.cast(tf.logical_and(later, objective > previous), x.dtype)
        previous = tf.where(later, objective, previous)
        counter = counter + tf.cast(later, tf.int32)
        at_check = tf.logical_and(later, tf.equal(counter, length))
        oscillating = increases <= params["rho"] * tf.cast(length, x.dtype)
        stalled = tf.logical_and(tf.logical_not(halved_at_check), best_at_check >= best)
        halve = tf.logical_and(at_check, tf.logical_or(oscillating, stalled))
        halved_at_check = tf.where(at_check, tf.logical_or(oscillating, stalled), halved_at_check)
        best_at_check = tf.where(at_check, best, best_at_check)
        halve_x = _per_example(halve, x)
        size = tf.where(halve_x, size / 2, size)
        x = tf.where(halve_x, x_best, x)
        grad = tf.where(halve_x, g_best, grad)
        length = tf.where(at_check, tf.maximum(length - shrink, minimum), length)
        counter = tf.where(at_check, 0, counter)
        increases = tf.where(at_check, tf.zeros_like(increases), increases)
        return x, grad, (x_prev, size, x_best, g_best, best, previous, increases, best_at_check,
                         halved_at_check, counter, length, shrink, minimum)

    def step(self, i, x, v, state, step_size, low, high, params):
        x_prev, size = state[0], state[1]
        alpha = tf.where(i > 0, tf.cast(params["alpha"], x.dtype), tf.constant(1.0, x.dtype))
        z = tf.clip_by_value(x + size * tf.sign(v), low, high)
        moved = tf.clip_by_value(x + (z - x) * alpha + (x - x_prev) * (1 - alpha), low, high)
        return moved, (x,) + tuple(state[1:])


@dataclasses.dataclass(frozen=True)
class Square:
    """Square Attack's random search, L-inf (docs/algorithms.md#square), in the loop's terms.

    Pass ``i`` (0-based) evaluates the start (``i = 0``) or candidate ``k = i - 1``; ``observe``
    keeps it per example when its objective (the loss the attack ascends) is strictly higher
    than the kept one's, or when it fools the model; an example whose kept point fools the model
    is done: its later candidates are its kept point and its passes are not counted. ``step``
    builds candidate ``k = i`` from the kept point (a square of side :func:`squares.side_at`,
    drawn per example from ``params["keys"]``: ``x_kept + step_size * sign`` inside it, clipped
    to ball and box); the last pass's step returns the kept points, so the loop's result is
    the attack's. ``p_init``: the first square's fraction of the pixels; ``rescale``: the
    piecewise schedule stretched over the budget (Square's own default; AutoAttack runs it
    with ``rescale`` False). State: kept points, their objective, done, queries ``[N]`` and the
    budget.
    """

    p_init: float = squares.P_INIT
    rescale: bool = False

    needs_values: ClassVar[bool] = True
    needs_gradients: ClassVar[bool] = False
    owns_result: ClassVar[bool] = False
    needs_success: ClassVar[bool] = True
    random: ClassVar[bool] = True
    counts_queries: ClassVar[bool] = True

    def params(self) -> Dict[str, float]:
        return {}

    def init_state(self, x, step_size, steps, params) -> State:
        n = tf.shape(x)[0]
        return (x, tf.fill([n], tf.constant(-float("inf"), x.dtype)), tf.zeros([n], tf.bool),
                tf.zeros([n], tf.int32), tf.cast(steps, tf.int32))

    def observe(self, i, x, grad, objective, state, params):
        x_kept, kept, done, queries, steps = state
        success = params["fooled"]
        active = tf.logical_not(done)
        improved = tf.logical_and(active, tf.logical_or(tf.equal(i, 0), objective > kept))
        accept = tf.logical_or(improved, tf.logical_and(active, success))
        x_kept = tf.where(_per_example(accept, x), x, x_kept)
        kept = tf.where(improved, objective, kept)
        done = tf.logical_or(done, tf.logical_and(active, success))
        queries = queries + tf.cast(active, tf.int32)
        return x, grad, (x_kept, kept, done, queries, steps)

    def step(self, i, x, v, state, step_size, low, high, params):
        x_kept, _, done, _, steps = state
        height, width, channels = squares.image_layout(x.shape[1:])
        sides = squares.side_lengths(height, width, channels, self.p_init)
        side = squares.side_at(i, sides, steps - 1 if self.rescale else None)
        rows, cols, signs = squares.draw_square(params["keys"], i, side, height, width,
                                                channels)
        delta = squares.square_delta(rows, cols, side, signs, height, width)
        moved = squares.candidate(x_kept, delta, step_size, low, high)
        keep = tf.logical_or(done, i >= steps - 1)
        return tf.where(_per_example(keep, x), x_kept, moved), state

    def running(self, state) -> tf.Tensor:
        """False once every example is done (the loop then stops)."""
        return tf.reduce_any(tf.logical_not(state[2]))

    def queries(self, state) -> tf.Tensor:
        """Forward passes spent per example, int32 ``[N]`` (the start's included)."""
        return state[3]


# The schedules by their catalogue key (daa_tf.specs.AttackSpec.schedule).
SCHEDULES: Dict[str, Type[Any]] = {"fixed": FixedStep, "apgd": APGD, "fab": FAB,
                                   "square": Square}
if {k for k, v in SCHEDULES.items() if not v.needs_gradients} != set(QUERY_SCHEDULES):
    raise ImportError("daa_tf.specs.QUERY_SCHEDULES must name the schedules without gradients")
