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


# ---------------------------------------------------------------------------------------------
# Losses of docs/algorithms.md#dlr and #losses-toward-a-target (float64, sorting the logits).

def dlr(z, y):
    """-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 + 1e-12), z_pi the logits sorted descending."""
    z = np.asarray(z, np.float64)
    out = np.empty(len(z))
    for i, (row, label) in enumerate(zip(z, y)):
        ranked = sorted(row, reverse=True)
        wrong = max(v for j, v in enumerate(row) if j != label)
        out[i] = -(row[label] - wrong) / (ranked[0] - ranked[2] + 1e-12)
    return out


def dlr_targeted(z, y, t):
    """AutoAttack's targeted DLR: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)."""
    z = np.asarray(z, np.float64)
    out = np.empty(len(z))
    for i, row in enumerate(z):
        ranked = sorted(row, reverse=True)
        out[i] = -(row[y[i]] - row[t[i]]) / (ranked[0] - 0.5 * (ranked[2] + ranked[3]) + 1e-12)
    return out


def margin(z, y):
    z = np.asarray(z, np.float64)
    return np.array([max(v for j, v in enumerate(row) if j != y[i]) - row[y[i]]
                     for i, row in enumerate(z)])


def margin_targeted(z, y, t):
    z = np.asarray(z, np.float64)
    return z[np.arange(len(z)), t] - z[np.arange(len(z)), y]


def dlr_logit_gradient(z, y):
    """d dlr / d z, one row per example (distinct logits assumed)."""
    z = np.asarray(z, np.float64)
    g = np.zeros_like(z)
    for i, row in enumerate(z):
        order = np.argsort(-row)
        wrong = max((j for j in range(len(row)) if j != y[i]), key=lambda j: row[j])
        u = row[y[i]] - row[wrong]
        d = row[order[0]] - row[order[2]] + 1e-12
        g[i, y[i]] -= 1 / d
        g[i, wrong] += 1 / d
        g[i, order[0]] += u / d ** 2
        g[i, order[2]] -= u / d ** 2
    return g


def target_classes(z, y, k):
    """The k most likely wrong classes, most likely first (ties: lower index), by brute force."""
    out = []
    for row, label in zip(np.asarray(z), y):
        wrong = [(-row[j], j) for j in range(len(row)) if j != label]
        out.append([j for _, j in sorted(wrong)[:k]])
    return np.array(out)


# ---------------------------------------------------------------------------------------------
# Best iterates (docs/algorithms.md#best-iterates).

def best_iterate(points, objectives, fooled):
    """From the iterates of one run (lists over iterations of [N, ...], [N], [N]): per example the
    last iterate that fooled, else the first one of highest objective."""
    points = np.stack(points)
    objectives = np.stack(objectives)
    fooled = np.stack(fooled)
    out = np.empty_like(points[0])
    for i in range(points.shape[1]):
        hits = np.flatnonzero(fooled[:, i])
        j = hits[-1] if len(hits) else int(np.argmax(objectives[:, i]))
        out[i] = points[j, i]
    return out


# ---------------------------------------------------------------------------------------------
# APGD (docs/algorithms.md#apgd), written after AutoAttack's attack_single_run (L-inf): the
# interval bookkeeping (loss history, checkpoints counted by a countdown, the oscillation count
# over the history with NumPy's negative index for the first step) is theirs, not the project's.

def apgd_run(value_grad, x0, x_start, eps, steps, lo=0.0, hi=1.0, direction=None, step0=None,
             alpha=0.75, rho=0.75):
    """``value_grad(x) -> (objective [N], fooled [N] bool, grad [N, ...])``; ``direction(g, x)``
    gives V (default V = G). Returns a dict: ``x_last`` (the point after the last step),
    ``x_best`` (the project's best-iterate rule over all evaluated points), ``objective`` and
    ``fooled`` of that rule, ``halvings`` (examples halved, summed over checkpoints),
    ``checkpoints`` (the iterations i at which the step size was checked)."""
    n = len(x0)
    bshape = (n,) + (1,) * (x0.ndim - 1)
    first, minimum, shrink = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), \
        max(int(0.03 * steps), 1)
    low = np.maximum(x0 - np.float32(eps), np.float32(lo))
    high = np.minimum(x0 + np.float32(eps), np.float32(hi))
    x = x_start.astype(np.float32).copy()
    obj, fool, g = value_grad(x)
    x_best, g_best, obj_best = x.copy(), g.copy(), obj.copy()
    seen_points, seen_obj, seen_fool = [x.copy()], [obj.copy()], [fool.copy()]
    size = np.full(bshape, np.float32(2 * eps if step0 is None else step0), np.float32)
    x_old = x.copy()
    history = np.zeros((steps, n), np.float64)
    countdown, k = 0, first
    best_last_check = obj_best.copy()
    reduced_last_check = np.ones(n, bool)
    halvings, checkpoints, x_last = 0, [], None
    for i in range(steps):
        momentum = x - x_old
        x_old = x.copy()
        a = np.float32(alpha if i > 0 else 1.0)
        v = g if direction is None else direction(g, x)
        z = np.clip(x + size * np.sign(v).astype(np.float32), low, high)
        x = np.clip(x + (z - x) * a + momentum * (np.float32(1) - a), low, high)
        x_last = x.copy()
        obj, fool, g = value_grad(x)
        seen_points.append(x.copy()), seen_obj.append(obj.copy()), seen_fool.append(fool.copy())
        history[i] = obj
        better = obj > obj_best
        x_best[better], g_best[better], obj_best[better] = x[better], g[better], obj[better]
        countdown += 1
        if countdown == k:
            checkpoints.append(i)
            rises = sum((history[i - c] > history[i - c - 1]).astype(int) for c in range(k))
            oscillating = rises <= k * rho
            stalled = ~reduced_last_check & (best_last_check >= obj_best)
            halve = oscillating | stalled
            reduced_last_check = halve.copy()
            best_last_check = obj_best.copy()
            halvings += int(halve.sum())
            size[halve] /= 2
            x[halve], g[halve] = x_best[halve], g_best[halve]
            k = max(k - shrink, minimum)
            countdown = 0
    out = best_iterate(seen_points, seen_obj, seen_fool)
    objs, fools = np.stack(seen_obj), np.stack(seen_fool)
    return {"x_last": x_last, "x_best": out, "fooled": fools.any(axis=0),
            "objective": np.where(fools.any(axis=0), np.nan, objs.max(axis=0)),
            "halvings": halvings, "checkpoints": checkpoints}


# ---------------------------------------------------------------------------------------------
# A tiny dense net whose gradients NumPy computes itself: z = tanh(x W1 + b1) W2 + b2.

def dense_forward(weights, x):
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in weights)
    h = np.tanh(x.reshape(len(x), -1).astype(np.float64) @ w1 + b1)
    return h, h @ w2 + b2


def dense_input_gradient(weights, x, dz):
    """d/dx of sum_i dz_i . z_i."""
    w1, _, w2, _ = (np.asarray(w, np.float64) for w in weights)
    h, _ = dense_forward(weights, x)
    return (((dz @ w2.T) * (1 - h * h)) @ w1.T).reshape(x.shape)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def xent(z, y):
    p = softmax(z)
    return -np.log(p[np.arange(len(z)), y])


def xent_logit_gradient(z, y):
    p = softmax(z)
    p[np.arange(len(z)), y] -= 1
    return p
