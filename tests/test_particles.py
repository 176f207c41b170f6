"""The DAA particle kernel (``daa_tf.particles``) against independent NumPy expectations.

Covered:

- ``pairwise_sq_dists`` against float64 direct distances (exact zeros on the diagonal).
- The three exact-median paths (``_median_by_nth_element``, ``_median_by_radix``,
  ``_median_by_sort``) called directly, and the dispatcher ``median_of_dists`` in eager mode, in a
  plain graph (``tf.function``: ``NthElement``), under XLA (``jit_compile=True``: the radix path)
  and in float64 (the sort path); each is compared for exact equality with ``numpy.median`` of
  every group's valid ``m x m`` block of the float32 ``D`` that TF computed (so the selection is
  tested, not the distance rounding). Cases: even and odd ``m``, whole groups, a short last group,
  a last group of one, a single short group, groups of two, lattice points (many tied distances,
  duplicated points), coincident particles (median zero) and distances spanning many decades.
- ``bandwidth``: ``0.5 med / log(log_of)``, with its documented fallbacks (median zero: mean
  off-diagonal distance of the valid block; that zero too, or a group of one: 1).
- The tiled kernel (``_tiled_kernel_products``, for groups above ``TILE_THRESHOLD``; the tile
  constants are monkeypatched small so that blocks and row tiles are partial): exactly equal to
  the held path on lattice points (median, fallback, row sums, products), and ``blob_direction`` /
  ``dgf_direction`` against the held path and ``numpy_reference.blob_terms`` / ``dgf_terms`` (one
  case also with the default constants), in eager mode, a plain graph and XLA.
- ``steps.Particles('blob' / 'dgf', M).direction`` on an image batch with a short last group
  against ``numpy_reference.daa_direction``, and degenerate groups (one particle, all coincident).
"""
import numpy as np
import pytest
import tensorflow as tf

from daa_tf import median, particles, steps
from tests import numpy_reference as ref


# ------------------------------------------------------------------------ point sets

def _normal(n, dim, seed):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def _lattice(n, dim, seed, side=3):
    """Integer points of a small lattice: exact float32 distances, many ties and duplicates."""
    return np.random.default_rng(seed).integers(0, side, size=(n, dim)).astype(np.float32)


def _coincident():
    """Groups of 7, 7 and 4 where at least half the particles coincide (median zero):
    5 of 7 equal (fallback: the mean distance), all 7 equal (fallback: 1), 3 of 4 equal."""
    a, b, c = [1.0, 2.0, 0.0], [2.0, 2.0, 2.0], [0.0, 1.0, 3.0]
    first = [[0.0, 0.0, 0.0], a, a, [3.0, 1.0, 1.0], a, a, a]
    last = [c, c, [1.0, 1.0, 5.0], c]
    return np.array(first + [b] * 7 + last, np.float32)


def _wide_range():
    """Points whose scales span 24 decades: distances of very different float exponents."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(18, 4)) * 10.0 ** rng.uniform(-12, 12, size=(18, 1))
    return x.astype(np.float32)


CASES = {  # name: (points [N, d], particles M); the group sizes are in the comments
    "even_m_short_last": (_normal(17, 5, 1), 6),    # 6, 6, 5
    "odd_m_last_of_one": (_normal(16, 3, 2), 5),    # 5, 5, 5, 1
    "whole_groups": (_normal(12, 7, 3), 4),         # 4, 4, 4 (no padding)
    "one_short_group": (_normal(3, 4, 4), 4),       # 3
    "pairs": (_normal(5, 2, 5), 2),                 # 2, 2, 1
    "lattice_ties": (_lattice(22, 3, 6), 8),        # 8, 8, 6
    "coincident": (_coincident(), 7),               # 7, 7, 4
    "wide_range": (_wide_range(), 6),               # 6, 6, 6
}


def _groups(x, m):
    xg, mask, sizes = particles.to_groups(tf.constant(x), m)
    return xg, mask, sizes


def _sizes_of(n, m):
    return [min(m, n - start) for start in range(0, n, m)]


def _blocks(d, sizes):
    """Each group's valid ``m x m`` block of ``d`` (NumPy)."""
    return [d[i, :int(s), :int(s)] for i, s in enumerate(np.asarray(sizes))]


def _numpy_medians(d, sizes):
    return np.array([np.median(b) for b in _blocks(d, sizes)], d.dtype)


