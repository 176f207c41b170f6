"""FAB and FAB-T (docs/algorithms.md#fab) and APGD-T's settings (docs/algorithms.md#apgd-t):
the L-inf projection against a brute-force LP, one FAB step and a short FAB loop against NumPy,
the result's invariants, the starts, and FAB-T under the driver."""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import daa_tf
from daa_tf import boundary, distribute, engine, loop, losses, schedules, specs

SHAPE, CLASSES, N = (4, 4, 1), 6, 24


def relu_model() -> keras.Model:
    """A small random ReLU net on ``[N, 4, 4, 1]`` images, 6 classes."""
    keras.utils.set_random_seed(6)
    inputs = keras.Input(SHAPE)
    h = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(h))


def linear_model(classes: int = 2) -> keras.Model:
    """``z = x W + c``: its decision boundaries are the hyperplanes FAB linearises."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input(SHAPE)
    return keras.Model(inputs, keras.layers.Dense(classes)(keras.layers.Flatten()(inputs)))


@pytest.fixture(scope="module")
def model():
    return relu_model()


@pytest.fixture(scope="module")
def data(model):
    """Images in [0.2, 0.8] labelled with the net's own predictions (clean accuracy 1)."""
    x0 = np.random.default_rng(1).uniform(0.2, 0.8, (N,) + SHAPE).astype(np.float32)
    return x0, model(x0).numpy().argmax(axis=1)


# ---- the L-inf projection -------------------------------------------------------------------

def np_projection(t, w, b, low, high):
    """The rule of docs/algorithms.md#fab in float64, by bisection on the radius ``lam``: every
    coordinate moves ``min(lam, room_i)`` toward the hyperplane; the box corner when it misses."""
    t, w, b = (np.asarray(a, np.float64) for a in (t, w, b))
    gap = b - (w * t).sum(1)
    direction = np.sign(w) * np.where(gap >= 0, 1.0, -1.0)[:, None]
    room = np.where(direction > 0, high - t, np.where(direction < 0, t - low, 0.0))
    d = direction * room
    for i in range(len(t)):
        if (np.abs(w[i]) * room[i]).sum() < abs(gap[i]):
            continue
        lo, hi = 0.0, room[i].max() + 1.0
        for _ in range(200):
            lam = (lo + hi) / 2
            if (np.abs(w[i]) * np.minimum(lam, room[i])).sum() >= abs(gap[i]):
                hi = lam
            else:
                lo = lam
        d[i] = direction[i] * np.minimum(hi, room[i])
    return d


def lp_optimum(t, w, b, low, high):
    """min ||d||_inf s.t. w.(t + d) = b, low <= t + d <= high, by enumerating the vertices of
    the LP in (d, s): the equality and D active inequalities among d_i <= s, -d_i <= s,
    d_i <= high - t_i, -d_i <= t_i - low. None when infeasible."""
    dim = len(t)
    rows, rhs = [], []
    for i in range(dim):
        e = np.zeros(dim + 1)
        e[i] = 1.0
        for sign, s_coef, bound in ((1, -1, 0.0), (-1, -1, 0.0), (1, 0, high - t[i]),
                                    (-1, 0, t[i] - low)):
            row = sign * e.copy()
            row[dim] = s_coef
            rows.append(row)
            rhs.append(bound)
    rows, rhs = np.array(rows), np.array(rhs)
    equality = np.append(w, 0.0)
    best = None
    for active in itertools.combinations(range(len(rows)), dim):
        a = np.vstack([equality, rows[list(active)]])
        if abs(np.linalg.det(a)) < 1e-12:
            continue
        v = np.linalg.solve(a, np.append(b - w @ t, rhs[list(active)]))
        if np.all(rows @ v <= rhs + 1e-9) and (best is None or v[dim] < best):
            best = v[dim]
    return best


