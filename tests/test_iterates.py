"""Best iterates (docs/algorithms.md#best-iterates; daa_tf.iterates): the rule against NumPy, the
merge of two calls, DAA's best iterates across the driver's rounds and APGD's default."""
import numpy as np
import pytest
import tensorflow as tf

import daa_tf
from daa_tf import attacks, iterates, loop, losses
from daa_tf import engine
from tests import numpy_reference as ref
from tests.helpers import DENSE_N as N
from tests.helpers import curved_batch

EPS, STEP = 0.04, 0.03


@pytest.fixture(scope="module")
def model(curved):
    """A net curved enough at this radius that PGD's last iterate is not always its best."""
    return curved


@pytest.fixture(scope="module")
def data(model):
    return curved_batch(model)


def numpy_pgd_iterates(model, x0, y, start, steps, loss="xent", targeted=False):
    """PGD's iterates x_0 .. x_steps with their objectives and successes (the loop's own gradient
    function, so that no sign of a vanishing gradient differs)."""
    fn = losses.get_loss(loss)
    x, points, objectives, fooled = start.copy(), [], [], []
    yt = tf.constant(y, tf.int32)
    gradient = loop.gradient_function(model, fn, yt, targeted, False)
    for i in range(steps + 1):
        z = model(x)
        value = fn(z, yt).numpy()
        points.append(x.copy())
        objectives.append(-value if targeted else value)
        pred = z.numpy().argmax(axis=1)
        fooled.append(pred == y if targeted else pred != y)
        if i < steps:
            g = gradient(tf.constant(x)).numpy()
            x = ref.project(x + np.float32(STEP) * np.sign(g).astype(np.float32), x0, EPS, 0, 1)
    return points, objectives, fooled


@pytest.mark.parametrize("loss,targeted", [("xent", False), ("cw", False), ("xent", True)])
def test_best_iterate_rule_matches_numpy(model, data, loss, targeted):
    x0, y = data
    labels = (y + 1) % 6 if targeted else y
    start = engine.start_points(engine.make_config("pgd", eps=EPS, step_size=STEP, steps=1),
                                 tf.constant(x0), engine.seed_tensor(9)).numpy()
    points, objectives, fooled = numpy_pgd_iterates(model, x0, labels, start, 8, loss, targeted)
    expected = ref.best_iterate(points, objectives, fooled)
    ours = attacks.pgd(model, x0, labels, eps=EPS, step_size=STEP, steps=8, seed=9, loss=loss,
                       targeted=targeted, best=True).numpy()
    np.testing.assert_array_equal(ours, expected)
    ever = np.any(fooled, axis=0)
    last = points[-1]
    # the rule did something: some examples take a point other than the last one
    assert np.any(np.any(ours != last, axis=(1, 2, 3)))
    if not targeted:
        assert 0 < ever.sum() < N
    # default: the paper's attacks return their last iterate
    np.testing.assert_array_equal(
        attacks.pgd(model, x0, labels, eps=EPS, step_size=STEP, steps=8, seed=9, loss=loss,
                    targeted=targeted).numpy(), last)


def test_merging_two_calls_equals_one_call(model, data):
    """The driver's rounds: the state of a run cut in two merges to the one-call state."""
    x0, y = data
    cfg = engine.make_config("pgd", eps=EPS, step_size=STEP, steps=10, best=True)
    x0t, yt = tf.constant(x0), tf.constant(y, tf.int32)
    start = engine.start_points(cfg, x0t, engine.seed_tensor(1))
    whole = [t.numpy() for t in engine.run_loop(model, cfg, x0t, yt, start)]
    first = [t.numpy() for t in engine.run_loop(model, cfg, x0t, yt, start, steps=4)]
    second = [t.numpy() for t in engine.run_loop(model, cfg, x0t, yt, tf.constant(first[0]),
                                                  steps=6)]
    state = [part.copy() for part in first[1:]]
    iterates.merge(*state, *second[1:])
    np.testing.assert_array_equal(second[0], whole[0])
    np.testing.assert_array_equal(state[0], whole[1])
    np.testing.assert_array_equal(state[2], whole[3])


def test_daa_best_iterates_across_rounds(model, data):
    x0, y = data
    kw = dict(attack="daa_blob", eps=EPS, step_size=STEP, steps=9, particles=4, c=5.0, seed=3,
              steps_per_round=3, verbose=0)
    last = daa_tf.run(model, x0, y, **kw)
    best = daa_tf.run(model, x0, y, best=True, **kw)
    assert best.accuracy <= last.accuracy
    # the trajectory is the same: every example fooled by the last iterate stays fooled
    assert np.all(best.correct <= last.correct)


def test_apgd_defaults_to_best_and_can_return_the_last(model, data):
    x0, y = data
    kw = dict(eps=EPS, steps=10, seed=2)
    cfg = engine.make_config("apgd", eps=EPS, steps=10)
    x0t, yt = tf.constant(x0), tf.constant(y, tf.int32)
    raw = engine.run_loop(model, cfg, x0t, yt, engine.start_points(cfg, x0t,
                                                                     engine.seed_tensor(2)))
    np.testing.assert_array_equal(daa_tf.apgd(model, x0, y, **kw).numpy(), raw[1].numpy())
    np.testing.assert_array_equal(daa_tf.apgd(model, x0, y, best=False, **kw).numpy(),
                                  raw[0].numpy())
