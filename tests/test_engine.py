"""The ODI start (docs/algorithms.md#odi; daa_tf.attacks today, the planned daa_tf.engine): the
same loop with the loss ``w . logits``, then the attack's own steps, against NumPy."""
import numpy as np
import pytest
import tensorflow as tf

import daa_tf
from daa_tf import attacks, loop, losses
from daa_tf import engine
from tests import numpy_reference as ref
from tests.helpers import DENSE_CLASSES as CLASSES
from tests.helpers import DENSE_N as N
from tests.helpers import dense_batch

EPS, STEP = 0.1, 0.02


@pytest.fixture(scope="module")
def model(dense):
    return dense


@pytest.fixture(scope="module")
def data(model):
    return dense_batch(model, 21)


def test_odi_weights_are_uniform_per_example_and_stateless():
    seed = engine.seed_tensor(7, 0)
    w = engine.odi_weights(seed, 500, 10).numpy()
    assert w.shape == (500, 10) and w.min() >= -1 and w.max() < 1
    assert abs(w.mean()) < 0.05 and 0.3 < w.std() < 0.65  # U[-1, 1): std 0.577
    np.testing.assert_array_equal(w, engine.odi_weights(seed, 500, 10).numpy())
    assert not np.array_equal(w, engine.odi_weights(engine.seed_tensor(7, 1), 500, 10).numpy())
    # not the random start's draw
    start_noise = tf.random.stateless_uniform([500, 10], seed=seed, minval=-1.0, maxval=1.0)
    assert not np.array_equal(w, start_noise.numpy())


def test_odi_then_pgd_matches_numpy(model, data):
    """Random start, 2 ODI steps of eps ascending w . z (NumPy's own gradient of the dense net),
    then PGD's steps (the loop's gradient)."""
    x0, y = data
    seed = 5
    cfg = engine.make_config("pgd", eps=EPS, step_size=STEP, steps=4)
    seed_t = engine.seed_tensor(seed)
    x = engine.start_points(cfg, tf.constant(x0), seed_t).numpy()
    w = engine.odi_weights(seed_t, N, CLASSES).numpy()
    weights = [v.numpy() for v in model.weights]
    for _ in range(2):
        g = ref.dense_input_gradient(weights, x, w.astype(np.float64))
        assert np.all(np.abs(g) > 1e-7)  # signs far from float noise
        x = ref.project(x + np.float32(EPS) * np.sign(g).astype(np.float32), x0, EPS, 0, 1)
    after_odi = x.copy()
    for _ in range(4):
        g = loop.loss_gradient(model, losses.xent, tf.constant(x), tf.constant(y, tf.int32),
                               False).numpy()
        x = ref.project(x + np.float32(STEP) * np.sign(g).astype(np.float32), x0, EPS, 0, 1)
    ours = attacks.pgd(model, x0, y, eps=EPS, step_size=STEP, steps=4, seed=seed,
                       init="odi").numpy()
    np.testing.assert_array_equal(ours, x)
    # the ODI steps moved the points, and so the attack's result
    start = engine.start_points(cfg, tf.constant(x0), seed_t).numpy()
    assert np.mean(after_odi != start) > 0.9
    plain = attacks.pgd(model, x0, y, eps=EPS, step_size=STEP, steps=4, seed=seed).numpy()
    assert not np.array_equal(ours, plain)


def test_odi_step_size_and_steps_are_settings(model, data):
    x0, y = data
    kw = dict(eps=EPS, step_size=STEP, steps=2, seed=1)
    a = attacks.pgd(model, x0, y, odi_steps=3, odi_step_size=0.01, **kw).numpy()
    b = attacks.pgd(model, x0, y, init="odi", odi_steps=3, odi_step_size=0.01, **kw).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, attacks.pgd(model, x0, y, init="odi", **kw).numpy())
    with pytest.raises(ValueError, match="init must be"):
        attacks.pgd(model, x0, y, init="zeros", **kw)
    with pytest.raises(ValueError, match="odi_steps"):
        attacks.pgd(model, x0, y, init="odi", odi_steps=0, **kw)


@pytest.mark.parametrize("name", ["pgd", "apgd", "daa_blob", "apgd_daa_dgf"])
def test_the_driver_applies_odi_as_the_public_functions_do(model, data, name):
    x0, y = data
    kw = dict(eps=EPS, steps=3, init="odi")
    if name in ("pgd", "daa_blob"):
        kw["step_size"] = STEP
    if "daa" in name:
        kw["particles"] = N  # one group: the driver's permutation does not change the groups' set
        kw["c"] = 0.0        # ... and c = 0 makes the order irrelevant: compare exactly
    expected = attacks.ATTACK_FUNCTIONS[name](model, x0, y, seed=3, **kw).numpy()
    result = daa_tf.run(model, x0, y, attack=name, seed=3, verbose=0, **kw)
    np.testing.assert_array_equal(result.x_adv, expected)
    assert result.gradients_per_image == 2 + 3


def test_odi_runs_inside_a_users_tf_function(model, data):
    x0, y = data

    @tf.function
    def pipeline(x, labels):
        return daa_tf.pgd(model, x, labels, eps=EPS, step_size=STEP, steps=2, seed=0, init="odi")

    np.testing.assert_array_equal(
        pipeline(tf.constant(x0), tf.constant(y)).numpy(),
        daa_tf.pgd(model, x0, y, eps=EPS, step_size=STEP, steps=2, seed=0, init="odi").numpy())