def projection_cases(dim, rng, count):
    """Random points in [0, 1]^dim, some on a face; hyperplanes through the box, missing it, with
    zero weights, or through the point itself."""
    for case in range(count):
        t = rng.uniform(0, 1, dim)
        if case % 4 == 1:
            t[0] = 0.0
        w = rng.normal(size=dim)
        if case % 5 == 2:
            w[-1] = 0.0
        z = rng.uniform(0, 1, dim)
        b = w @ z if case % 3 else w @ t + rng.choice([-1, 1]) * (np.abs(w).sum() + 0.5)
        if case % 7 == 6:
            b = w @ t
        yield t, w, b


@pytest.mark.parametrize("dim", [2, 3, 4])
def test_projection_is_the_smallest_linf_move_in_the_box(dim):
    rng = np.random.default_rng(dim)
    cases = list(projection_cases(dim, rng, 40))
    t, w, b = (np.array([c[i] for c in cases]) for i in range(3))
    d = boundary.linf_projection(tf.constant(t, tf.float32), tf.constant(w, tf.float32),
                                 tf.constant(b, tf.float32), 0.0, 1.0).numpy().astype(np.float64)
    infeasible = 0
    for i in range(len(t)):
        z = t[i] + d[i]
        assert np.all(z >= -1e-6) and np.all(z <= 1 + 1e-6)
        assert np.all(d[i][w[i] == 0] == 0)
        optimum = lp_optimum(t[i], w[i], b[i], 0.0, 1.0)
        if optimum is None:  # the hyperplane misses the box: the corner nearest it in w . z
            infeasible += 1
            corners = [np.array(c) for c in itertools.product((0.0, 1.0), repeat=dim)]
            nearest = min(abs(w[i] @ c - b[i]) for c in corners)
            assert abs(w[i] @ z - b[i]) == pytest.approx(nearest, abs=1e-5)
            continue
        assert w[i] @ z == pytest.approx(b[i], abs=1e-5)
        assert np.abs(d[i]).max() == pytest.approx(optimum, abs=1e-5)
    assert 0 < infeasible < len(t)  # both kinds of case were met
    np.testing.assert_allclose(d, np_projection(t, w, b, 0.0, 1.0), atol=1e-5)


def test_projection_in_another_box_and_dimension():
    rng = np.random.default_rng(9)
    t = rng.uniform(0, 255, (6, 300))
    w = rng.normal(size=(6, 300))
    b = (w * rng.uniform(0, 255, (6, 300))).sum(1)
    d = boundary.linf_projection(tf.constant(t, tf.float32), tf.constant(w, tf.float32),
                                 tf.constant(b, tf.float32), 0.0, 255.0).numpy()
    np.testing.assert_allclose(d, np_projection(t, w, b, 0.0, 255.0), rtol=1e-3, atol=1e-2)


# ---- one FAB step, and a short loop, against NumPy -------------------------------------------

def np_fab_step(x, x0, p, g, f, fooled, low, high, alpha_max=0.1, eta=1.05, beta=0.9):
    """One FAB iteration of docs/algorithms.md#fab, flattened, float64: the hyperplane
    ``g . z = g . p - f`` of the linearisation at ``p`` (the point of the pass), the backward step
    of the fooling rows, then the step."""
    b = (g * p).sum(1) - f
    x = np.where(fooled[:, None], x0 + beta * (p - x0), p)
    d = np_projection(np.concatenate([x, x0]), np.concatenate([g, g]), np.concatenate([b, b]),
                      low, high)
    d1, d2 = d[:len(x)], d[len(x):]
    n1 = np.maximum(np.abs(d1).max(1), 1e-8)[:, None]
    n2 = np.maximum(np.abs(d2).max(1), 1e-8)[:, None]
    alpha = np.minimum(n1 / (n1 + n2), alpha_max)
    return np.clip((x + eta * d1) * (1 - alpha) + (x0 + eta * d2) * alpha, low, high)


