"""The DAA particle kernel: groups, pairwise distances, median bandwidth, BLOB and DGF terms
(docs/algorithms.md#daa-particle-groups, #daa-blob, #daa-dgf).

All functions work on a batch of groups: points ``x`` of shape ``[g, M, d]`` (flattened), a validity
``mask`` ``[g, M]`` (the last group of a batch may hold fewer than ``M`` particles; padded rows are
zero and never interact) and the actual group sizes ``sizes`` ``[g]``.

Speed (see ``benchmarks/``): the median is found by exact selection instead of a sort
(:mod:`daa_tf.median`); ``K`` multiplies one ``[M, d]`` matrix per step. Groups of more than
:data:`TILE_THRESHOLD` particles never hold their ``M x M`` matrices: the distances are computed
block by block, once per radix level for the median and once more for the kernel rows, so memory
stays bounded by a few blocks of :data:`TILE_ELEMENTS` whatever the group size.
"""
from typing import Callable, Tuple

import numpy as np
import tensorflow as tf

from daa_tf.median import DIGITS_TILED, SKIP, exact_median, level_hist, median_of_dists

# Groups of more particles than this take the tiled path (bounded memory, distances recomputed).
TILE_THRESHOLD = 1024
# Elements of one block of distances in the tiled path (16 MB of float32).
TILE_ELEMENTS = 1 << 22



def to_groups(x: tf.Tensor, particles: int) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Cuts ``x`` ``[N, d]`` into consecutive groups of ``particles``: ``(xg [g, M, d], mask [g, M],
    sizes [g])``. The last group holds ``N mod M`` particles (when nonzero), padded with zeros."""
    n_static, dim = x.shape[0], x.shape[1]
    if n_static and dim is not None and n_static % particles == 0:  # whole groups: no copy
        groups = n_static // particles
        xg = tf.reshape(x, [groups, particles, dim])
        mask = tf.ones([groups, particles], x.dtype)
        return xg, mask, tf.fill([groups], tf.constant(particles, x.dtype))
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
    flat = tf.reshape(vg, [-1, tf.shape(vg)[-1]])
    if isinstance(n, int) and flat.shape[0] == n:  # whole groups: nothing to cut
        return flat
    return flat[:n]


def center(x: tf.Tensor, mask: tf.Tensor, sizes: tf.Tensor) -> tf.Tensor:
    """Subtracts each group's mean point. Distances and ``sum_j K_ij (x_i - x_j)`` are translation
    invariant; centring keeps the float32 Gram-matrix expansion of the distances accurate."""
    mean = tf.reduce_sum(x, axis=1, keepdims=True) / sizes[:, None, None]
    return (x - mean) * mask[:, :, None]


def _sq_dists(xi: tf.Tensor, sqi: tf.Tensor, xj: tf.Tensor, sqj: tf.Tensor) -> tf.Tensor:
    """``||x_i - x_j||^2`` ``[g, a, b]`` from one matmul (clamped at zero; diagonal not set)."""
    gram = tf.matmul(xi, xj, transpose_b=True)
    return tf.maximum(sqi[:, :, None] + sqj[:, None, :] - 2.0 * gram, 0.0)


def pairwise_sq_dists(x: tf.Tensor) -> tf.Tensor:
    """``D_ij = ||x_i - x_j||^2`` ``[g, M, M]`` by one matmul (the squared norms are its diagonal);
    exact zeros on the diagonal."""
    gram = tf.matmul(x, x, transpose_b=True)
    sq = tf.linalg.diag_part(gram)
    d = tf.maximum(sq[:, :, None] + sq[:, None, :] - 2.0 * gram, 0.0)
    return tf.linalg.set_diag(d, tf.zeros_like(sq))


def _h2_from(med: tf.Tensor, dist_sum: tf.Tensor, sizes: tf.Tensor,
             log_of: tf.Tensor) -> tf.Tensor:
    pairs = tf.maximum(sizes * (sizes - 1.0), 1.0)
    med = tf.where(med > 0, med, dist_sum / pairs)
    h2 = 0.5 * med / tf.math.log(log_of)
    ok = tf.math.is_finite(h2) & (h2 > 0)
    return tf.where(ok, h2, tf.ones_like(h2))


def _valid_sum(d: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Sum of each group's valid block of ``d`` ``[g]`` (pairs with a padded particle excluded)."""
    if mask is None:
        return tf.reduce_sum(d, axis=[1, 2])
    return tf.reduce_sum(tf.linalg.matvec(d, mask) * mask, axis=1)


