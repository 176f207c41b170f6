"""The exact median of each particle group's pairwise distances, found by selection, not by a
sort (docs/algorithms.md#daa-particle-groups).

The full ``m x m`` block of ``D`` holds ``m`` diagonal zeros and every off-diagonal value twice,
so counting the upper triangle twice plus ``m`` zeros gives the counts of the whole block;
``numpy.median`` is the mean of its order statistics ``(n-1)//2`` and ``n//2`` (``n = m*m``).
Three paths give the same values: ``NthElement`` (linear time) in the plain graph; a radix
selection on the float bit patterns under XLA, which has no ``NthElement`` (nonnegative floats
order as their int32 patterns: per level, a histogram of the next digit among the entries that
share the prefix found so far, one histogram per rank); a sort for dtypes other than float32.
"""
from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf

_INF = float("inf")

# Radix digits (in bits, most significant first) of the selection: nonnegative float32 bit patterns
# have 31 significant bits. Small groups hold their distances, so more levels of small histograms
# are cheapest; the tiled path (daa_tf.particles) recomputes the distances once per level, so it
# takes two.
DIGITS_HELD = (11, 10, 10)
DIGITS_TILED = (15, 16)
# Bit pattern of entries that must not be counted: above every finite float and +inf (only NaN
# patterns share its top bin), so no rank ever falls on it.
SKIP = np.int32(0x7FFFFFFF)


def _digit_shifts(digits: Tuple[int, ...]) -> Tuple[int, ...]:
    shifts, low = [], 31
    for width in digits:
        low -= width
        shifts.append(low)
    assert low == 0, digits
    return tuple(shifts)


