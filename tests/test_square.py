"""Square Attack (docs/algorithms.md#square) against an independent NumPy implementation of the
rules written there: the p schedule, the square's placement and size, the candidate, the
acceptance, the stripes start, the queries counted; and its invariants (ball, box, seeds,
resume, batches and devices, fooled examples frozen)."""
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import daa_tf
from daa_tf import draws, engine, schedules, squares

REPO_ROOT = Path(__file__).resolve().parents[1]
H, W, C, CLASSES, N = 6, 5, 2, 4, 12
EPS = 0.1


def tiny_model(seed: int = 3) -> keras.Model:
    """A linear classifier ``[N, 6, 5, 2] -> [N, 4]`` with fixed random weights."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((H, W, C))
    logits = keras.layers.Dense(CLASSES)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, logits)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def data(model):
    rng = np.random.default_rng(7)
    x0 = rng.uniform(0.0, 1.0, (N, H, W, C)).astype(np.float32)
    x0[0] = 0.0  # pixels at the box's edges
    x0[1] = 1.0
    return x0, model(x0).numpy().argmax(axis=1)


# ----------------------------------------------------------------------- the NumPy reference


def reference_p(k: int, n_queries=None, p_init: float = 0.8) -> float:
    """AutoAttack's piecewise p of iteration ``k``, its float arithmetic (``n_queries``: the
    rescaled schedule)."""
    it = int(k / n_queries * 10000) if n_queries else k
    for bound, divisor in ((8000, 512), (6000, 256), (4000, 128), (2000, 64), (1000, 32),
                           (500, 16), (200, 8), (50, 4), (10, 2)):
        if it > bound:
            return p_init / divisor
    return p_init


def reference_side(p: float, h: int, w: int, c: int) -> int:
    return min(max(int(round(np.sqrt(p * (h * w * c) / c))), 1), min(h, w))


def numpy_square(x0, y, weights, bias, eps, steps, keys, lo=0.0, hi=1.0):
    """The rules of docs/algorithms.md#square in NumPy (float64 logits of the linear model), the
    random draws taken from the library's draw functions. Returns (points, queries)."""
    n = len(x0)
    x0 = x0.astype(np.float64)
    low, high = np.maximum(x0 - eps, lo), np.minimum(x0 + eps, hi)

    def judge(x):
        z = x.reshape(n, -1) @ weights + bias
        others = np.where(np.eye(CLASSES, dtype=bool)[y], -np.inf, z)
        return others.max(1) - z[np.arange(n), y], z.argmax(1) != y

    stripe = draws.signs(draws.bits(keys, squares.STRIPES_COUNTER, W * C)).numpy()
    kept_x = np.clip(x0 + eps * stripe.reshape(n, 1, W, C), lo, hi)
    kept, done = judge(kept_x)
    queries = np.ones(n, np.int64)
    for k in range(steps - 1):
        if done.all():
            break
        side = reference_side(reference_p(k), H, W, C)
        rows, cols, signs = (t.numpy() for t in squares.draw_square(keys, k, side, H, W, C))
        cand = kept_x.copy()
        for i in range(n):
            cand[i, rows[i]:rows[i] + side, cols[i]:cols[i] + side] += 2 * eps * signs[i]
        cand = np.clip(cand, low, high)
        loss, fooled = judge(cand)
        active = ~done
        improved = active & (loss > kept)
        accept = improved | (active & fooled)
        kept_x[accept] = cand[accept]
        kept[improved] = loss[improved]
        done |= active & fooled
        queries += active
    return kept_x, queries


# ------------------------------------------------------------------------------ the rules