def _numpy_h2(d, sizes, log_of):
    """``bandwidth``'s rule in float64 from the valid blocks of ``d``."""
    out = []
    for block, lo in zip(_blocks(d.astype(np.float64), sizes), np.asarray(log_of, np.float64)):
        m = len(block)
        med = np.median(block)
        if not med > 0:
            med = block.sum() / max(m * (m - 1), 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            h2 = 0.5 * med / np.log(lo)
        out.append(h2 if np.isfinite(h2) and h2 > 0 else 1.0)
    return np.array(out)


# ------------------------------------------------------------------------ distances, medians

def test_groups_and_sizes():
    for x, m in CASES.values():
        xg, mask, sizes = _groups(x, m)
        expected = _sizes_of(len(x), m)
        np.testing.assert_array_equal(sizes.numpy(), expected)
        np.testing.assert_array_equal(mask.numpy().sum(axis=1), expected)
        flat = xg.numpy().reshape(-1, x.shape[1])
        np.testing.assert_array_equal(flat[:len(x)], x)
        np.testing.assert_array_equal(flat[len(x):], 0.0)


@pytest.mark.parametrize("case", CASES)
def test_pairwise_sq_dists_match_float64(case):
    x, m = CASES[case]
    xg, _, sizes = _groups(x, m)
    d = particles.pairwise_sq_dists(xg).numpy()
    for i, block in enumerate(_blocks(d, sizes)):
        pts = x[i * m:i * m + len(block)].astype(np.float64)
        expected = ref.sq_dists(pts)
        sq = np.sum(pts * pts, axis=1)
        # the Gram-matrix expansion rounds relative to the squared norms of the pair
        tol = 1e-5 * (sq[:, None] + sq[None, :])
        assert np.all(np.abs(block - expected) <= tol), case
        np.testing.assert_array_equal(np.diag(block), 0.0)
        if case in ("lattice_ties", "coincident"):  # integer points: exact
            np.testing.assert_array_equal(block, expected)


def test_the_cases_hold_what_they_claim():
    """The tie and coincidence cases really have ties and zero medians (else they prove little)."""
    x, m = CASES["lattice_ties"]
    xg, _, sizes = _groups(x, m)
    d = particles.pairwise_sq_dists(xg).numpy()
    for block in _blocks(d, sizes):
        off = block[~np.eye(len(block), dtype=bool)]
        assert len(np.unique(off)) < len(off) // 4
    assert len(np.unique(x, axis=0)) < len(x)
    x, m = CASES["coincident"]
    xg, _, sizes = _groups(x, m)
    d = particles.pairwise_sq_dists(xg).numpy()
    np.testing.assert_array_equal(_numpy_medians(d, sizes), 0.0)
    assert [b.sum() > 0 for b in _blocks(d, sizes)] == [True, False, True]
    for case in ("even_m_short_last", "odd_m_last_of_one", "whole_groups", "pairs"):
        # no tied distances: the wrong order statistic would give a different median
        x, m = CASES[case]
        xg, _, sizes = _groups(x, m)
        d = particles.pairwise_sq_dists(xg).numpy()
        for block in _blocks(d, sizes):
            upper = block[np.triu_indices(len(block), k=1)]
            assert len(np.unique(upper)) == len(upper)


MEDIAN_PATHS = {
    "nth_element": median._median_by_nth_element,
    "radix": median._median_by_radix,
    "sort": median._median_by_sort,
}


@pytest.mark.parametrize("path", MEDIAN_PATHS)
@pytest.mark.parametrize("case", CASES)
def test_median_paths_are_numpy_median(case, path):
    x, m = CASES[case]
    xg, _, sizes = _groups(x, m)
    d = particles.pairwise_sq_dists(xg)
    got = MEDIAN_PATHS[path](d, sizes).numpy()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, _numpy_medians(d.numpy(), sizes))


def test_sort_path_in_float64():
    for x, m in CASES.values():
        xg, _, sizes = _groups(x.astype(np.float64), m)
        d = particles.pairwise_sq_dists(xg)
        got = median._median_by_sort(d, sizes).numpy()
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, _numpy_medians(d.numpy(), sizes))


