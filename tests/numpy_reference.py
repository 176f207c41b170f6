"""An independent NumPy implementation of ALGORITHMS.md (float64 kernel, direct pairwise distances,
``numpy.median`` of the full matrix), used as the expectation for the project's TF attacks."""
import numpy as np


def project(x, x0, eps, lo, hi):
    x = np.clip(x, x0 - np.float32(eps), x0 + np.float32(eps))
    return np.clip(x, np.float32(lo), np.float32(hi))


def sq_dists(x):
    diff = x[:, None, :] - x[None, :, :]
    return np.sum(diff * diff, axis=-1)


def blob_terms(g, x, c):
    """Direction V and the magnitude of its terms (for 'float noise' tolerances), one group."""
    m = len(x)
    d = sq_dists(x)
    h2 = 0.5 * np.median(d) / np.log(m)
    k = np.exp(-d / (2 * h2))
    r = np.einsum("ij,ijd->id", k, x[:, None, :] - x[None, :, :]) / h2
    kg = k @ g
    v = g + (c / m) * (kg - r)
    scale = np.abs(g) + np.abs(c / m) * (np.abs(kg) + np.abs(r))
    return v, scale


def dgf_terms(g, x, c):
    m = len(x)
    d = sq_dists(x)
    h2 = 0.5 * np.median(d) / np.log(m + 1)
    a = d / (2 * h2)
    k = np.exp(-a) * (a - 1)
    r = np.einsum("ij,ijd->id", k, x[:, None, :] - x[None, :, :])
    v = g + c * r
    return v, np.abs(g) + np.abs(c * r)


def daa_direction(kind, g, x, c, particles, lo=0.0, hi=1.0):
    """Direction for a batch ``[N, d]`` cut into consecutive groups of ``particles``."""
    g = g.astype(np.float64)
    x = x.astype(np.float64)
    v = np.empty_like(g)
    scale = np.empty_like(g)
    for start in range(0, len(x), particles):
        sl = slice(start, start + particles)
        if kind == "blob":
            v[sl], scale[sl] = blob_terms(g[sl], x[sl], c)
        else:
            v[sl], scale[sl] = dgf_terms(g[sl], x[sl], c / (hi - lo) ** 2)
    return v, scale


def momentum_run(grad_fn, x0, x_start, eps, a, steps, decay, lo=0.0, hi=1.0):
    """Momentum PGD trajectory; returns the final points and, per example, the smallest
    ``|g| / (|decay g_prev| + |G / ||G||_1|)`` seen (how far its signs were from float noise)."""
    x = x_start.copy()
    acc = np.zeros((len(x), x[0].size), np.float64)
    margin = np.full(len(x), np.inf)
    for _ in range(steps):
        g = grad_fn(x).astype(np.float64).reshape(len(x), -1)
        normed = g / np.sum(np.abs(g), axis=1, keepdims=True)
        prev = acc
        acc = decay * prev + normed
        rel = np.abs(acc) / (np.abs(decay * prev) + np.abs(normed) + 1e-30)
        margin = np.minimum(margin, rel.min(axis=1))
        step = np.float32(a) * np.sign(acc).astype(np.float32).reshape(x.shape)
        x = project(x + step, x0, eps, lo, hi)
    return x, margin