def test_one_fab_step_matches_numpy():
    rng = np.random.default_rng(3)
    n, dim, low, high = 8, 12, 0.0, 1.0
    x0 = rng.uniform(0.1, 0.9, (n, dim)).astype(np.float32)
    p = np.clip(x0 + rng.uniform(-0.2, 0.2, (n, dim)), 0, 1).astype(np.float32)
    p[0, :3] = 0.0  # on the box's faces
    g = rng.normal(size=(n, dim)).astype(np.float32)
    f = rng.normal(size=n).astype(np.float32)
    f[1] = 50.0  # a hyperplane far outside the box
    fooled = np.array([0, 1, 0, 1, 0, 0, 1, 0], bool)
    fab = boundary.FAB()
    params = {k: tf.constant(v, tf.float32) for k, v in fab.params().items()}
    params.update(x0=tf.constant(x0), eps=tf.constant(0.3), clip_min=tf.constant(low),
                  clip_max=tf.constant(high))
    state = fab.init_state(tf.constant(p), None, None, params)
    x, grad, state = fab.observe(0, tf.constant(p), tf.constant(g), tf.constant(f), state,
                                 {**params, "fooled": tf.constant(fooled)})
    moved, _ = fab.step(0, x, grad, state, None, None, None, params)
    expected = np_fab_step(p.astype(np.float64), x0.astype(np.float64), p.astype(np.float64),
                           g.astype(np.float64), f.astype(np.float64), fooled, low, high)
    np.testing.assert_allclose(moved.numpy(), expected, atol=2e-5)
    # the fooling rows were kept: the nearest so far (the first ones), their distance recorded
    best, distance, _ = state
    np.testing.assert_array_equal(best.numpy()[fooled], p[fooled])
    np.testing.assert_allclose(distance.numpy()[fooled], np.abs(p - x0).max(1)[fooled])
    assert np.all(np.isinf(distance.numpy()[~fooled]))


def np_fab(model, x0, y, steps, eps):
    """FAB-T toward the most likely wrong class from x0, with the loop's own value-and-gradient
    pass called eagerly and the NumPy step; the result rule at the end."""
    z0 = model(x0).numpy()
    z0[np.arange(len(y)), y] = -np.inf
    pairs = np.stack([y, z0.argmax(1)], axis=1).astype(np.int32)
    pass_fn = loop.value_and_gradient_function(model, losses.margin_targeted,
                                               tf.constant(pairs), False, False)
    flat0 = x0.reshape(len(x0), -1).astype(np.float64)
    x = flat0.copy()
    best, distance = flat0.copy(), np.full(len(x0), np.inf)
    for i in range(steps + 1):
        f, logits, g = (t.numpy() for t in pass_fn(tf.constant(x.reshape(x0.shape), tf.float32)))
        fooled = logits.argmax(1) != y
        norm = np.abs(x - flat0).max(1)
        nearer = fooled & (norm < distance)
        best[nearer], distance[nearer] = x[nearer], norm[nearer]
        if i == steps:
            break
        x = np_fab_step(x, flat0, x, g.reshape(len(x), -1).astype(np.float64), f, fooled, 0, 1)
    out = np.where((distance <= eps)[:, None], best, flat0)
    return out.reshape(x0.shape), distance


def test_a_short_fab_t_run_matches_numpy(model, data):
    x0, y = data
    eps, steps = 0.05, 6
    cfg = engine.make_config("fab_t", eps=eps, steps=steps, targets=1)
    got = daa_tf.fab_t(model, x0, y, eps=eps, steps=steps, targets=1).numpy()
    expected, distance = np_fab(model, x0, y, steps, eps)
    assert cfg.schedule == boundary.FAB()
    assert 0 < np.sum(distance <= eps) < len(y)  # some fooled within eps, some not
    np.testing.assert_allclose(got, expected, atol=1e-4)


# ---- invariants -------------------------------------------------------------------------------

@pytest.mark.parametrize("attack", ["fab", "fab_t"])
def test_result_is_in_the_ball_and_box_and_fools_or_is_clean(model, data, attack):
    x0, y = data
    eps = 0.05
    adv = getattr(daa_tf, attack)(model, x0, y, eps=eps, steps=30).numpy()
    distance = np.abs(adv - x0).reshape(N, -1).max(1)
    assert np.all(distance <= eps + 1e-6) and adv.min() >= 0 and adv.max() <= 1
    fooled = model(adv).numpy().argmax(1) != y
    assert 0 < fooled.sum() < N
    np.testing.assert_array_equal(adv[~fooled], x0[~fooled])  # not fooled: the clean point
    assert np.all(distance[fooled] > 0)