@pytest.fixture
def median_calls(monkeypatch):
    """Records which median path ``median_of_dists`` takes."""
    calls = []
    for name in ("_median_by_nth_element", "_median_by_radix", "_median_by_sort"):
        def spy(d, sizes, _name=name, _fn=getattr(median, name)):
            calls.append(_name)
            return _fn(d, sizes)
        monkeypatch.setattr(median, name, spy)
    return calls


DISPATCH = {  # mode: (how median_of_dists is called, the path it must take, dtype)
    "eager": (lambda f: f, "_median_by_nth_element", np.float32),
    "graph": (tf.function, "_median_by_nth_element", np.float32),
    "xla": (lambda f: tf.function(f, jit_compile=True), "_median_by_radix", np.float32),
    "float64": (lambda f: f, "_median_by_sort", np.float64),
}


# XLA compiles take seconds: a subset of the cases there (the radix path runs on all above)
XLA_CASES = ("even_m_short_last", "odd_m_last_of_one", "lattice_ties", "coincident")


@pytest.mark.parametrize("case,mode", [(case, mode) for mode in DISPATCH for case in CASES
                                       if mode != "xla" or case in XLA_CASES])
def test_median_of_dists_dispatch(case, mode, median_calls):
    wrap, path, dtype = DISPATCH[mode]
    x, m = CASES[case]
    xg, _, sizes = _groups(x.astype(dtype), m)
    d = particles.pairwise_sq_dists(xg)
    got = wrap(median.median_of_dists)(d, sizes).numpy()
    assert median_calls == [path]
    np.testing.assert_array_equal(got, _numpy_medians(d.numpy(), sizes))


@pytest.mark.parametrize("shift", [0.0, 1.0])  # log_of = m (BLOB) or m + 1 (DGF)
@pytest.mark.parametrize("case", CASES)
def test_bandwidth_and_its_fallbacks(case, shift):
    x, m = CASES[case]
    xg, mask, sizes = _groups(x, m)
    d = particles.pairwise_sq_dists(xg)
    log_of = sizes + shift
    got = particles.bandwidth(d, sizes, log_of, mask).numpy()
    expected = _numpy_h2(d.numpy(), sizes, log_of.numpy())
    np.testing.assert_allclose(got, expected, rtol=2e-6)
    if case == "coincident":  # median zero: mean off-diagonal distance, then 1
        blocks = _blocks(d.numpy().astype(np.float64), sizes)
        logs = np.log(log_of.numpy().astype(np.float64))
        means = [b.sum() / (len(b) * (len(b) - 1)) for b in blocks]
        np.testing.assert_allclose(got, [0.5 * means[0] / logs[0], 1.0, 0.5 * means[2] / logs[2]],
                                   rtol=2e-6)
        assert got[1] == 1.0
    if case in ("odd_m_last_of_one", "pairs"):  # a group of one particle
        assert got[-1] == 1.0


# ------------------------------------------------------------------------ the tiled kernel

def _tiled(monkeypatch, threshold, elements):
    """Makes groups above ``threshold`` take the tiled path with blocks of ``elements``; returns
    the list that records each tiled call."""
    calls = []
    tiled = particles._tiled_kernel_products

    def spy(*args):
        calls.append(args[0].shape[1])
        return tiled(*args)

    monkeypatch.setattr(particles, "TILE_THRESHOLD", threshold)
    monkeypatch.setattr(particles, "TILE_ELEMENTS", elements)
    monkeypatch.setattr(particles, "_tiled_kernel_products", spy)
    return calls


