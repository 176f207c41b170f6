"""The dataset-level driver: rounds, restarts, merge, resume, against answers built independently
from the public attack functions and from the rules of docs/algorithms.md."""
import numpy as np
import pytest
import tensorflow as tf

import daa_tf
from daa_tf import attacks, driver
from tests.test_attacks import CLASSES, EPS, SHAPE, STEP, toy_model

N, PARTICLES = 11, 4


@pytest.fixture(scope="module")
def model():
    return toy_model()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    return rng.uniform(0.2, 0.8, (N,) + SHAPE).astype(np.float32), rng.integers(0, CLASSES, N)


def test_round_lengths():
    assert driver.round_lengths(100, 10) == [10] * 10
    assert driver.round_lengths(25, 10) == [10, 10, 5]
    assert driver.round_lengths(3, 10) == [3]


@pytest.mark.parametrize("name,kw", [("pgd", {}), ("momentum_pgd", {"decay": 0.9}),
                                     ("fgsm", {})])
def test_independent_attacks_equal_one_uninterrupted_call(model, data, name, kw):
    x0, y = data
    settings = dict(eps=EPS, **kw) if name == "fgsm" else dict(eps=EPS, step_size=STEP, steps=7,
                                                               **kw)
    expected = attacks.ATTACK_FUNCTIONS[name](model, x0, y, seed=3, random_start=True,
                                              **settings).numpy()
    result = daa_tf.run(model, x0, y, attack=name, seed=3, steps_per_round=3, batch_size=4,
                        verbose=0, random_start=True, **settings)
    np.testing.assert_array_equal(result.x_adv, expected)


@pytest.mark.parametrize("name", ["daa_blob", "daa_dgf"])
@pytest.mark.parametrize("batch_size", [None, PARTICLES])
def test_daa_rounds_follow_algorithm_1(model, data, name, batch_size):
    x0, y = data
    seed, steps, per_round = 5, 7, 3
    kw = dict(eps=EPS, step_size=STEP, particles=PARTICLES, c=5.0 if name == "daa_blob" else -1.0)
    # Algorithm 1 by hand: one random start, then rounds over a fresh permutation of all N.
    cfg = attacks.make_config(name, steps=steps, **kw)
    x = attacks.start_points(cfg, tf.constant(x0), attacks.seed_tensor(seed, 0)).numpy()
    rng = np.random.default_rng([seed, 0])
    for length in (3, 3, 1):
        perm = rng.permutation(N)
        x[perm] = attacks.ATTACK_FUNCTIONS[name](model, x0[perm], y[perm], x_init=x[perm],
                                                 random_start=False, steps=length, **kw).numpy()
    result = daa_tf.run(model, x0, y, attack=name, seed=seed, steps=steps,
                        steps_per_round=per_round, batch_size=batch_size, verbose=0, **kw)
    np.testing.assert_array_equal(result.x_adv, x)
    # Rounds matter: one uninterrupted run over the unpermuted groups is a different attack.
    plain = attacks.ATTACK_FUNCTIONS[name](model, x0, y, seed=seed, steps=steps, **kw).numpy()
    assert not np.array_equal(result.x_adv, plain)


def test_merge_keeps_fooling_points_then_the_highest_loss():
    x = np.zeros((4, 1), np.float32)
    merged = driver.Merged(x.copy(), np.array([1.0, 5.0, 1.0, 2.0]),
                            np.array([False, False, True, False]), [0.75])
    x_r = np.ones((4, 1), np.float32)
    merged.add(x_r, np.array([0.5, 6.0, 9.0, 1.0]), np.array([True, False, False, False]))
    # 0: fooled now -> taken; 1: higher loss -> taken; 2: fooled before -> kept; 3: lower -> kept
    np.testing.assert_array_equal(merged.x[:, 0], [1, 1, 0, 0])
    np.testing.assert_array_equal(merged.fooled, [True, False, True, False])
    x_r2 = np.full((4, 1), 2.0, np.float32)
    merged.add(x_r2, np.array([0.0, 0.0, 0.0, 0.0]), np.array([True, True, True, False]))
    # a point that fools wins over any loss; an example fooled before keeps its first fooling point
    np.testing.assert_array_equal(merged.x[:, 0], [1, 2, 0, 0])
    assert merged.restart_accuracies == [0.75, 0.75, 0.25]


def test_restarts_merge_to_the_worst_case(model, data):
    x0, y = data
    kw = dict(eps=0.5, step_size=0.05, steps=3, particles=PARTICLES)
    result = daa_tf.run(model, x0, y, attack="daa_blob", restarts=3, seed=1, verbose=0, **kw)
    assert len(result.restart_accuracies) == 3 and len(result.restart_seconds) == 3
    assert result.accuracy <= min(result.restart_accuracies)
    pred, _, _ = daa_tf.evaluate(model, result.x_adv, y)
    np.testing.assert_array_equal(result.correct, pred == y)
    assert result.accuracy == np.mean(pred == y)
    assert np.all(np.abs(result.x_adv - x0) <= 0.5 + 1e-6)
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1


def test_targeted_run_reports_the_target_miss_rate(model, data):
    x0, y = data
    target = (y + 1) % CLASSES
    result = daa_tf.run(model, x0, target, attack="pgd", targeted=True, eps=1.0, step_size=0.1,
                        steps=20, verbose=0)
    pred, _, _ = daa_tf.evaluate(model, result.x_adv, y)
    assert result.accuracy == np.mean(pred != target)
    assert result.accuracy < 0.5  # a radius-1 targeted attack on a tiny net mostly succeeds