def bandwidth(d: tf.Tensor, sizes: tf.Tensor, log_of: tf.Tensor,
              mask: tf.Tensor = None) -> tf.Tensor:
    """``h2 = 0.5 * med / log(log_of)`` ``[g]``.

    Where this is undefined (a group of one particle, or a median of zero because at least half the
    particles coincide) the median is replaced by the mean off-diagonal distance, and by ``1`` if
    that is zero too: the coincident pairs then get ``K = 1`` and contribute ``x_i - x_j = 0``.
    ``mask`` (``[g, M]``, optional) keeps padded rows out of that mean.
    """
    return _h2_from(median_of_dists(d, sizes), _valid_sum(d, mask), sizes, log_of)


# ------------------------------------------------------------------------ kernel products

def _kernel_products(x: tf.Tensor, mask: tf.Tensor, sizes: tf.Tensor, log_of: tf.Tensor,
                     kernel: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
                     rhs: Callable[[tf.Tensor], tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor,
                                                                    tf.Tensor]:
    """``(h2 [g], s = sum_j W_ij [g, M], W @ rhs(h2) [g, M, e])`` for centred ``x``, where
    ``W = kernel(D, h2) * pair_mask``. Holds ``D`` for small groups, tiles it for large ones."""
    m_static = x.shape[1]
    if m_static is not None and m_static > TILE_THRESHOLD:
        return _tiled_kernel_products(x, mask, sizes, log_of, kernel, rhs)
    d = pairwise_sq_dists(x)
    h2 = bandwidth(d, sizes, log_of, mask)
    k = kernel(d, h2[:, None, None]) * (mask[:, :, None] * mask[:, None, :])
    return h2, tf.reduce_sum(k, axis=-1), tf.matmul(k, rhs(h2))


def _tiled_kernel_products(x, mask, sizes, log_of, kernel, rhs):
    """:func:`_kernel_products` in blocks: the bandwidth from the upper-triangle blocks
    (:func:`_tiled_bandwidth`), then ``K`` by row tiles (:func:`_tiled_kernel_rows`). Peak memory
    is a few blocks of :data:`TILE_ELEMENTS`, never ``M x M``."""
    sq = tf.reduce_sum(tf.square(x), axis=-1)
    h2 = _tiled_bandwidth(x, sq, mask, sizes, log_of)
    s, ky = _tiled_kernel_rows(x, sq, mask, h2, kernel, rhs(h2))
    return h2, s, ky


def _tiled_bandwidth(x, sq, mask, sizes, log_of):
    """``h2`` ``[g]`` from the exact median and the sum of the distances, computed over the
    upper-triangle blocks (``S x S``, recomputed once per selection level)."""
    g = tf.shape(x)[0]
    m_static, dim = x.shape[1], x.shape[2]
    side = int(min(m_static, max(1, int(np.sqrt(TILE_ELEMENTS)))))
    nb = -(-m_static // side)
    pad = nb * side - m_static
    xb = tf.reshape(tf.pad(x, [[0, 0], [0, pad], [0, 0]]), [g, nb, side, dim])
    sqb = tf.reshape(tf.pad(sq, [[0, 0], [0, pad]]), [g, nb, side])
    mb = tf.reshape(tf.pad(mask, [[0, 0], [0, pad]]), [g, nb, side])
    bi, bj = np.triu_indices(nb)
    block_i, block_j = tf.constant(bi, tf.int32), tf.constant(bj, tf.int32)
    strict_upper = tf.constant(np.triu(np.ones((side, side), bool), k=1))

    def block(p):
        """Distances of upper block ``p`` ``[g, S, S]`` and which entries count."""
        i, j = block_i[p], block_j[p]
        xi, xj = tf.gather(xb, i, axis=1), tf.gather(xb, j, axis=1)
        d = _sq_dists(xi, tf.gather(sqb, i, axis=1), xj, tf.gather(sqb, j, axis=1))
        pair = (tf.gather(mb, i, axis=1)[:, :, None] * tf.gather(mb, j, axis=1)[:, None, :]) > 0
        counted = pair & (strict_upper | (i < j))
        return d, counted

    def over_blocks(fn, init):
        def body(p, acc):
            return p + 1, tuple(a + b for a, b in zip(acc, fn(*block(p))))
        return tf.while_loop(lambda p, acc: p < len(bi), body, (tf.constant(0), init))[1]

    def level_fn(level, prefixes):
        """The block function of one selection level: its digit's counts (and at the first level
        the sum of the counted distances)."""
        def fn(d, counted):
            bits = tf.bitwise.bitwise_and(tf.bitcast(d, tf.int32), SKIP)
            bits = tf.where(counted, bits, SKIP)
            hist = level_hist(tf.reshape(bits, [g, side * side]), level, DIGITS_TILED, prefixes)
            if level:
                return (hist,)
            return hist, tf.reduce_sum(tf.where(counted, d, 0.0), axis=[1, 2])
        return fn

    def zeros(level):
        return tf.zeros([g, 2, 1 << DIGITS_TILED[level]], tf.int32)

    # the first level's pass also sums the distances (each upper entry once: twice for the block)
    first, upper_sum = over_blocks(level_fn(0, tf.zeros([g, 2], tf.int32)),
                                   (zeros(0), tf.zeros([g])))
    med = exact_median(lambda level, prefixes: over_blocks(level_fn(level, prefixes),
                                                          (zeros(level),))[0],
                       sizes, DIGITS_TILED, first=first)
    return _h2_from(med, 2.0 * upper_sum, sizes, log_of)


def _tiled_kernel_rows(x, sq, mask, h2, kernel, y):
    """``(s = sum_j W_ij [g, M], W @ y [g, M, e])`` with ``W = kernel(D, h2) * pair_mask``,
    computed by row tiles (``T x M``)."""
    g = tf.shape(x)[0]
    m_static, dim = x.shape[1], x.shape[2]
    h2c = h2[:, None, None]
    rows = int(min(m_static, max(1, TILE_ELEMENTS // m_static)))
    nt = -(-m_static // rows)
    pad = nt * rows - m_static
    xt = tf.reshape(tf.pad(x, [[0, 0], [0, pad], [0, 0]]), [g, nt, rows, dim])
    sqt = tf.reshape(tf.pad(sq, [[0, 0], [0, pad]]), [g, nt, rows])
    mt = tf.reshape(tf.pad(mask, [[0, 0], [0, pad]]), [g, nt, rows])
    cols = tf.range(m_static)

    def tile_body(t, s_acc, ky_acc):
        xi = tf.gather(xt, t, axis=1)
        d = _sq_dists(xi, tf.gather(sqt, t, axis=1), x, sq)
        diagonal = tf.equal((t * rows + tf.range(rows))[:, None], cols[None, :])
        d = tf.where(diagonal, 0.0, d)
        k = kernel(d, h2c) * (tf.gather(mt, t, axis=1)[:, :, None] * mask[:, None, :])
        return (t + 1, s_acc.write(t, tf.reduce_sum(k, axis=-1)),
                ky_acc.write(t, tf.matmul(k, y)))

    _, s_rows, ky_rows = tf.while_loop(
        lambda t, *_: t < nt, tile_body,
        (tf.constant(0), tf.TensorArray(x.dtype, size=nt, element_shape=[None, rows]),
         tf.TensorArray(x.dtype, size=nt, element_shape=[None, rows, y.shape[-1]])))
    s = tf.reshape(tf.transpose(s_rows.stack(), [1, 0, 2]), [g, nt * rows])[:, :m_static]
    ky = tf.reshape(tf.transpose(ky_rows.stack(), [1, 0, 2, 3]),
                    [g, nt * rows, y.shape[-1]])[:, :m_static]
    return s, ky


def blob_direction(grad: tf.Tensor, x: tf.Tensor, mask: tf.Tensor, sizes: tf.Tensor,
                   c: tf.Tensor) -> tf.Tensor:
    """DAA-BLOB direction ``V = G + (c/m) (K G - R)`` ``[g, M, d]`` (paper eq. 21).

    ``h2 = 0.5 med / log m``, ``K = exp(-D / 2h2)``, ``R_i = sum_j K_ij (x_i - x_j) / h2``.
    Computed with one product: with ``W = (c/m) K``, ``V = G + W (G + X/h2) - X * (W 1) / h2``.
    """
    x = center(x, mask, sizes)
    coef = (c / sizes)[:, None, None]
    h2, s, wy = _kernel_products(x, mask, sizes, sizes,
                                 lambda d, h2: coef * tf.exp(-d / (2.0 * h2)),
                                 lambda h2: grad + x / h2[:, None, None])
    return grad + wy - x * (s / h2[:, None])[:, :, None]


def dgf_direction(grad: tf.Tensor, x: tf.Tensor, mask: tf.Tensor, sizes: tf.Tensor,
                  c: tf.Tensor) -> tf.Tensor:
    """DAA-DGF direction ``V = G + c R`` ``[g, M, d]`` (paper eq. 22).

    ``h2 = 0.5 med / log(m + 1)``, ``K = exp(-D / 2h2) (D / 2h2 - 1)``,
    ``R_i = sum_j K_ij (x_i - x_j)``. ``c`` is used as given (the caller scales it for the pixel range).
    Computed as ``V = G + X * (W 1) - W X`` with ``W = c K``.
    """
    x = center(x, mask, sizes)

    def kernel(d, h2):
        a = d / (2.0 * h2)
        return c * tf.exp(-a) * (a - 1.0)

    _, s, wx = _kernel_products(x, mask, sizes, sizes + 1.0, kernel, lambda h2: x)
    return grad + x * s[:, :, None] - wx