def _tiled_lattice():
    """Groups of 40, 40 and 13 integer points: ties, one group with 30 of 40 coincident."""
    rng = np.random.default_rng(11)
    first = rng.integers(0, 4, size=(40, 3))
    second = np.concatenate([np.tile([[1, 2, 3]], (30, 1)), rng.integers(0, 5, size=(10, 3))])
    second = second[rng.permutation(40)]
    third = rng.integers(0, 3, size=(13, 3))
    return np.concatenate([first, second, third]).astype(np.float32)


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_tiled_products_equal_held_on_lattice_points(monkeypatch, shift):
    """Integer points: every distance is exact in both paths, so the tiled median (a 2.5-block
    side, partial row tiles), its fallback and the kernel rows must equal the held path's."""
    x = _tiled_lattice()
    xg, mask, sizes = _groups(x, 40)
    d = particles.pairwise_sq_dists(xg).numpy()
    expected_h2 = _numpy_h2(d, sizes, (sizes + shift).numpy())
    assert np.median(_blocks(d, sizes)[1]) == 0.0  # the fallback is exercised

    def run():
        return [t.numpy() for t in particles._kernel_products(
            xg, mask, sizes, sizes + shift, lambda dd, h2: dd, lambda h2: xg)]

    held = run()
    calls = _tiled(monkeypatch, 8, 256)  # blocks 16 x 16 (3 per side), row tiles of 6 (7 tiles)
    tiled = run()
    assert calls == [40]
    np.testing.assert_allclose(held[0], expected_h2, rtol=2e-6)
    for ours, theirs in zip(tiled, held):
        np.testing.assert_array_equal(ours, theirs)
    # the kernel here is D itself: row sums and D @ x over each group's valid block (exact)
    mask_np = mask.numpy()
    pair = mask_np[:, :, None] * mask_np[:, None, :]
    np.testing.assert_array_equal(tiled[1], np.sum(d * pair, axis=-1))
    np.testing.assert_array_equal(tiled[2], (d * pair) @ xg.numpy())


def _summand_scale(kind, g, x, c):
    """Float noise of the kernel sums of one group: ``sum_j`` of the absolute summands (the
    reference's ``scale`` holds ``|sum_j|``, too small where the summands of many particles
    cancel)."""
    m = len(x)
    d = ref.sq_dists(x)
    h2 = 0.5 * np.median(d) / np.log(m if kind == "blob" else m + 1)
    a = d / (2 * h2)
    k = np.abs(np.exp(-a) if kind == "blob" else np.exp(-a) * (a - 1))
    diffs = np.einsum("ij,ijd->id", k, np.abs(x[:, None, :] - x[None, :, :]))
    if kind == "blob":
        return np.abs(g) + np.abs(c / m) * (k @ np.abs(g) + diffs / h2)
    return np.abs(g) + np.abs(c) * diffs


def _check_direction(kind, v, g, x, c, m, rtol):
    """``v`` (grouped) against the NumPy reference of each group, within ``rtol`` of the
    reference's scale plus float32 noise of the sums; returns the median relative size of the
    interaction term (so callers can check it matters)."""
    terms = ref.blob_terms if kind == "blob" else ref.dgf_terms
    worst = 0.0
    for i, start in enumerate(range(0, len(x), m)):
        sl = slice(start, start + m)
        g64, x64 = g[sl].astype(np.float64), x[sl].astype(np.float64)
        expected, scale = terms(g64, x64, c)
        tol = rtol * scale + 1e-5 * _summand_scale(kind, g64, x64, c)
        ours = v[i, :len(expected)]
        assert np.all(np.abs(ours - expected) <= tol), (kind, i)
        worst = max(worst, np.median(np.abs(expected - g[sl]) / scale))
    np.testing.assert_array_equal(v.reshape(-1, x.shape[1])[len(x):], 0.0)  # padded rows
    return worst


TILED_CASES = {  # name: (N, d, M, threshold, elements); N % M != 0 (a short last group)
    "small_tiles": (93, 3, 40, 8, 256),         # 40, 40, 13; 16 x 16 blocks, row tiles of 6
    "moderate": (330, 64, 200, 100, 4096),      # 200, 130; 64 x 64 blocks, row tiles of 20
    "default_constants": (1250, 4, 1100, None, None),  # 1100, 150; one block, one row tile
}
DEFAULT_TILES = (particles.TILE_THRESHOLD, particles.TILE_ELEMENTS)
C = {"blob": 5.0, "dgf": -0.5}