def test_fab_finds_the_minimal_distance_of_a_linear_model():
    """Two classes, a linear model: the boundary is the hyperplane itself, the smallest L-inf
    distance |f| / ||g||_1 (the box does not bind). One step overshoots by eta = 1.05; more steps
    come back toward the boundary."""
    model = linear_model()
    rng = np.random.default_rng(4)
    x0 = rng.uniform(0.45, 0.55, (16,) + SHAPE).astype(np.float32)
    y = model(x0).numpy().argmax(1)
    w = model.layers[-1].kernel.numpy()
    g = (w[:, 1 - y] - w[:, y]).T
    z = model(x0).numpy()
    minimal = np.abs(z[np.arange(16), y] - z[np.arange(16), 1 - y]) / np.abs(g).sum(1)
    eps = 0.4
    assert minimal.max() * 1.05 < 0.45  # the box does not bind
    one = daa_tf.fab_t(model, x0, y, eps=eps, steps=1).numpy()
    np.testing.assert_allclose(np.abs(one - x0).reshape(16, -1).max(1), 1.05 * minimal,
                               rtol=1e-4)
    many = daa_tf.fab_t(model, x0, y, eps=eps, steps=40).numpy()
    distance = np.abs(many - x0).reshape(16, -1).max(1)
    assert np.all(distance >= minimal * (1 - 1e-4))
    assert np.all(distance <= minimal * 1.01)
    assert np.all(model(many).numpy().argmax(1) != y)
    # an eps below the minimal distance: nothing fools, the clean points come back
    none = daa_tf.fab_t(model, x0, y, eps=float(minimal.min()) * 0.99, steps=40).numpy()
    np.testing.assert_array_equal(none, x0)


def test_fab_t_fools_a_weak_model(model, data):
    x0, y = data
    result = daa_tf.run(model, x0, y, "fab_t", eps=0.2, steps=20, verbose=0)
    assert result.accuracy <= 0.05
    pgd = daa_tf.run(model, x0, y, "pgd", eps=0.02, step_size=0.005, steps=20, verbose=0)
    fab = daa_tf.run(model, x0, y, "fab_t", eps=0.02, steps=20, verbose=0)
    assert fab.accuracy <= pgd.accuracy + 1 / N  # as strong as PGD at a small radius


# ---- starts, determinism, the driver ----------------------------------------------------------

def test_starts_fab_clean_then_at_half_eps_apgd_t_at_eps(data):
    x0 = np.full((N,) + SHAPE, 0.5, np.float32)
    seed = engine.seed_tensor(0, 1)
    fab = engine.make_config("fab_t", eps=0.2)
    np.testing.assert_array_equal(engine.start_points(fab, tf.constant(x0), seed, 0).numpy(), x0)
    later = engine.start_points(fab, tf.constant(x0), seed, 1).numpy()
    np.testing.assert_allclose(np.abs(later - x0).reshape(N, -1).max(1), 0.1, rtol=1e-5)
    assert np.abs(later - x0).max() <= 0.1 + 1e-7
    off = engine.make_config("fab_t", eps=0.2, random_start=False)
    np.testing.assert_array_equal(engine.start_points(off, tf.constant(x0), seed, 1).numpy(), x0)
    apgd_t = engine.make_config("apgd_t", eps=0.2)
    first = engine.start_points(apgd_t, tf.constant(x0), seed, 0).numpy()
    np.testing.assert_allclose(np.abs(first - x0).reshape(N, -1).max(1), 0.2, rtol=1e-5)
    uniform = engine.start_points(engine.make_config("multitargeted", eps=0.2, steps=1),
                                  tf.constant(x0), seed, 0).numpy()
    assert np.all(np.abs(uniform - x0).reshape(N, -1).max(1) < 0.2)  # unchanged: uniform


