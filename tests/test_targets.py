"""MultiTargeted (docs/algorithms.md#multitargeted; daa_tf.multitarget, the planned
daa_tf.targets): the targets, the runs toward each, and the worst-case merge, against NumPy."""
import numpy as np
import pytest
import tensorflow as tf

import daa_tf
from daa_tf import attacks, loop, losses
from daa_tf import engine
from daa_tf import targets as targets_module
from tests import numpy_reference as ref
from tests.helpers import DENSE_N as N
from tests.helpers import dense_batch

EPS, STEP, STEPS = 0.04, 0.01, 5


@pytest.fixture(scope="module")
def model(dense):
    return dense


@pytest.fixture(scope="module")
def data(model):
    return dense_batch(model, 31)


def test_target_classes_are_the_most_likely_wrong_classes():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 10)).astype(np.float32)
    z[0, 3] = z[0, 5]  # a tie: the lower index first
    y = rng.integers(0, 10, 50)
    for k in (1, 4, 9):
        np.testing.assert_array_equal(targets_module.target_classes(z, y, k),
                                      ref.target_classes(z, y, k))
    assert targets_module.target_classes(z, y, 20).shape == (50, 9)  # at most the wrong classes
    with pytest.raises(ValueError, match="at least 1"):
        targets_module.target_classes(z, y, 0)


def numpy_multitargeted(model, x0, y, targets, seed, early_stop):
    """PGD toward each target with the margin z_t - z_y (the loop's own gradient), starts drawn
    as the attack draws them, then the worst case by hand."""
    cfg = engine.make_config("pgd", eps=EPS, step_size=STEP, steps=STEPS, targets=1,
                              loss="margin")
    seed_t = engine.seed_tensor(seed)
    best_x, best_score = x0.copy(), np.full(N, -np.inf)
    done = np.zeros(N, bool)
    for k in range(targets.shape[1]):
        x = engine.start_points(cfg, tf.constant(x0), engine.target_seed(seed_t, k)).numpy()
        pairs = tf.constant(np.stack([y, targets[:, k]], axis=1), tf.int32)
        for _ in range(STEPS):
            g = loop.loss_gradient(model, losses.margin_targeted, tf.constant(x), pairs,
                                   False).numpy()
            x = ref.project(x + np.float32(STEP) * np.sign(g).astype(np.float32), x0, EPS, 0, 1)
        z = model(x).numpy()
        success = z.argmax(axis=1) != y
        score = ref.margin(z, y)
        for i in range(N):
            if done[i] and early_stop:
                continue
            if not done[i] and (success[i] or score[i] > best_score[i]):
                best_x[i], best_score[i] = x[i], score[i]
            done[i] |= success[i]
    return best_x, done


@pytest.mark.parametrize("early_stop", [True, False])
def test_multitargeted_matches_numpy(model, data, early_stop):
    x0, y = data
    targets = ref.target_classes(model(x0).numpy(), y, 3)
    expected, fooled = numpy_multitargeted(model, x0, y, targets, seed=4, early_stop=early_stop)
    if early_stop:  # the function on one batch: the driver's target runs, early stop on
        ours = daa_tf.pgd(model, x0, y, eps=EPS, step_size=STEP, steps=STEPS, loss="margin",
                          targets=3, seed=4).numpy()
    else:
        ours = daa_tf.run(model, x0, y, "pgd", eps=EPS, step_size=STEP, steps=STEPS,
                          loss="margin", targets=3, seed=4, early_stop=False, verbose=0,
                          batch_size=len(x0)).x_adv
    close = np.all(np.abs(ours - expected) <= 1e-6, axis=(1, 2, 3))
    assert close.all(), close
    assert 0 < fooled.sum() < N  # both branches of the merge are exercised


def test_the_worst_case_beats_every_single_target(model, data):
    x0, y = data
    kw = dict(eps=EPS, steps=STEPS, seed=1, loss="dlr")
    merged = daa_tf.multitargeted(model, x0, y, targets=4, **kw).numpy()
    fooled = model(merged).numpy().argmax(axis=1) != y
    one = daa_tf.multitargeted(model, x0, y, targets=1, **kw).numpy()
    assert np.all(fooled >= (model(one).numpy().argmax(axis=1) != y))
    assert np.all(np.abs(merged - x0) <= EPS + 1e-6)


@pytest.mark.parametrize("base", ["pgd", "apgd"])
def test_the_driver_equals_the_public_function(model, data, base):
    x0, y = data
    kw = dict(eps=EPS, steps=STEPS, loss="margin", seed=6)
    if base == "pgd":
        kw["step_size"] = STEP
    expected = daa_tf.attack(base, model, x0, y, targets=3, **kw).numpy()
    result = daa_tf.run(model, x0, y, attack=base, targets=3, verbose=0, **kw)
    np.testing.assert_array_equal(result.x_adv, expected)
    assert result.gradients_per_image == 3 * STEPS
    assert result.gradients_mean <= 3 * STEPS


def test_daa_as_the_base_runs_on_the_whole_set(model, data):
    x0, y = data
    result = daa_tf.run(model, x0, y, attack="daa_blob", targets=2, eps=EPS, step_size=STEP,
                        steps=STEPS, particles=4, loss="margin", verbose=0, seed=2)
    assert result.gradients_mean == 2 * STEPS  # no early stop for particles
    assert np.all(np.abs(result.x_adv - x0) <= EPS + 1e-6)


def test_bad_settings_are_refused(model, data):
    x0, y = data
    with pytest.raises(ValueError, match="targeted"):
        daa_tf.run(model, x0, y, attack="multitargeted", eps=EPS, steps=2, targeted=True,
                   verbose=0)
    with pytest.raises(TypeError, match="unknown setting"):
        daa_tf.multitargeted(model, x0, y, eps=EPS, steps=2, base="pgd")  # no base= any more
    with pytest.raises(TypeError, match="needs step_size: it has no default"):
        daa_tf.pgd(model, x0, y, eps=EPS, steps=2, targets=3)
    with pytest.raises(ValueError, match="x_init does not apply with targets"):
        daa_tf.apgd(model, x0, y, eps=EPS, steps=2, targets=3, random_start=False, x_init=x0)
    with pytest.raises(NotImplementedError, match="eagerly only"):
        tf.function(lambda x: daa_tf.multitargeted(model, x, y, eps=EPS, steps=2))(
            tf.constant(x0))


def test_multitargeted_defaults_to_the_margin_loss_everywhere(model, data):
    """The function, daa_tf.run and the settings agree: margin, 9 targets, APGD's schedule."""
    from daa_tf import catalogue
    s = catalogue.attack_settings("multitargeted", eps=EPS, steps=2)
    assert (s.loss, s.targets, s.best, s.step_size) == ("margin", 9, True, 2 * EPS)
    x0, y = data
    by_function = daa_tf.multitargeted(model, x0, y, eps=EPS, steps=2, targets=2).numpy()
    by_run = daa_tf.run(model, x0, y, "multitargeted", eps=EPS, steps=2, targets=2, verbose=0,
                        batch_size=len(x0))
    np.testing.assert_array_equal(by_function, by_run.x_adv)