@pytest.mark.parametrize("kind", ["blob", "dgf"])
@pytest.mark.parametrize("case", TILED_CASES)
def test_tiled_direction_matches_held_and_numpy(monkeypatch, case, kind):
    n, dim, m, threshold, elements = TILED_CASES[case]
    rng = np.random.default_rng(n + dim)
    x = rng.uniform(0.0, 1.0, (n, dim)).astype(np.float32)
    g = rng.normal(size=(n, dim)).astype(np.float32)
    xg, mask, sizes = _groups(x, m)
    gg, _, _ = _groups(g, m)
    fn = particles.blob_direction if kind == "blob" else particles.dgf_direction
    c = tf.constant(C[kind] if kind == "dgf" else C[kind] * m / 4)  # interaction ~ the gradient

    if threshold is None:  # the module's constants; the held path by raising the threshold
        threshold, elements = DEFAULT_TILES
        assert m > threshold
        monkeypatch.setattr(particles, "TILE_THRESHOLD", m)
    held = fn(gg, xg, mask, sizes, c).numpy()
    calls = _tiled(monkeypatch, threshold, elements)
    tiled = fn(gg, xg, mask, sizes, c).numpy()
    assert calls == [m]
    worst = _check_direction(kind, tiled, g, x, float(c.numpy()), m, 1e-4)
    assert worst > 0.05  # the interaction is a visible part of the direction
    _check_direction(kind, held, g, x, float(c.numpy()), m, 1e-4)
    # tiled and held differ only by the rounding of the distances
    np.testing.assert_allclose(tiled, held, rtol=0, atol=1e-5 * np.abs(held).max())


@pytest.mark.parametrize("kind", ["blob", "dgf"])
@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_tiled_direction_compiled(monkeypatch, mode, kind):
    n, dim, m, threshold, elements = TILED_CASES["small_tiles"]
    rng = np.random.default_rng(5)
    x = rng.uniform(0.0, 1.0, (n, dim)).astype(np.float32)
    g = rng.normal(size=(n, dim)).astype(np.float32)
    xg, mask, sizes = _groups(x, m)
    gg, _, _ = _groups(g, m)
    base = particles.blob_direction if kind == "blob" else particles.dgf_direction
    c = C[kind] if kind == "dgf" else C[kind] * m / 4
    calls = _tiled(monkeypatch, threshold, elements)
    fn = tf.function(base, jit_compile=(mode == "xla"))
    v = fn(gg, xg, mask, sizes, tf.constant(c)).numpy()
    assert calls == [m]
    assert _check_direction(kind, v, g, x, c, m, 1e-4) > 0.05


# ------------------------------------------------------------------------ the step rule

@pytest.mark.parametrize("mode", ["eager", "xla"])
@pytest.mark.parametrize("kind", ["blob", "dgf"])
def test_particles_rule_matches_numpy(kind, mode):
    n, shape, m = 11, (3, 2, 2), 4  # groups of 4, 4 and 3
    rng = np.random.default_rng(21)
    x = rng.uniform(0.2, 0.8, (n,) + shape).astype(np.float32)
    g = rng.normal(size=(n,) + shape).astype(np.float32)
    c = C[kind]
    rule = steps.Particles(kind, m)

    def direction(grad, points):
        return rule.direction(grad, points, (), {"c": tf.constant(c)})[0]

    if mode == "xla":
        direction = tf.function(direction, jit_compile=True)
    v = direction(tf.constant(g), tf.constant(x)).numpy()
    assert v.shape == x.shape
    expected, scale = ref.daa_direction(kind, g.reshape(n, -1), x.reshape(n, -1), c, m)
    v = v.reshape(n, -1)
    assert np.all(np.abs(v - expected) <= 1e-4 * scale)
    assert np.median(np.abs(expected - g.reshape(n, -1)) / scale) > 0.01  # c matters


@pytest.mark.parametrize("kind", ["blob", "dgf"])
def test_particles_rule_on_degenerate_groups(kind):
    """A group of identical particles and a last group of one: every positive bandwidth gives
    ``K = 1`` (BLOB) or ``K = -1`` (DGF) on coincident pairs and ``R = 0``, so
    BLOB ``V = G + (c/m) sum_j G_j`` and DGF ``V = G``; the fallback must not make NaNs."""
    m, c = 4, C[kind]
    rng = np.random.default_rng(3)
    x = np.concatenate([np.tile(rng.uniform(0, 1, (1, 6)), (m, 1)), rng.uniform(0, 1, (1, 6))])
    x = x.astype(np.float32)
    g = rng.normal(size=(m + 1, 6)).astype(np.float32)
    v = steps.Particles(kind, m).direction(tf.constant(g), tf.constant(x), (),
                                           {"c": tf.constant(c)})[0].numpy()
    if kind == "blob":
        expected = np.concatenate([g[:m] + (c / m) * g[:m].sum(axis=0), (1 + c) * g[m:]])
    else:
        expected = g
    np.testing.assert_allclose(v, expected, rtol=1e-5, atol=1e-6)
