"""The DAA particle kernel: groups, pairwise distances, median bandwidth, BLOB and DGF terms.

All functions work on a batch of groups: points ``x`` of shape ``[g, M, d]`` (flattened), a validity
``mask`` ``[g, M]`` (the last group of a batch may hold fewer than ``M`` particles; padded rows are
zero and never interact) and the actual group sizes ``sizes`` ``[g]``.
"""
from typing import Tuple

import numpy as np
import tensorflow as tf

_INF = float("inf")


def to_groups(x: tf.Tensor, particles: int) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Cuts ``x`` ``[N, d]`` into consecutive groups of ``particles``: ``(xg [g, M, d], mask [g, M],
    sizes [g])``. The last group holds ``N mod M`` particles (when nonzero), padded with zeros."""
    n = tf.shape(x)[0]
    groups = (n + particles - 1) // particles
    pad = groups * particles - n
    xg = tf.reshape(tf.pad(x, [[0, pad], [0, 0]]), [groups, particles, -1])
    index = tf.reshape(tf.range(groups * particles), [groups, particles])
    mask = tf.cast(index < n, x.dtype)
    sizes = tf.reduce_sum(mask, axis=1)
    return xg, mask, sizes


def from_groups(vg: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
    """Inverse of :func:`to_groups`: ``[g, M, d] -> [n, d]``."""
    return tf.reshape(vg, [-1, tf.shape(vg)[-1]])[:n]


def center(x: tf.Tensor, mask: tf.Tensor, sizes: tf.Tensor) -> tf.Tensor:
    """Subtracts each group's mean point. Distances and ``sum_j K_ij (x_i - x_j)`` are translation
    invariant; centring keeps the float32 Gram-matrix expansion of the distances accurate."""
    mean = tf.reduce_sum(x, axis=1, keepdims=True) / sizes[:, None, None]
    return (x - mean) * mask[:, :, None]


def pairwise_sq_dists(x: tf.Tensor) -> tf.Tensor:
    """``D_ij = ||x_i - x_j||^2`` ``[g, M, M]`` by one matmul; exact zeros on the diagonal."""
    sq = tf.reduce_sum(tf.square(x), axis=-1)
    gram = tf.matmul(x, x, transpose_b=True)
    d = tf.maximum(sq[:, :, None] + sq[:, None, :] - 2.0 * gram, 0.0)
    return tf.linalg.set_diag(d, tf.zeros_like(sq))


def median_of_dists(d: tf.Tensor, sizes: tf.Tensor) -> tf.Tensor:
    """``numpy.median`` of all ``m*m`` entries of each group's valid block of ``D`` ``[g]``.

    The full matrix holds ``m`` diagonal zeros and every off-diagonal value twice, so its sorted
    entries are ``m`` zeros followed by the sorted upper triangle, each value doubled: only the
    ``M(M-1)/2`` upper entries are sorted.
    """
    m_static = d.shape[-1]
    rows, cols = np.triu_indices(m_static, k=1)
    flat = tf.reshape(d, [tf.shape(d)[0], m_static * m_static])
    upper = tf.gather(flat, tf.constant(rows * m_static + cols, tf.int32), axis=1)
    m = tf.cast(sizes, tf.int32)
    valid = tf.constant(cols, tf.int32)[None, :] < m[:, None]
    upper = tf.sort(tf.where(valid, upper, _INF), axis=-1)

    n = m * m
    def entry(p):  # p [g]: the p-th smallest of the full m x m block
        k = tf.maximum((p - m) // 2, 0)
        value = tf.gather(upper, k[:, None], batch_dims=1)[:, 0]
        return tf.where(p < m, tf.zeros_like(value), value)
    return 0.5 * (entry((n - 1) // 2) + entry(n // 2))


def bandwidth(d: tf.Tensor, sizes: tf.Tensor, log_of: tf.Tensor) -> tf.Tensor:
    """``h2 = 0.5 * med / log(log_of)`` ``[g]``.

    Where this is undefined (a group of one particle, or a median of zero because at least half the
    particles coincide) the median is replaced by the mean off-diagonal distance, and by ``1`` if
    that is zero too: the coincident pairs then get ``K = 1`` and contribute ``x_i - x_j = 0``.
    """
    med = median_of_dists(d, sizes)
    pairs = tf.maximum(sizes * (sizes - 1.0), 1.0)
    mean = tf.reduce_sum(d, axis=[1, 2]) / pairs
    med = tf.where(med > 0, med, mean)
    h2 = 0.5 * med / tf.math.log(log_of)
    ok = tf.math.is_finite(h2) & (h2 > 0)
    return tf.where(ok, h2, tf.ones_like(h2))


def _weighted_diffs(k: tf.Tensor, x: tf.Tensor, kx: tf.Tensor) -> tf.Tensor:
    """``sum_j K_ij (x_i - x_j) = x_i * sum_j K_ij - (K x)_i``."""
    return x * tf.reduce_sum(k, axis=-1, keepdims=True) - kx


def blob_direction(grad: tf.Tensor, x: tf.Tensor, mask: tf.Tensor, sizes: tf.Tensor,
                   c: tf.Tensor) -> tf.Tensor:
    """DAA-BLOB direction ``V = G + (c/m) (K G - R)`` ``[g, M, d]`` (paper eq. 21).

    ``h2 = 0.5 med / log m``, ``K = exp(-D / 2h2)``, ``R_i = sum_j K_ij (x_i - x_j) / h2``.
    """
    x = center(x, mask, sizes)
    d = pairwise_sq_dists(x)
    h2 = bandwidth(d, sizes, sizes)[:, None, None]
    pair_mask = mask[:, :, None] * mask[:, None, :]
    k = tf.exp(-d / (2.0 * h2)) * pair_mask
    kg, kx = tf.split(tf.matmul(k, tf.concat([grad, x], axis=-1)), 2, axis=-1)
    r = _weighted_diffs(k, x, kx) / h2
    return grad + (c / sizes)[:, None, None] * (kg - r)


def dgf_direction(grad: tf.Tensor, x: tf.Tensor, mask: tf.Tensor, sizes: tf.Tensor,
                  c: tf.Tensor) -> tf.Tensor:
    """DAA-DGF direction ``V = G + c R`` ``[g, M, d]`` (paper eq. 22).

    ``h2 = 0.5 med / log(m + 1)``, ``K = exp(-D / 2h2) (D / 2h2 - 1)``,
    ``R_i = sum_j K_ij (x_i - x_j)``. ``c`` is used as given (the caller scales it for the pixel range).
    """
    x = center(x, mask, sizes)
    d = pairwise_sq_dists(x)
    h2 = bandwidth(d, sizes, sizes + 1.0)[:, None, None]
    a = d / (2.0 * h2)
    k = tf.exp(-a) * (a - 1.0) * (mask[:, :, None] * mask[:, None, :])
    r = _weighted_diffs(k, x, tf.matmul(k, x))
    return grad + c * r
