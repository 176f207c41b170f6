"""The APGD schedule (docs/algorithms.md#apgd; daa_tf.schedules) against the NumPy reference
written after AutoAttack's own loop, its composition with DAA's directions, and APGD through the
driver."""
import numpy as np
import pytest
import tensorflow as tf

import daa_tf
from daa_tf import attacks, loop, schedules
from daa_tf import engine
from daa_tf.losses import get_loss
from tests import numpy_reference as ref
from tests.helpers import DENSE_N as N
from tests.helpers import DENSE_SHAPE as SHAPE

EPS = 0.04


@pytest.fixture(scope="module")
def model(dense):
    return dense


@pytest.fixture(scope="module")
def data(model):
    """Labels are the net's clean predictions (a random net is right on few random labels), so
    that some examples resist the attack and some do not."""
    rng = np.random.default_rng(11)
    x0 = rng.uniform(0.2, 0.8, (N,) + SHAPE).astype(np.float32)
    y = model(x0).numpy().argmax(axis=1)
    start = ref.project(x0 + rng.uniform(-EPS, EPS, x0.shape).astype(np.float32), x0, EPS, 0, 1)
    return x0, y, start


def tf_value_grad(model, y, loss):
    """The loop's own gradient pass, called eagerly: (objective, fooled, G) in NumPy."""
    fn = loop.value_and_gradient_function(model, get_loss(loss), tf.constant(y, tf.int32), False,
                                          False)

    def value_grad(x):
        objective, logits, grad = fn(tf.constant(x))
        return (objective.numpy(), logits.numpy().argmax(axis=1) != y, grad.numpy())
    return value_grad


def raw_apgd(model, x0, y, start, steps, loss="xent", **kw):
    cfg = engine.make_config("apgd", eps=EPS, steps=steps, loss=loss, random_start=False, **kw)
    out = engine.run_loop(model, cfg, tf.constant(x0), tf.constant(y, tf.int32),
                           tf.constant(start))
    return [t.numpy() for t in out]


def test_checkpoints_follow_autoattack():
    # N = 100: first interval 22, shrinking by 3 down to 6 (AutoAttack's p_j).
    assert schedules.apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert schedules.apgd_checkpoints(12) == list(range(2, 12))
    # The reference finds the same iterations (its i is the 0-based step whose point is checked).
    for steps in (5, 12, 30, 100):
        run = ref.apgd_run(lambda x: (np.zeros(1), np.zeros(1, bool), np.ones_like(x)),
                           np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32), 0.1,
                           steps)
        assert [i + 1 for i in run["checkpoints"] if i + 1 < steps] == \
            schedules.apgd_checkpoints(steps)


@pytest.mark.parametrize("loss", ["xent", "dlr"])
@pytest.mark.parametrize("steps", [5, 12, 30])
def test_apgd_matches_the_numpy_reference_step_by_step(model, data, loss, steps):
    """The whole trajectory (last point, best points, their objectives) equals AutoAttack's loop
    driven by the same gradient pass: any divergence at any step would show."""
    x0, y, start = data
    expected = ref.apgd_run(tf_value_grad(model, y, loss), x0, start, EPS, steps)
    x_last, x_best, objective, fooled = raw_apgd(model, x0, y, start, steps, loss)
    np.testing.assert_array_equal(x_last, expected["x_last"])
    np.testing.assert_array_equal(x_best, expected["x_best"])
    np.testing.assert_array_equal(fooled, expected["fooled"])
    keep = ~fooled
    np.testing.assert_array_equal(objective[keep], expected["objective"][keep])
    if steps >= 12:  # the schedule was exercised: steps halved, examples restarted from the best
        assert expected["halvings"] > 0
    # the public function returns the best points
    public = attacks.apgd(model, x0, y, eps=EPS, steps=steps, loss=loss, random_start=False,
                          x_init=start).numpy()
    np.testing.assert_array_equal(public, x_best)


def test_apgd_whole_run_against_pure_numpy(model, data):
    """A run whose gradients NumPy computes itself (float64): APGD-CE ends at the same points,
    up to the float32 rounding of the net (a few examples may take another turn)."""
    x0, y, start = data
    weights = [w.numpy() for w in model.weights]

    def value_grad(x):
        _, z = ref.dense_forward(weights, x)
        g = ref.dense_input_gradient(weights, x, ref.xent_logit_gradient(z, y))
        return ref.xent(z, y).astype(np.float32), z.argmax(axis=1) != y, g.astype(np.float32)

    expected = ref.apgd_run(value_grad, x0, start, EPS, 20)
    ours = attacks.apgd(model, x0, y, eps=EPS, steps=20, random_start=False, x_init=start).numpy()
    same = np.all(np.abs(ours - expected["x_best"]) <= 1e-5, axis=(1, 2, 3))
    assert same.mean() >= 0.9, same
    assert expected["halvings"] > 0