def test_fab_t_under_the_driver_restarts_resume_and_seed(model, data, tmp_path):
    x0, y = data
    common = dict(eps=0.06, steps=8, targets=3, verbose=0, batch_size=8)
    full = daa_tf.run(model, x0, y, "fab_t", restarts=3, seed=2, **common)
    assert full.gradients_per_image == 3 * 3 * 8
    assert full.restart_accuracies[0] >= full.restart_accuracies[-1]
    again = daa_tf.run(model, x0, y, "fab_t", restarts=3, seed=2, **common)
    np.testing.assert_array_equal(again.x_adv, full.x_adv)
    path = str(tmp_path / "fab.npz")
    daa_tf.run(model, x0, y, "fab_t", restarts=1, seed=2, state_path=path, **common)
    resumed = daa_tf.run(model, x0, y, "fab_t", restarts=3, seed=2, state_path=path,
                         resume=True, **common)
    np.testing.assert_array_equal(resumed.x_adv, full.x_adv)
    assert resumed.restart_accuracies == full.restart_accuracies
    distance = np.abs(full.x_adv - x0).reshape(N, -1).max(1)
    assert np.all(distance <= 0.06 + 1e-6)


def test_fab_t_under_a_strategy(model, data):
    x0, y = data
    strategy = distribute.make_strategy("mirrored")
    common = dict(eps=0.06, steps=5, targets=2, verbose=0, batch_size=8, restarts=2, seed=1)
    plain = daa_tf.run(model, x0, y, "fab_t", **common)
    spread = daa_tf.run(model, x0, y, "fab_t", strategy=strategy, **common)
    np.testing.assert_array_equal(spread.x_adv, plain.x_adv)


def test_best_with_fab_is_its_result(model, data):
    x0, y = data
    plain = daa_tf.fab(model, x0, y, eps=0.08, steps=10).numpy()
    best = daa_tf.fab(model, x0, y, eps=0.08, steps=10, best=True).numpy()
    np.testing.assert_array_equal(best, plain)


# ---- the catalogue: AutoAttack's settings -----------------------------------------------------

def test_apgd_t_and_fab_t_take_autoattack_settings():
    apgd_t = engine.make_config("apgd_t", eps=0.3)
    s = apgd_t.settings
    assert (s.targets, s.steps, s.loss, s.best, s.random_start) == (9, 100, "dlr", True, True)
    assert s.step_size == pytest.approx(2 * 0.3)  # AutoAttack's initial step, 2 eps
    assert apgd_t.loss_fn is losses.dlr_targeted  # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    assert apgd_t.schedule == schedules.APGD()
    assert apgd_t.params == {"alpha": 0.75, "rho": 0.75}
    assert (s.spec.start, s.spec.start_radius, s.spec.clean_first) == ("sphere", 1.0, False)
    assert specs.label("apgd_t") == "APGD-T"

    fab_t = engine.make_config("fab_t", eps=0.3)
    s = fab_t.settings
    assert (s.targets, s.steps, s.loss, s.best) == (9, 100, "margin", False)
    assert fab_t.loss_fn is losses.margin_targeted  # f = z_t - z_y
    assert fab_t.params == {"alpha_max": 0.1, "eta": 1.05, "beta": 0.9}
    assert (s.spec.start, s.spec.start_radius, s.spec.clean_first) == ("sphere", 0.5, True)
    assert specs.label("fab_t") == "FAB-T" and specs.label("fab") == "FAB"
    assert engine.make_config("fab", eps=0.3).settings.targets == 0
    with pytest.raises(ValueError, match="decision boundary"):  # xent's zero set is not it
        engine.make_config("fab_t", eps=0.3, loss="xent")
    assert engine.make_config("fab", eps=0.3, loss="dlr").settings.loss == "dlr"
    with pytest.raises(ValueError, match="steps"):  # the other attacks still need steps
        engine.make_config("pgd", eps=0.3, step_size=0.01)
