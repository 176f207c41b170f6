"""FAB, the fast adaptive boundary attack (Croce & Hein 2020), L-inf, as a schedule of the compiled
loop (docs/algorithms.md#fab).

FAB linearises the objective ``f`` at the current point (``f = z_t - z_y`` toward a target
``t``: the ``margin`` loss's target form; ``max_{j != y} z_j - z_y`` untargeted), projects both
the current point and the clean point onto the hyperplane ``f = 0`` of that linearisation inside
the pixel box (:func:`linf_projection`, the exact smallest L-inf move), steps to a biased
combination of the two projections with an overshoot, and steps back toward the clean point
whenever the point fools the model. It keeps each example's smallest fooling point and returns it
when it lies within ``eps`` (else the clean point).

The loop gives the schedule the objective and its gradient of every pass (``needs_values``), the
clean batch, ``eps`` and the box (``owns_result``: ``params`` then holds ``x0``, ``eps``,
``clip_min``, ``clip_max`` and each pass's ``fooled``), and takes the schedule's :meth:`FAB.result`
as its point.
"""
import dataclasses
from typing import ClassVar, Dict, Tuple

import tensorflow as tf

State = Tuple[tf.Tensor, ...]
Params = Dict[str, tf.Tensor]

# AutoAttack's FAB constants: the largest bias toward the clean point's projection, the
# overshoot of a step and the backward step after a fooling point.
FAB_ALPHA_MAX = 0.1
FAB_ETA = 1.05
FAB_BETA = 0.9
_NORM_FLOOR = 1e-8  # the projection lengths in alpha's ratio are floored at this (AutoAttack's)


def _flat(t: tf.Tensor) -> tf.Tensor:
    return tf.reshape(t, [tf.shape(t)[0], -1])


