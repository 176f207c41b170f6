"""The dataset-level driver: rounds, restarts, early stop, resume, against answers built
independently from the public attack functions and from the rules of docs/algorithms.md."""
import numpy as np
import pytest
import tensorflow as tf

import daa_tf
from daa_tf import attacks, catalogue, driver
from daa_tf import engine, batching
from tests.helpers import TOY_CLASSES as CLASSES
from tests.helpers import TOY_SHAPE as SHAPE
from tests.helpers import curved_batch, dense_batch, toy_model

N, PARTICLES = 11, 4
EPS, STEP = 0.3, 0.05


@pytest.fixture(scope="module")
def model(toy):
    return toy


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
    cfg = engine.make_config(name, steps=steps, **kw)
    x = engine.start_points(cfg, tf.constant(x0), engine.seed_tensor(seed, 0)).numpy()
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


# ------------------------------------------------------------------------------ resume


@pytest.fixture(scope="module")
def cascade_data(dense):
    """The cascade tests' images: the dense net's own labels, one example misclassified."""
    x0, y = dense_batch(dense, 61)
    y[0] = (y[0] + 1) % 6
    return x0, y


def _interrupt_attack(monkeypatch):
    """A KeyboardInterrupt inside the second restart (at its evaluation)."""
    calls = {"n": 0}
    real = driver.evaluate

    def interrupt_on_second_restart(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(driver, "evaluate", interrupt_on_second_restart)
    return {}


def _interrupt_cascade(monkeypatch):
    """A KeyboardInterrupt after the third stage (from ``on_restart``)."""
    def stop_after_third(index, accuracy, seconds):
        if index == 2:
            raise KeyboardInterrupt
    return {"on_restart": stop_after_third}


CASCADE_STAGES = (daa_tf.Stage("pgd", {"steps": 3, "step_size": 0.01}),
                  daa_tf.Stage("apgd", {"steps": 4, "loss": "margin"}))
# case: (model fixture, data fixture, run arguments, interruption, restarts run again on resume)
RESUME_CASES = {
    # DAA-BLOB, 3 restarts, interrupted inside the second: restarts 2 and 3 run again
    "attack": ("model", "data", dict(attack="daa_blob", restarts=3, seed=2, eps=EPS,
                                     step_size=STEP, steps=4, particles=PARTICLES, verbose=0),
               _interrupt_attack, 2),
    # the cascade of two stages, twice (4 stages), interrupted after the third: the fourth runs
    "cascade": ("dense", "cascade_data",
                dict(attack=catalogue.cascade_settings(eps=0.04, budget=7, stages=CASCADE_STAGES),
                     restarts=2, seed=5, verbose=0),
                _interrupt_cascade, 1),
    # strongest's default sequence (APGD-CE, MultiTargeted), each stage sized as it starts, twice
    "reinvested": ("dense", "cascade_data",
                   dict(attack=catalogue.cascade_settings(eps=0.04, budget=100), restarts=2,
                        seed=5, verbose=0),
                   _interrupt_cascade, 1),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_after_an_interruption_equals_an_uninterrupted_run(request, tmp_path, monkeypatch,
                                                                  case):
    model_fixture, data_fixture, kw, interrupt, rerun = RESUME_CASES[case]
    model = request.getfixturevalue(model_fixture)
    x0, y = request.getfixturevalue(data_fixture)
    full = daa_tf.run(model, x0, y, **kw)
    state = tmp_path / "attack.state.npz"
    with monkeypatch.context() as patch:
        with pytest.raises(KeyboardInterrupt):
            daa_tf.run(model, x0, y, state_path=str(state), **kw, **interrupt(patch))
    assert state.exists() and not list(tmp_path.glob(".*.tmp"))
    resumed = daa_tf.run(model, x0, y, state_path=str(state), resume=True, **kw)
    assert len(resumed.restart_seconds) == rerun  # only what the interruption lost ran again
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


# ----------------------------------------------------------------------------- early stop

CURVED_EPS, CURVED_STEP = 0.04, 0.03


@pytest.fixture(scope="module")
def curved_data(curved):
    return curved_batch(curved)


@pytest.mark.parametrize("name,kw", [
    ("pgd", dict(step_size=CURVED_STEP, steps=6)),
    ("apgd", dict(steps=6, loss="dlr")),
    ("momentum_pgd", dict(step_size=CURVED_STEP, steps=6, init="odi")),
    ("pgd", dict(step_size=CURVED_STEP, steps=4, targets=2, loss="margin")),
])
def test_early_stop_leaves_the_result_unchanged(curved, curved_data, name, kw):
    x0, y = curved_data
    args = dict(attack=name, eps=CURVED_EPS, restarts=4, seed=5, verbose=0, batch_size=5, **kw)
    stopped = daa_tf.run(curved, x0, y, early_stop=True, **args)
    full = daa_tf.run(curved, x0, y, early_stop=False, **args)
    np.testing.assert_array_equal(stopped.x_adv, full.x_adv)
    np.testing.assert_array_equal(stopped.correct, full.correct)
    runs = max(1, kw.get("targets", 0))
    budget = 4 * runs * (kw["steps"] + (2 if kw.get("init") == "odi" else 0))
    assert stopped.gradients_per_image == full.gradients_per_image == budget
    assert full.gradients_mean == budget
    assert stopped.gradients_mean < budget  # fooled examples were skipped
    # restart accuracies: cumulative with early stop (a skipped example counts as fooled)
    assert stopped.restart_accuracies[-1] == stopped.accuracy
    assert stopped.restart_accuracies == sorted(stopped.restart_accuracies, reverse=True)


def test_early_stop_is_refused_for_daa(curved, curved_data):
    x0, y = curved_data
    kw = dict(attack="daa_blob", eps=CURVED_EPS, step_size=CURVED_STEP, steps=2, particles=4,
              verbose=0)
    with pytest.raises(ValueError, match="early_stop"):
        daa_tf.run(curved, x0, y, early_stop=True, **kw)
    result = daa_tf.run(curved, x0, y, restarts=2, **kw)
    assert result.gradients_mean == result.gradients_per_image == 4


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
    per_batch = batching.buckets_for(engine.make_config("pgd", **kw).jit_compile)
    buckets = {batching.bucket(n, 64, per_batch) for n in sizes}
    assert len(sizes) > len(buckets)  # the case padding is for
    fn = engine.compiled(model, engine.make_config("pgd", **kw))
    assert fn.experimental_get_tracing_count() == len(buckets)