def test_apgd_differs_from_pgd_and_keeps_the_bounds(model, data):
    x0, y, start = data
    a = attacks.apgd(model, x0, y, eps=EPS, steps=10, seed=1, best=False).numpy()
    p = attacks.pgd(model, x0, y, eps=EPS, step_size=EPS / 4, steps=10, seed=1).numpy()
    assert not np.array_equal(a, p)
    assert np.all(np.abs(a - x0) <= EPS + 1e-6) and a.min() >= 0 and a.max() <= 1


def test_daa_direction_under_apgd(model, data):
    x0, y, start = data
    kw = dict(eps=EPS, steps=12, random_start=False, x_init=start, particles=4)
    # c = 0: DAA's direction is the gradient, bit for bit
    np.testing.assert_array_equal(
        attacks.apgd_daa_blob(model, x0, y, c=0.0, **kw).numpy(),
        attacks.apgd(model, x0, y, eps=EPS, steps=12, random_start=False, x_init=start).numpy())
    # c != 0: the NumPy APGD with the NumPy DAA direction (float64 kernel)
    for kind, c in (("blob", 5.0), ("dgf", -0.5)):
        def direction(g, x, kind=kind, c=c):
            v, _ = ref.daa_direction(kind, g.reshape(N, -1), x.reshape(N, -1), c, 4)
            return v.reshape(x.shape)
        expected = ref.apgd_run(tf_value_grad(model, y, "xent"), x0, start, EPS, 12,
                                direction=direction)
        ours = attacks.attack(f"apgd_daa_{kind}", model, x0, y, c=c, **kw).numpy()
        assert np.mean(ours == expected["x_best"]) > 0.97
        plain = attacks.apgd(model, x0, y, eps=EPS, steps=12, random_start=False,
                             x_init=start).numpy()
        assert not np.array_equal(ours, plain)  # the particles matter


def test_the_catalogue_attacks_and_their_defaults(model, data):
    x0, y, _ = data
    cfg = engine.make_config("apgd", eps=0.1, steps=10)
    assert cfg.settings.step_size == pytest.approx(0.2) and cfg.best
    assert isinstance(cfg.schedule, schedules.APGD)
    assert not engine.make_config("pgd", eps=0.1, step_size=0.01, steps=10).best
    blob = engine.make_config("apgd_daa_blob", eps=0.1, steps=10, particles=4)
    assert blob.interacting and blob.params["c"] == 1.1 and blob.params["alpha"] == 0.75
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['direction'\]"):
        attacks.apgd(model, x0, y, eps=EPS, steps=2, direction="momentum")  # apgd_daa_* instead
    with pytest.raises(TypeError, match=r"does not read \['decay'\]"):
        attacks.apgd(model, x0, y, eps=EPS, steps=2, decay=0.5)


def test_driver_runs_apgd_as_one_uninterrupted_call(model, data):
    x0, y, _ = data
    expected = attacks.apgd(model, x0, y, eps=EPS, steps=9, loss="dlr", seed=4).numpy()
    result = daa_tf.run(model, x0, y, attack="apgd", eps=EPS, steps=9, loss="dlr", seed=4,
                        steps_per_round=2, verbose=0)
    np.testing.assert_array_equal(result.x_adv, expected)
    pred, _, _ = daa_tf.evaluate(model, expected, y)
    assert result.accuracy == np.mean(pred == y)


def test_driver_runs_daa_under_apgd_in_one_round(model, data):
    """DAA under APGD: one permutation per restart, all steps in one call per batch."""
    x0, y, _ = data
    kw = dict(eps=EPS, steps=7, particles=4, c=5.0)
    cfg = engine.make_config("apgd_daa_blob", **kw)
    start = engine.start_points(cfg, tf.constant(x0), engine.seed_tensor(2, 0)).numpy()
    perm = np.random.default_rng([2, 0]).permutation(N)
    x = start.copy()
    x[perm] = attacks.apgd_daa_blob(model, x0[perm], y[perm], x_init=start[perm],
                                    random_start=False, **kw).numpy()
    result = daa_tf.run(model, x0, y, attack="apgd_daa_blob", seed=2, steps_per_round=3,
                        batch_size=4, verbose=0, **kw)
    np.testing.assert_array_equal(result.x_adv, x)
