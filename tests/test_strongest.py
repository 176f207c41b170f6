"""The strongest-first cascade (docs/algorithms.md#strongest)."""
import numpy as np
import pytest

import daa_tf
from daa_tf import cascade
from tests.test_apgd import N, SHAPE, dense_model

EPS = 0.04


@pytest.fixture(scope="module")
def model():
    return dense_model()


@pytest.fixture(scope="module")
def data(model):
    rng = np.random.default_rng(61)
    x0 = rng.uniform(0.2, 0.8, (N,) + SHAPE).astype(np.float32)
    y = model(x0).numpy().argmax(axis=1)
    y[0] = (y[0] + 1) % 6  # one example misclassified before any attack
    return x0, y


def test_default_stages_fit_the_budget():
    for budget, classes in ((1000, 10), (100, 10), (57, 6), (2, 10), (1, 2)):
        stages = cascade.default_stages(budget, classes)
        assert 0 < sum(stage.gradients(classes) for stage in stages) <= budget
    stages = cascade.default_stages(1000)
    assert [s.gradients(10) for s in stages] == [100] * 10
    assert [s.attack for s in stages[:3]] == ["apgd", "apgd_daa_blob", "apgd_daa_dgf"]
    assert stages[4].settings == {"loss": "margin", "init": "odi", "steps": 98}
    assert all(s.settings["loss"] != "dlr" for s in cascade.default_stages(1000, 2))
    assert len(cascade.default_stages(35)) == 3  # stages of at least 10 gradients


def test_cascade_keeps_the_worst_case_within_the_budget(model, data):
    x0, y = data
    stages = [daa_tf.Stage("pgd", {"steps": 3, "step_size": 0.01}),
              daa_tf.Stage("apgd", {"steps": 4, "loss": "dlr", "targets": 2}, restarts=2)]
    seen = []
    result = daa_tf.strongest(model, x0, y, eps=EPS, budget=20, stages=stages, seed=1,
                              on_stage=lambda *a: seen.append(a))
    assert result.gradients_per_image == 3 + 2 * 2 * 4
    assert result.gradients_mean <= result.gradients_per_image
    assert [i for i, *_ in seen] == [0, 1] and result.restart_accuracies[-1] == result.accuracy
    assert result.restart_accuracies[1] <= result.restart_accuracies[0]
    pred = model(result.x_adv).numpy().argmax(axis=1)
    np.testing.assert_array_equal(result.correct, pred == y)
    np.testing.assert_array_equal(result.x_adv[0], x0[0])  # misclassified: left clean
    assert np.all(np.abs(result.x_adv - x0) <= EPS + 1e-6)
    # every example a single stage fools, the cascade fools too
    first = daa_tf.run(model, x0, y, "pgd", steps=3, step_size=0.01, eps=EPS, verbose=0,
                       seed=int(np.random.SeedSequence([1, 0]).generate_state(1)[0]))
    assert np.all(result.correct <= first.correct)
    with pytest.raises(ValueError, match="more than the budget"):
        daa_tf.strongest(model, x0, y, eps=EPS, budget=10, stages=stages)


def test_default_cascade_runs(model, data):
    x0, y = data
    result = daa_tf.strongest(model, x0, y, eps=EPS, budget=30, seed=0)
    assert result.gradients_per_image <= 30
    assert result.accuracy < np.mean(model(x0).numpy().argmax(axis=1) == y)