def test_resume_after_an_interruption_equals_an_uninterrupted_run(model, data, tmp_path,
                                                                  monkeypatch):
    x0, y = data
    kw = dict(attack="daa_blob", restarts=3, seed=2, eps=EPS, step_size=STEP, steps=4,
              particles=PARTICLES, verbose=0)
    full = daa_tf.run(model, x0, y, **kw)
    state = tmp_path / "attack.state.npz"
    calls = {"n": 0}
    real = driver.evaluate

    def interrupt_on_second_restart(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(driver, "evaluate", interrupt_on_second_restart)
    with pytest.raises(KeyboardInterrupt):
        daa_tf.run(model, x0, y, state_path=str(state), **kw)
    monkeypatch.setattr(driver, "evaluate", real)
    assert state.exists() and not list(tmp_path.glob(".*.tmp"))
    resumed = daa_tf.run(model, x0, y, state_path=str(state), resume=True, **kw)
    assert len(resumed.restart_seconds) == 2  # only restarts 2 and 3 ran again
    np.testing.assert_array_equal(resumed.x_adv, full.x_adv)
    assert resumed.restart_accuracies == full.restart_accuracies
    with pytest.raises(ValueError, match="different run"):
        daa_tf.run(model, x0, y, state_path=str(state), resume=True, **dict(kw, seed=9))
    state.write_bytes(b"not a state file")
    with pytest.raises(ValueError, match="cannot read the saved state"):
        daa_tf.run(model, x0, y, state_path=str(state), resume=True, **kw)


def test_a_finished_run_can_be_extended_with_more_restarts(model, data, tmp_path):
    x0, y = data
    kw = dict(attack="pgd", seed=4, eps=EPS, step_size=STEP, steps=3, verbose=0)
    seen = []
    full = daa_tf.run(model, x0, y, restarts=3, on_restart=lambda *a: seen.append(a), **kw)
    assert [i for i, _, _ in seen] == [0, 1, 2]
    assert [acc for _, acc, _ in seen] == full.restart_accuracies
    assert all(sec > 0 for _, _, sec in seen)
    state = str(tmp_path / "s.npz")
    daa_tf.run(model, x0, y, restarts=2, state_path=state, **kw)
    extended = daa_tf.run(model, x0, y, restarts=3, state_path=state, resume=True, **kw)
    assert len(extended.restart_seconds) == 1
    np.testing.assert_array_equal(extended.x_adv, full.x_adv)
    with pytest.raises(ValueError, match="holds 3 restarts"):
        daa_tf.run(model, x0, y, restarts=2, state_path=state, resume=True, **kw)


def test_driver_refuses_bad_settings(model, data):
    x0, y = data
    kw = dict(eps=EPS, step_size=STEP, steps=2, verbose=0)
    with pytest.raises(ValueError, match="multiple of particles"):
        daa_tf.run(model, x0, y, attack="daa_blob", particles=4, batch_size=6, **kw)
    with pytest.raises(ValueError, match="restarts"):
        daa_tf.run(model, x0, y, attack="pgd", restarts=0, **kw)
    with pytest.raises(ValueError, match="unknown attack"):
        daa_tf.run(model, x0, y, attack="cw_l2", **kw)
    with pytest.raises(ValueError, match="outside the pixel box"):
        daa_tf.run(model, x0 + 2, y, attack="pgd", **kw)


def test_progress_bar_shows_progress_and_accuracy(model, data, capsys):
    x0, y = data
    daa_tf.run(model, x0, y, attack="pgd", eps=EPS, step_size=STEP, steps=2, restarts=2, verbose=1)
    out = capsys.readouterr().out
    assert "image-step" in out and "accuracy" in out


def test_short_calls_are_padded_to_a_few_shapes():
    """A call on fewer rows than a batch is padded to the next multiple of batch / BUCKETS."""
    assert [driver.bucket(n, 1000) for n in (1, 125, 126, 903, 1000)] == [125, 125, 250, 1000,
                                                                         1000]
    assert driver.bucket(3, 5) == 3 and driver.bucket(7, 7) == 7
    assert len({driver.bucket(n, 1000) for n in range(1, 1001)}) == driver.BUCKETS
    a, b = np.arange(6).reshape(3, 2), np.array([7, 8, 9])
    pa, pb = driver.padded([a, b], 5)
    np.testing.assert_array_equal(pa, [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]])
    np.testing.assert_array_equal(pb, [7, 8, 9, 9, 9])
    assert driver.padded([a], 3)[0] is a


def test_early_stop_does_not_retrace_per_subset():
    """Restarts on ever fewer examples reuse the bucketed shapes: one trace per bucket, not one
    per subset size."""
    model = toy_model()  # its own compiled functions: nothing traced by other tests
    rng = np.random.default_rng(4)
    x0 = rng.uniform(0.0, 1.0, (64,) + SHAPE).astype(np.float32)
    y = model(x0).numpy().argmax(axis=1)
    kw = dict(eps=0.1, step_size=0.02, steps=3)
    result = daa_tf.run(model, x0, y, "pgd", restarts=8, seed=1, verbose=0, batch_size=64, **kw)
    sizes = {64} | {round(64 * a) for a in result.restart_accuracies[:-1]}
    buckets = {driver.bucket(n, 64) for n in sizes}
    assert len(sizes) > len(buckets)  # the case padding is for
    fn = attacks.compiled_steps(model, attacks.make_config("pgd", **kw))
    assert fn.experimental_get_tracing_count() == len(buckets)