@pytest.mark.parametrize("budget", [1, 37, 100, 1000, 4999, 5000, 10000])
def test_p_schedule_matches_the_reference_formula(budget):
    for k in range(budget):
        assert 0.8 / 2 ** squares.p_index(k) == reference_p(k), k
        if budget > 1:
            assert 0.8 / 2 ** squares.p_index(k, budget) == reference_p(k, budget), (k, budget)
    ks = tf.constant(list(range(0, budget, max(1, budget // 97))), tf.int32)
    sides = squares.side_lengths(28, 28, 1)
    for rescale in (None, budget):
        got = tf.map_fn(lambda k: squares.side_at(k, sides, rescale), ks).numpy()
        want = [reference_side(reference_p(int(k), rescale), 28, 28, 1) for k in ks.numpy()]
        np.testing.assert_array_equal(got, want)


def test_side_lengths():
    assert squares.side_lengths(28, 28, 1) == (25, 18, 13, 9, 6, 4, 3, 2, 2, 1)
    for h, w, c in ((32, 32, 3), (6, 5, 2), (299, 299, 3), (1, 20, 1)):
        want = tuple(reference_side(0.8 / 2 ** j, h, w, c) for j in range(10))
        assert squares.side_lengths(h, w, c) == want


def test_image_layout():
    assert squares.image_layout((784,)) == (28, 28, 1)
    assert squares.image_layout((3072,)) == (32, 32, 3)
    assert squares.image_layout((20,)) == (1, 20, 1)
    assert squares.image_layout((28, 28)) == (28, 28, 1)
    assert squares.image_layout((32, 32, 3)) == (32, 32, 3)
    with pytest.raises(ValueError, match="Square needs inputs"):
        squares.image_layout((2, 3, 4, 5))


def test_draws_depend_on_the_key_only():
    seed = engine.seed_tensor(5, 2)
    keys = engine.example_keys(seed, 64)
    np.testing.assert_array_equal(engine.example_keys(seed, 10), keys[:10])
    assert len(set(keys.numpy().tolist())) == 64
    assert not np.array_equal(engine.example_keys(engine.seed_tensor(5, 3), 64), keys)
    full = draws.bits(keys, 7, 5).numpy()
    np.testing.assert_array_equal(draws.bits(tf.gather(keys, [40, 3]), 7, 5).numpy(),
                                  full[[40, 3]])
    assert not np.array_equal(draws.bits(keys, 8, 5).numpy(), full)
    # below(): exactly (high 16 bits * n) >> 16; signs(): the top bit
    b = draws.bits(keys, 0, 3)
    high = b.numpy().astype(np.uint64) >> 16
    np.testing.assert_array_equal(draws.below(b, tf.constant(23)).numpy(), (high * 23) >> 16)
    np.testing.assert_array_equal(draws.signs(b).numpy(),
                                  np.where(b.numpy() >> 31, -1.0, 1.0))


def test_square_placement_and_candidate_against_numpy():
    keys = engine.example_keys(engine.seed_tensor(1), 4000)
    h, w, c = 28, 20, 3
    for k, side in ((0, 13), (17, 1), (3, 20)):
        rows, cols, signs = (t.numpy() for t in squares.draw_square(keys, k, side, h, w, c))
        # AutoAttack's range: 0 .. h - side - 1 (0 when the square spans the image), all reached
        assert set(rows.tolist()) == set(range(max(h - side, 1)))
        assert set(cols.tolist()) == set(range(max(w - side, 1)))
        assert set(np.unique(signs).tolist()) == {-1.0, 1.0}
        assert abs(signs.mean()) < 0.05
    rng = np.random.default_rng(0)
    n, side, eps, step = 6, 4, 0.1, 0.2
    x0 = rng.uniform(0, 1, (n, h, w, c)).astype(np.float32)
    x_kept = np.clip(x0 + rng.uniform(-eps, eps, x0.shape), 0, 1).astype(np.float32)
    low, high = np.maximum(x0 - eps, 0), np.minimum(x0 + eps, 1)
    rows, cols, signs = squares.draw_square(keys[:n], 5, side, h, w, c)
    delta = squares.square_delta(rows, cols, side, signs, h, w)
    got = squares.candidate(tf.constant(x_kept), delta, step, low, high).numpy()
    want = x_kept.copy()
    for i in range(n):
        r, q = int(rows[i]), int(cols[i])
        want[i, r:r + side, q:q + side] += step * signs.numpy()[i]
    want = np.clip(want, low, high)
    np.testing.assert_array_equal(got, want)
    changed = np.any(got != x_kept, axis=-1)
    for i in range(n):  # only inside the square
        assert not changed[i, :int(rows[i])].any() and not changed[i, :, :int(cols[i])].any()


def test_observe_keeps_a_candidate_iff_its_loss_improves_or_it_fools():
    sq = schedules.Square()
    x_kept = tf.zeros([5, 3])
    x = tf.ones([5, 3])
    state = (x_kept, tf.constant([1.0, 1.0, 1.0, 1.0, 1.0]), tf.constant([False] * 4 + [True]),
             tf.constant([3, 3, 3, 3, 2]), tf.constant(10))
    objective = tf.constant([2.0, 1.0, 0.5, 0.5, 9.0])
    success = tf.constant([False, False, False, True, True])
    _, _, (kept_x, kept, done, queries, _) = sq.observe(tf.constant(4), x, x, objective, state,
                                                         {"fooled": success})
    np.testing.assert_array_equal(kept_x.numpy()[:, 0], [1, 0, 0, 1, 0])  # strict; or fooled
    np.testing.assert_array_equal(kept.numpy(), [2.0, 1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(done.numpy(), [False, False, False, True, True])
    np.testing.assert_array_equal(queries.numpy(), [4, 4, 4, 4, 2])  # a done example: not counted
    # the start (i = 0) is always kept
    fresh = sq.init_state(x_kept, 0.2, tf.constant(10), {})
    _, _, (kept_x, kept, *_rest) = sq.observe(tf.constant(0), x, x, -objective, fresh,
                                              {"fooled": tf.zeros([5], tf.bool)})
    np.testing.assert_array_equal(kept_x.numpy(), x.numpy())
    np.testing.assert_array_equal(kept.numpy(), -objective.numpy())


@pytest.mark.parametrize("steps", [1, 2, 40])
def test_the_loop_equals_the_numpy_reference(model, data, steps):
    x0, y = data
    weights, bias = (v.astype(np.float64) for v in model.layers[-1].get_weights())
    cfg = engine.make_config("square", eps=EPS, steps=steps)
    seed = engine.seed_tensor(9)
    keys = engine.example_keys(seed, N)
    x0t = tf.constant(x0)
    start = engine.start_points(cfg, x0t, seed)
    out = engine.run_loop(model, cfg, x0t, tf.constant(y, tf.int32), start, keys=keys)
    want_x, want_q = numpy_square(x0, y, weights, bias, EPS, steps, keys)
    np.testing.assert_allclose(engine.points(cfg, out).numpy(), want_x, atol=1e-6)
    np.testing.assert_array_equal(engine.queries(cfg, out).numpy(), want_q)
    assert steps < 40 or want_q.min() < steps  # some example was fooled and stopped


# ---------------------------------------------------------------------------- invariants


def test_ball_box_determinism_and_seeds(model, data):
    x0, y = data
    a = daa_tf.square(model, x0, y, eps=EPS, steps=30, seed=3).numpy()
    assert a.shape == x0.shape and a.dtype == np.float32
    assert np.all(np.abs(a - x0) <= EPS + 1e-6) and a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, daa_tf.square(model, x0, y, eps=EPS, steps=30, seed=3))
    assert not np.array_equal(a, daa_tf.square(model, x0, y, eps=EPS, steps=30, seed=4))
    # the stripes start: +-eps on every pixel, the same down each column, then the box
    cfg = engine.make_config("square", eps=EPS)
    start = engine.start_points(cfg, tf.constant(x0), engine.seed_tensor(3)).numpy()
    moved = np.sign(start - x0)[2:]
    assert np.all(moved != 0) and np.all(moved == moved[:, :1])
    np.testing.assert_allclose(start[2:], np.clip(x0[2:] + EPS * moved, 0, 1), atol=1e-7)


def test_no_retrace_when_only_the_seed_changes(model, data):
    x0, y = data
    cfg = engine.make_config("square", eps=EPS, steps=5)
    daa_tf.square(model, x0, y, eps=EPS, steps=5, seed=0)
    fn = engine.compiled(model, cfg)
    traced = fn.experimental_get_tracing_count()
    for seed in (1, 2, 3):
        daa_tf.square(model, x0, y, eps=EPS, steps=5 + seed, seed=seed)
    assert fn.experimental_get_tracing_count() == traced


def test_fooled_examples_are_frozen_and_stop_spending_queries(model, data):
    x0, y = data
    cfg = engine.make_config("square", eps=0.3, steps=30)
    seed = engine.seed_tensor(2)
    keys = engine.example_keys(seed, N)
    x0t, yt = tf.constant(x0), tf.constant(y, tf.int32)
    start = engine.start_points(cfg, x0t, seed)
    short = engine.run_loop(model, cfg, x0t, yt, start, keys=keys)
    long = engine.run_loop(model, cfg, x0t, yt, start, steps=300, keys=keys)
    fooled = model(short[0]).numpy().argmax(1) != y
    assert 0 < fooled.sum() < N
    np.testing.assert_array_equal(long[0].numpy()[fooled], short[0].numpy()[fooled])
    np.testing.assert_array_equal(long[1].numpy()[fooled], short[1].numpy()[fooled])
    assert np.all(short[1].numpy()[fooled] < 30) and np.all(short[1].numpy()[~fooled] == 30)


def test_driver_reports_queries_and_no_gradients(model, data):
    x0, y = data
    result = daa_tf.run(model, x0, y, "square", eps=0.3, steps=30, restarts=2, seed=2, verbose=0)
    assert result.gradients_per_image == 0 and result.gradients_mean == 0.0
    assert result.queries_per_image == 60
    one = daa_tf.run(model, x0, y, "square", eps=0.3, steps=30, seed=2, verbose=0)
    assert 0 < one.queries_mean < 30
    # the first restart is the function's run with the same seed
    np.testing.assert_array_equal(one.x_adv, daa_tf.square(model, x0, y, eps=0.3, steps=30,
                                                           seed=2))
    assert one.queries_mean < result.queries_mean < one.queries_mean + 30


def test_resume_equals_an_uninterrupted_run(model, data, tmp_path):
    x0, y = data
    kw = dict(attack="square", eps=0.2, steps=25, seed=6, verbose=0)
    whole = daa_tf.run(model, x0, y, restarts=3, **kw)
    path = str(tmp_path / "state.npz")
    daa_tf.run(model, x0, y, restarts=2, state_path=path, **kw)  # interrupted after restart 1
    resumed = daa_tf.run(model, x0, y, restarts=3, state_path=path, resume=True, **kw)
    np.testing.assert_array_equal(resumed.x_adv, whole.x_adv)
    assert resumed.restart_accuracies == whole.restart_accuracies


def test_batches_do_not_change_the_result(model, data):
    x0, y = data
    kw = dict(attack="square", eps=0.2, steps=40, seed=1, verbose=0)
    one = daa_tf.run(model, x0, y, batch_size=N, **kw)
    np.testing.assert_array_equal(daa_tf.run(model, x0, y, batch_size=5, **kw).x_adv, one.x_adv)
    strategy = daa_tf.distribute.make_strategy("mirrored")  # one replica here: the code path
    spread = daa_tf.run(model, x0, y, batch_size=5, strategy=strategy, **kw)
    np.testing.assert_array_equal(spread.x_adv, one.x_adv)
    assert spread.queries_mean == one.queries_mean


def test_settings():
    s = daa_tf.catalogue.attack_settings("square", eps=0.3)
    assert (s.steps, s.loss, s.step_size, s.random_start) == (5000, "margin", 0.6, True)
    assert daa_tf.catalogue.attack_settings("square", eps=0.3, targeted=True).loss == "xent"
    with pytest.raises(ValueError, match="no ODI start"):
        daa_tf.catalogue.attack_settings("square", eps=0.3, init="odi")
    stage = daa_tf.Stage("square", {"steps": 5000})
    assert stage.gradients(10) == 0 and stage.queries(10) == 5000


def test_targeted(model, data):
    """Targeted: accepted on the cross-entropy toward the target (AutoAttack's), done when the
    model predicts the target."""
    x0, y = data
    targets = np.argsort(model(x0).numpy(), axis=1)[:, -2]  # the runner-up class
    a = daa_tf.square(model, x0, targets, eps=0.3, steps=1000, targeted=True, seed=1).numpy()
    assert np.all(np.abs(a - x0) <= 0.3 + 1e-6)
    hit = model(a).numpy().argmax(1) == targets
    assert hit.mean() >= 0.75  # 11 of the 12 targets are reachable (the optimum of a linear net)
    cfg = engine.make_config("square", eps=0.3, targeted=True)
    start = engine.start_points(cfg, tf.constant(x0), engine.seed_tensor(1))
    xent = [daa_tf.losses.xent(model(p), targets).numpy() for p in (start, a)]
    assert np.all(xent[1][~hit] < xent[0][~hit])


def test_weak_model_is_fooled(shared):
    from daa_tf.data import load_mnist
    from daa_tf.models import load_madry_mnist
    model = load_madry_mnist(shared / "models" / "mnist" / "natural")
    x, y = load_mnist("test", shared / "data" / "mnist", num_examples=40)
    result = daa_tf.run(model, x, y, "square", eps=0.3, steps=300, seed=0, verbose=0)
    assert result.accuracy <= 0.2
    assert result.queries_mean < 150


def _two_devices(out: str) -> None:
    """Runs square on two logical CPU devices (a fresh process) and saves the result."""
    device = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        device, [tf.config.LogicalDeviceConfiguration() for _ in range(2)])
    model, x0, y = _subprocess_data()
    strategy = daa_tf.distribute.make_strategy("mirrored")
    result = daa_tf.run(model, x0, y, "square", eps=0.2, steps=40, seed=1, batch_size=5,
                        strategy=strategy, verbose=0)
    np.savez(out, x=result.x_adv, queries=result.queries_mean,
             replicas=daa_tf.distribute.num_replicas(strategy))


def _subprocess_data():
    model = tiny_model()
    x0 = np.random.default_rng(11).uniform(0, 1, (N, H, W, C)).astype(np.float32)
    return model, x0, model(x0).numpy().argmax(axis=1)


def test_two_devices_equal_one(tmp_path):
    out = str(tmp_path / "two.npz")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([sys.executable, "-m", "tests.test_square", out], cwd=REPO_ROOT, env=env,
                   check=True, timeout=300)
    model, x0, y = _subprocess_data()
    one = daa_tf.run(model, x0, y, "square", eps=0.2, steps=40, seed=1, batch_size=5, verbose=0)
    with np.load(out) as two:
        assert int(two["replicas"]) == 2
        np.testing.assert_array_equal(two["x"], one.x_adv)
        assert float(two["queries"]) == one.queries_mean


if __name__ == "__main__":
    _two_devices(sys.argv[1])