def _group_offsets(bits: tf.Tensor, stride: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """``([g, 1] offsets g * stride, g)``: each group's histogram is a slice of one flat bincount."""
    g = bits.shape[0] if bits.shape[0] is not None else tf.shape(bits)[0]
    return (tf.range(g) * stride)[:, None], g


def _bincount(ids: tf.Tensor, size) -> tf.Tensor:
    """Counts ``[size]`` (int32) of the flattened ``ids``; ids ``>= size`` are skipped. (The raw op
    keeps ``size`` a compile-time constant, as XLA needs.)"""
    return tf.raw_ops.Bincount(arr=tf.reshape(ids, [-1]), size=size,
                               weights=tf.zeros([0], tf.int32))


def level_hist(bits: tf.Tensor, level: int, digits: Tuple[int, ...],
                prefixes: tf.Tensor) -> tf.Tensor:
    """Counts ``[g, 2, 2**w]`` (int32) of the level's digit among the entries of ``bits`` ``[g, L]``
    whose higher bits equal each rank's prefix (``prefixes`` ``[g, 2]``).

    ``SKIP`` entries are counted only in the top bin of the first level, after every finite value,
    where no rank ever falls, and never match a prefix below it."""
    width, shift = digits[level], _digit_shifts(digits)[level]
    bins = 1 << width
    if level == 0:  # both ranks share the empty prefix
        offsets, g = _group_offsets(bits, bins)
        hist = _bincount(tf.bitwise.right_shift(bits, shift) + offsets, g * bins)
        return tf.reshape(tf.tile(tf.reshape(hist, [-1, 1, bins]), [1, 2, 1]), [-1, 2, bins])
    offsets, g = _group_offsets(bits, 2 * bins)
    high = tf.bitwise.right_shift(bits, shift)
    base = tf.bitwise.bitwise_and(high, bins - 1) + offsets
    high = tf.bitwise.right_shift(high, width)
    # an entry matches at most one prefix unless both are equal; then all go to the first
    ids = tf.where(tf.equal(high, prefixes[:, :1]), base,
                   tf.where(tf.equal(high, prefixes[:, 1:]), base + bins, g * 2 * bins))
    hist = tf.reshape(_bincount(ids, g * 2 * bins), [-1, 2, bins])
    same = tf.equal(prefixes[:, 0], prefixes[:, 1])[:, None, None]
    return tf.where(same, hist[:, :1], hist)


def _select_step(hist: tf.Tensor, level: int, digits: Tuple[int, ...], prefixes: tf.Tensor,
                 ranks: tf.Tensor, zeros: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Picks each rank's bucket from the upper-triangle counts ``hist`` ``[g, 2, B]``: returns the
    longer prefixes and the ranks left inside them."""
    counts = 2 * tf.cast(hist, tf.int64)
    bins = 1 << digits[level]
    # the m diagonal zeros sit in bucket 0 of every level while the prefix is still zero
    zero_bin = tf.one_hot(0, bins, dtype=tf.int64)
    at_zero = tf.where(tf.equal(prefixes, 0), tf.broadcast_to(zeros[:, None], tf.shape(prefixes)),
                       tf.zeros_like(ranks))
    counts += zero_bin * at_zero[:, :, None]
    before = tf.cumsum(counts, axis=-1) <= ranks[:, :, None]
    bucket = tf.reduce_sum(tf.cast(before, tf.int32), axis=-1)
    below = tf.reduce_sum(tf.where(before, counts, tf.zeros_like(counts)), axis=-1)
    prefixes = tf.bitwise.bitwise_or(tf.bitwise.left_shift(prefixes, digits[level]), bucket)
    return prefixes, ranks - below


def exact_median(hist_of_level: Callable[[int, tf.Tensor], tf.Tensor], sizes: tf.Tensor,
                 digits: Tuple[int, ...], first: Optional[tf.Tensor] = None) -> tf.Tensor:
    """``numpy.median`` of each group's ``m x m`` block ``[g]``; ``hist_of_level(level, prefixes)``
    returns the level's upper-triangle counts (see :func:`level_hist`); ``first``: the first
    level's counts when the caller has them already."""
    m = tf.cast(sizes, tf.int64)
    n = m * m
    ranks = tf.stack([(n - 1) // 2, n // 2], axis=1)
    prefixes = tf.zeros(tf.shape(ranks), tf.int32)
    for level in range(len(digits)):
        hist = first if level == 0 and first is not None else hist_of_level(level, prefixes)
        prefixes, ranks = _select_step(hist, level, digits, prefixes, ranks, m)
    values = tf.bitcast(prefixes, tf.float32)
    return 0.5 * (values[:, 0] + values[:, 1])


def _upper(d: tf.Tensor, sizes: tf.Tensor, invalid) -> tf.Tensor:
    """The upper-triangle entries of ``d`` ``[g, M, M]`` as ``[g, M(M-1)/2]``, ``invalid`` where a
    column lies past the group's size."""
    m_static = d.shape[-1]
    rows, cols = np.triu_indices(m_static, k=1)
    flat = tf.reshape(d, [-1, m_static * m_static])
    upper = tf.gather(flat, tf.constant(rows * m_static + cols, tf.int32), axis=1)
    valid = tf.constant(cols, tf.int32)[None, :] < tf.cast(sizes, tf.int32)[:, None]
    return tf.where(valid, upper, invalid)


def _full_block_entry(upper: tf.Tensor, p, m, select: Callable) -> tf.Tensor:
    """The ``p``-th smallest of the full ``m x m`` block (``m`` zeros, then every upper value
    twice), ``select(upper, k)`` giving the ``k``-th smallest of the upper triangle."""
    value = select(upper, tf.maximum((p - m) // 2, 0))
    return tf.where(p < m, tf.zeros_like(value), value)


def _median_by_nth_element(d: tf.Tensor, sizes: tf.Tensor) -> tf.Tensor:
    """The median by ``NthElement`` (``std::nth_element``, linear time) on the upper triangle.

    Its rank is one scalar per call: every group but the last holds ``M`` particles (static ranks),
    the last one its own size."""
    upper = _upper(d, sizes, _INF)
    m_static = d.shape[-1]

    def select(rows, k):
        return tf.raw_ops.NthElement(input=rows, n=k)

    def median(rows, m):
        n = m * m
        return 0.5 * (_full_block_entry(rows, (n - 1) // 2, m, select)
                      + _full_block_entry(rows, n // 2, m, select))

    return tf.concat([median(upper[:-1], m_static),
                      median(upper[-1:], tf.cast(sizes[-1], tf.int32))], axis=0)


def _median_by_radix(d: tf.Tensor, sizes: tf.Tensor) -> tf.Tensor:
    """The median by radix selection (:func:`exact_median`); XLA-compatible."""
    # clearing the sign bit only changes NaNs (D >= 0), and keeps every pattern nonnegative
    bits = tf.bitwise.bitwise_and(tf.bitcast(d, tf.int32), SKIP)
    bits = _upper(bits, sizes, SKIP)
    return exact_median(lambda level, prefixes: level_hist(bits, level, DIGITS_HELD, prefixes),
                         sizes, DIGITS_HELD)


def _median_by_sort(d: tf.Tensor, sizes: tf.Tensor) -> tf.Tensor:
    """The median by sorting the upper triangle (dtypes other than float32)."""
    upper = tf.sort(_upper(d, sizes, tf.constant(_INF, d.dtype)), axis=-1)
    m = tf.cast(sizes, tf.int32)
    n = m * m

    def select(rows, k):
        return tf.gather(rows, k[:, None], batch_dims=1)[:, 0]

    return 0.5 * (_full_block_entry(upper, (n - 1) // 2, m, select)
                  + _full_block_entry(upper, n // 2, m, select))


def _compiling_with_xla() -> bool:
    """True while tracing for XLA (``jit_compile=True`` here or in an enclosing function), which
    has no ``NthElement`` kernel. Unsure means True: the radix selection runs everywhere."""
    try:
        from tensorflow.python.ops import control_flow_util
        return bool(control_flow_util.GraphOrParentsInXlaContext(
            tf.compat.v1.get_default_graph()))
    except Exception:  # pragma: no cover - a TF without this internal helper
        return True


def median_of_dists(d: tf.Tensor, sizes: tf.Tensor) -> tf.Tensor:
    """``numpy.median`` of all ``m*m`` entries of each group's valid block of ``D`` ``[g]``: the
    mean of its two middle order statistics, found exactly by selection (no sort).

    The full block holds ``m`` diagonal zeros and every off-diagonal value twice, so only the
    upper triangle is searched. Every group but the last must hold ``M`` particles (as
    :func:`to_groups` makes them)."""
    if d.dtype != tf.float32:
        return _median_by_sort(d, sizes)
    if _compiling_with_xla():
        return _median_by_radix(d, sizes)
    return _median_by_nth_element(d, sizes)
