"""APGD, ODI, MultiTargeted and best iterates through tf.distribute (a one-device
MirroredStrategy in process: the code path, the tuple outputs and the label shapes; several
replicas are covered for the loop itself by tests/test_distribute.py)."""
import numpy as np
import pytest

import daa_tf
from daa_tf import distribute
from tests.test_apgd import dense_batch, dense_model

EPS = 0.04


@pytest.fixture(scope="module")
def strategy():
    return distribute.make_strategy("mirrored")


@pytest.fixture(scope="module")
def model(strategy):
    with distribute.strategy_scope(strategy):
        return dense_model()


@pytest.fixture(scope="module")
def data(model):
    return dense_batch(model, 51)


@pytest.mark.parametrize("kw", [
    dict(attack="apgd", steps=6, loss="dlr"),
    dict(attack="pgd", step_size=0.01, steps=4, init="odi", best=True),
    dict(attack="multitargeted", steps=4, targets=2),
    dict(attack="daa_blob", step_size=0.01, steps=5, particles=4, best=True, c=5.0),
    dict(attack="apgd_daa_blob", steps=5, particles=4),
])
def test_a_strategy_gives_the_same_result(strategy, model, data, kw):
    x0, y = data
    common = dict(eps=EPS, seed=3, verbose=0, batch_size=4, restarts=2, **kw)
    plain = daa_tf.run(model, x0, y, **common)
    spread = daa_tf.run(model, x0, y, strategy=strategy, **common)
    np.testing.assert_array_equal(spread.x_adv, plain.x_adv)
    assert spread.restart_accuracies == plain.restart_accuracies
