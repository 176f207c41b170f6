"""Square Attack's rules (Andriushchenko et al. 2020, L-inf, as AutoAttack runs it;
docs/algorithms.md#square): the image layout, the schedule of the square's size, the draw of a
square's position and signs, the candidate built from them, and the vertical-stripe start.

The loop hook that uses them is :class:`daa_tf.schedules.Square`. Draws are per example and
stateless (:mod:`daa_tf.draws`): the start uses the counter :data:`STRIPES_COUNTER`, candidate
``k`` (0-based) the counter ``k``.
"""
import math
from typing import Optional, Sequence, Tuple

import tensorflow as tf

from daa_tf import draws

P_INIT = 0.8  # AutoAttack's initial fraction of the pixels a square covers
# The piecewise schedule: p = p_init / 2^j, j = the number of thresholds below the iteration.
P_THRESHOLDS: Tuple[int, ...] = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
RESCALED_LENGTH = 10000  # the rescaled schedule maps the budget onto 10000 iterations
STRIPES_COUNTER = 0xFFFFFFFF  # the start's draws (candidates use 0, 1, ...)


def image_layout(shape: Sequence[Optional[int]]) -> Tuple[int, int, int]:
    """``(height, width, channels)`` of one input of ``shape`` (without the batch axis):
    ``(H, W, C)`` channels last; ``(H, W)`` one channel; a flat ``(D,)`` is a square image
    ``s x s x 1`` when ``D = s^2`` (MNIST's 784), ``s x s x 3`` when ``D = 3 s^2`` (a flat
    CIFAR10 image, channels last), else a ``1 x D x 1`` strip (squares of one coordinate)."""
    dims = tuple(int(d) for d in shape)
    if len(dims) == 3:
        return dims
    if len(dims) == 2:
        return dims[0], dims[1], 1
    if len(dims) != 1:
        raise ValueError(f"Square needs inputs [N, H, W, C], [N, H, W] or [N, D], got [N] + "
                         f"{list(dims)}")
    d = dims[0]
    for channels in (1, 3):
        side = math.isqrt(d // channels)
        if d % channels == 0 and side * side * channels == d:
            return side, side, channels
    return 1, d, 1


def p_index(k: int, candidates: Optional[int] = None) -> int:
    """The schedule's piece ``j`` (``p = p_init / 2^j``) of candidate ``k`` (0-based); with
    ``candidates`` (the rescaled schedule) ``k`` is first mapped to ``floor(k 10000 /
    candidates)``. Plain Python, for documentation and tests."""
    it = k if candidates is None else k * RESCALED_LENGTH // candidates
    return sum(it > t for t in P_THRESHOLDS)


def side_lengths(height: int, width: int, channels: int, p_init: float = P_INIT
                 ) -> Tuple[int, ...]:
    """The square's side for each piece ``j = 0 .. 9`` of the schedule:
    ``min(max(round(sqrt(p n_features / c)), 1), min(h, w))`` with ``p = p_init / 2^j`` and
    ``n_features = h w c``, in double precision with Python's rounding, as AutoAttack."""
    n_features = height * width * channels
    sides = []
    for j in range(len(P_THRESHOLDS) + 1):
        p = p_init / 2 ** j
        side = max(int(round(math.sqrt(p * n_features / channels))), 1)
        sides.append(min(side, min(height, width)))
    return tuple(sides)


def side_at(k: tf.Tensor, sides: Sequence[int], candidates: Optional[tf.Tensor] = None
            ) -> tf.Tensor:
    """:func:`p_index`'s side in the graph: int32 scalar for candidate ``k`` (int32 scalar);
    ``candidates`` (rescaled schedule) an int32 scalar, at least 1."""
    it = tf.cast(k, tf.int64)
    if candidates is not None:
        it = it * RESCALED_LENGTH // tf.maximum(tf.cast(candidates, tf.int64), 1)
    j = tf.reduce_sum(tf.cast(it > tf.constant(P_THRESHOLDS, tf.int64), tf.int32))
    return tf.gather(tf.constant(sides, tf.int32), j)


def draw_square(keys: tf.Tensor, k: tf.Tensor, side: tf.Tensor, height: int, width: int,
                channels: int) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Candidate ``k``'s square for each example of ``keys`` ``[N]``: its top row and left
    column (int32 ``[N]``, uniform on ``0 .. h - side - 1`` and ``0 .. w - side - 1``, 0 when
    the square spans the image: AutoAttack's range, which never reaches the last position) and
    one sign per channel (float32 ``[N, C]``)."""
    b = draws.bits(keys, k, 2 + channels)
    rows = draws.below(b[:, 0], height - side)
    cols = draws.below(b[:, 1], width - side)
    return rows, cols, draws.signs(b[:, 2:])


def square_delta(rows: tf.Tensor, cols: tf.Tensor, side: tf.Tensor, signs: tf.Tensor,
                 height: int, width: int) -> tf.Tensor:
    """``[N, H, W, C]`` float32: each example's channel sign inside its square
    ``rows .. rows + side - 1`` x ``cols .. cols + side - 1``, 0 elsewhere."""
    r = tf.range(height, dtype=tf.int32)[None, :]
    c = tf.range(width, dtype=tf.int32)[None, :]
    in_rows = tf.logical_and(r >= rows[:, None], r < rows[:, None] + side)  # [N, H]
    in_cols = tf.logical_and(c >= cols[:, None], c < cols[:, None] + side)  # [N, W]
    inside = tf.logical_and(in_rows[:, :, None], in_cols[:, None, :])
    return tf.cast(inside, tf.float32)[..., None] * signs[:, None, None, :]


def candidate(x_best: tf.Tensor, delta: tf.Tensor, step_size: tf.Tensor, low: tf.Tensor,
              high: tf.Tensor) -> tf.Tensor:
    """``clip(x_best + step_size * delta, low, high)`` in ``x_best``'s shape (``delta`` in
    the layout ``[N, H, W, C]``). With ``step_size = 2 eps`` every pixel of the square lands
    on ``x0 +- eps`` (then the box): AutoAttack's candidate."""
    moved = x_best + tf.cast(step_size, x_best.dtype) * tf.reshape(delta, tf.shape(x_best))
    return tf.clip_by_value(moved, low, high)


def stripes(x0: tf.Tensor, eps: tf.Tensor, clip_min: tf.Tensor, clip_max: tf.Tensor,
            keys: tf.Tensor) -> tf.Tensor:
    """The start: ``clip(x0 + eps * s, box)`` with one random sign ``s`` per example, column
    and channel, the same down each column (vertical stripes), drawn from ``keys`` ``[N]``."""
    height, width, channels = image_layout(x0.shape[1:])
    s = draws.signs(draws.bits(keys, STRIPES_COUNTER, width * channels))
    s = tf.reshape(s, [-1, 1, width, channels])
    shape = tf.shape(x0)
    layout = tf.reshape(x0, [shape[0], height, width, channels])
    low = tf.maximum(layout - eps, clip_min)
    high = tf.minimum(layout + eps, clip_max)
    return tf.reshape(tf.clip_by_value(layout + eps * s, low, high), shape)