def _rows(values: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """``values`` ``[N]`` shaped to broadcast against ``like`` ``[N, ...]``."""
    return tf.reshape(values, [-1] + [1] * (len(like.shape) - 1))


def _linf(t: tf.Tensor) -> tf.Tensor:
    """``max_j |t_ij|`` per row, ``[N]``."""
    return tf.reduce_max(tf.abs(_flat(t)), axis=1)


def linf_projection(t: tf.Tensor, w: tf.Tensor, b: tf.Tensor, low: tf.Tensor,
                    high: tf.Tensor) -> tf.Tensor:
    """The smallest L-inf move onto a hyperplane inside a box, per row.

    ``t`` ``[M, D]``: points in the box ``[low, high]`` (scalars); ``w`` ``[M, D]``, ``b`` ``[M]``:
    the hyperplanes ``w . z = b``. Returns ``d`` ``[M, D]`` minimising ``||d||_inf`` subject to
    ``w . (t + d) = b`` and ``low <= t + d <= high``: every coordinate with ``w_i != 0`` moves by
    ``min(lam, room_i)`` in the direction that moves ``w . z`` toward ``b``, ``room_i`` its
    distance to the box face that way, ``lam`` the smallest radius that reaches the hyperplane;
    where the hyperplane misses the box, every such coordinate moves to its face (the box point
    nearest the hyperplane in ``w . z``). Coordinates with ``w_i = 0`` never move.
    Rules: docs/algorithms.md#fab.
    """
    gap = b - tf.reduce_sum(w * t, axis=1)                       # the change of w . z needed
    towards = tf.where(gap >= 0, 1.0, -1.0)[:, None]
    direction = tf.sign(w) * towards                             # +1 up, -1 down, 0 still
    room = tf.where(direction > 0, high - t, tf.where(direction < 0, t - low, tf.zeros_like(t)))
    room = tf.maximum(room, 0.0)
    weight = tf.abs(w)
    need = tf.abs(gap)[:, None]
    # reach(lam) = sum_i |w_i| min(lam, room_i): piecewise linear, non-decreasing; at the sorted
    # rooms r_1 <= ... <= r_D it is sum_{j<k} |w|_j r_j + r_k sum_{j>=k} |w|_j.
    order = tf.argsort(room, axis=1, stable=True)
    r = tf.gather(room, order, batch_dims=1)
    a = tf.gather(weight, order, batch_dims=1)
    before = tf.cumsum(a * r, axis=1, exclusive=True)
    tail = tf.cumsum(a, axis=1, reverse=True)
    enough = before + r * tail >= need
    feasible = tf.reduce_any(enough, axis=1, keepdims=True)
    k = tf.argmax(tf.cast(enough, tf.int32), axis=1, output_type=tf.int32)[:, None]
    # on [r_{k-1}, r_k]: reach(lam) = before_k + lam tail_k
    lam = (need - tf.gather(before, k, batch_dims=1)) / tf.maximum(
        tf.gather(tail, k, batch_dims=1), tf.constant(1e-30, t.dtype))
    lam = tf.maximum(lam, 0.0)
    move = tf.where(feasible, tf.minimum(lam, room), room)
    return direction * move


@dataclasses.dataclass(frozen=True)
class FAB:
    """FAB's L-inf schedule (docs/algorithms.md#fab): per example, the hyperplane of the
    objective's linearisation at the point of the last pass, the step toward the projections of the
    current and the clean point, the backward step after a fooling point, and the smallest fooling
    point so far.

    State: the smallest fooling point (``x0`` until one is found), its L-inf distance to ``x0``
    (``inf`` until then) and the offset ``b = G . x - f(x)`` of the current hyperplane
    ``G . z = b``. ``params``: ``alpha_max`` (0.1), ``eta`` (1.05), ``beta`` (0.9), and from the
    loop ``x0``, ``eps``, ``clip_min``, ``clip_max``, ``fooled``. The loop's step size and its
    ball bounds are not used: FAB's iterates move in the box only; its result is in the ball.
    """

    needs_values: ClassVar[bool] = True
    needs_gradients: ClassVar[bool] = True
    owns_result: ClassVar[bool] = True

    def params(self) -> Dict[str, float]:
        return {"alpha_max": FAB_ALPHA_MAX, "eta": FAB_ETA, "beta": FAB_BETA}

    def init_state(self, x, step_size, steps, params) -> State:
        n = tf.shape(x)[0]
        return (params["x0"], tf.fill([n], tf.constant(float("inf"), x.dtype)),
                tf.zeros([n], x.dtype))

    @staticmethod
    def _keep(x, fooled, state, params) -> State:
        """The state with ``x`` kept where it fools and is strictly nearer ``x0``."""
        best, distance, offset = state
        norm = _linf(x - params["x0"])
        nearer = tf.logical_and(fooled, norm < distance)
        return (tf.where(_rows(nearer, x), x, best), tf.where(nearer, norm, distance), offset)

    def observe(self, i, x, grad, objective, state, params):
        fooled = params["fooled"]
        best, distance, _ = self._keep(x, fooled, state, params)
        offset = tf.reduce_sum(_flat(grad * x), axis=1) - objective
        x0 = params["x0"]
        x = tf.where(_rows(fooled, x), x0 + params["beta"] * (x - x0), x)
        return x, grad, (best, distance, offset)

    def step(self, i, x, v, state, step_size, low, high, params):
        x0 = params["x0"]
        n = tf.shape(x)[0]
        w = _flat(v)
        d = linf_projection(tf.concat([_flat(x), _flat(x0)], 0), tf.concat([w, w], 0),
                            tf.concat([state[2], state[2]], 0), params["clip_min"],
                            params["clip_max"])
        d_x, d_0 = tf.reshape(d[:n], tf.shape(x)), tf.reshape(d[n:], tf.shape(x))
        floor = tf.constant(_NORM_FLOOR, x.dtype)
        to_x, to_0 = tf.maximum(_linf(d_x), floor), tf.maximum(_linf(d_0), floor)
        alpha = _rows(tf.minimum(to_x / (to_x + to_0), params["alpha_max"]), x)
        eta = params["eta"]
        moved = (x + eta * d_x) * (1 - alpha) + (x0 + eta * d_0) * alpha
        return tf.clip_by_value(moved, params["clip_min"], params["clip_max"]), state

    def result(self, x, objective, fooled, state, params):
        """The loop's point: the smallest fooling point (the last point judged too) when it lies
        within ``eps``, else ``x0``; clipped to the ball and box (a no-op up to rounding)."""
        best, distance, _ = self._keep(x, fooled, state, params)
        x0, eps = params["x0"], params["eps"]
        out = tf.where(_rows(distance <= eps, x), best, x0)
        return tf.clip_by_value(out, tf.maximum(x0 - eps, params["clip_min"]),
                                tf.minimum(x0 + eps, params["clip_max"]))
