"""The strongest-first cascade (docs/algorithms.md#strongest; daa_tf.cascade) above the driver.
Its resume is tested with the driver's (tests/test_driver.py), its stages in
tests/test_stages.py."""
import numpy as np
import pytest

import daa_tf
from daa_tf import catalogue
from tests.helpers import dense_batch

EPS = 0.04


@pytest.fixture(scope="module")
def model(dense):
    return dense


@pytest.fixture(scope="module")
def data(model):
    x0, y = dense_batch(model, 61)
    y[0] = (y[0] + 1) % 6  # one example misclassified before any attack
    return x0, y


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


def test_default_cascade_reinvests_what_fooled_images_leave(model, data):
    """docs/algorithms.md#strongest, "Reinvested budget": each default stage is sized when it
    starts from the images still correct; the gradients spent stay within budget x the images
    correct at the start, and the images a stage fools alone, as sized, the cascade fools."""
    from daa_tf.cascade import stage_seed

    x0, y = data
    ran = []
    result = daa_tf.strongest(model, x0, y, eps=EPS, budget=100, seed=4, verbose=0,
                              on_stage=lambda i, stage, acc, sec: ran.append((stage, acc)))
    correct = int(np.sum(model(x0).numpy().argmax(axis=1) == y))
    starts = [correct] + [int(round(acc * len(x0))) for _, acc in ran[:-1]]
    stages = [stage for stage, _ in ran]
    assert [s.attack for s in stages] == ["apgd", "multitargeted"]  # budget 100: two stages
    assert starts[1] < starts[0]  # APGD-CE fooled some: MultiTargeted gets more than its 45
    assert stages[1].gradients(6) > 45 and stages[1].gradients(6) <= 100
    assert sum(s.gradients(6) * n for s, n in zip(stages, starts)) <= 100 * correct
    assert result.gradients_mean * len(x0) <= 100 * correct
    assert result.gradients_per_image == 100
    for i, stage in enumerate(stages):
        alone = daa_tf.run(model, x0, y, stage.attack, eps=EPS, seed=stage_seed(4, i),
                           verbose=0, **stage.settings)
        assert np.all(result.correct <= alone.correct), stage.describe()


STAGES = (daa_tf.Stage("pgd", {"steps": 3, "step_size": 0.01}),
          daa_tf.Stage("apgd", {"steps": 4, "loss": "margin"}))


def test_run_takes_the_cascade_by_name_and_by_settings(model, data):
    x0, y = data
    direct = daa_tf.strongest(model, x0, y, eps=EPS, budget=7, stages=STAGES, seed=3)
    by_name = daa_tf.run(model, x0, y, "strongest", eps=EPS, budget=7, stages=STAGES, seed=3,
                         verbose=0)
    settings = catalogue.cascade_settings(eps=EPS, budget=7, stages=STAGES)
    by_settings = daa_tf.run(model, x0, y, settings, seed=3, verbose=0)
    for other in (by_name, by_settings):
        np.testing.assert_array_equal(other.x_adv, direct.x_adv)
        assert other.restart_accuracies == direct.restart_accuracies


def test_restarts_repeat_the_cascade(model, data):
    x0, y = data
    settings = catalogue.cascade_settings(eps=EPS, budget=7, stages=STAGES)
    whole = daa_tf.run(model, x0, y, settings, restarts=2, seed=5, verbose=0)
    assert len(whole.restart_accuracies) == 4 and whole.gradients_per_image == 14
    assert whole.restart_accuracies == sorted(whole.restart_accuracies, reverse=True)
    once = daa_tf.run(model, x0, y, settings, restarts=1, seed=5, verbose=0)
    assert whole.restart_accuracies[:2] == once.restart_accuracies


def test_the_cascade_refuses_what_it_cannot_do(model, data):
    x0, y = data
    with pytest.raises(ValueError, match="always stops early"):
        daa_tf.run(model, x0, y, "strongest", eps=EPS, budget=7, stages=STAGES, early_stop=False)
    # batches of whole groups only when a stage is DAA (budget 30: one APGD stage, any batch)
    assert daa_tf.stages.cascade_settings(eps=EPS, budget=30).batch_multiple is None
    with pytest.raises(ValueError, match=r"multiple of particles \(4\)"):
        daa_tf.run(model, x0, y, "strongest", eps=EPS, batch_size=6, verbose=0,
                   stages=[daa_tf.Stage("apgd_daa_blob", {"steps": 2, "particles": 4})])


def test_strongest_is_never_weaker_than_any_of_its_stages_alone(model, data):
    """docs/algorithms.md#strongest: each stage of independent examples attacks the whole set
    with the fooled examples skipped, so every example the stage fools when run alone (same
    seed, same settings) is fooled by the cascade: per-example correctness <= each stage's."""
    from daa_tf.cascade import stage_seed

    x0, y = data
    stages = [daa_tf.Stage("apgd", {"steps": 6, "loss": "xent"}),
              daa_tf.Stage("apgd_t", {"steps": 3, "targets": 2}),
              daa_tf.Stage("fab_t", {"steps": 3, "targets": 2}),
              daa_tf.Stage("square", {"steps": 60})]
    result = daa_tf.strongest(model, x0, y, eps=EPS, budget=18, queries=60, stages=stages,
                              seed=3, verbose=0)
    assert (result.gradients_per_image, result.queries_per_image) == (18, 60)
    gains = []
    for i, stage in enumerate(stages):
        alone = daa_tf.run(model, x0, y, stage.attack, eps=EPS, seed=stage_seed(3, i),
                           verbose=0, **stage.settings)
        assert np.all(result.correct <= alone.correct), stage.describe()
        gains.append(int(np.sum(alone.correct & ~result.correct)))
    assert sum(gains) > 0  # the cascade beats its stages somewhere: the check can fail
    with pytest.raises(ValueError, match="60 queries per image, more than the budget 59"):
        daa_tf.strongest(model, x0, y, eps=EPS, budget=18, queries=59, stages=stages)


def test_skipped_examples_keep_the_draws_of_the_whole_set(model, data):
    """driver.run(skip=...): the examples not skipped end where the run on the whole set puts
    them; the skipped ones keep their input and count as fooled."""
    from daa_tf import driver

    x0, y = data
    skip = np.arange(len(y)) % 3 == 0
    full = driver.run(model, x0, y, "square", eps=EPS, steps=40, seed=5, verbose=0)
    part = driver.run(model, x0, y, "square", eps=EPS, steps=40, seed=5, verbose=0, skip=skip)
    np.testing.assert_array_equal(part.x_adv[~skip], full.x_adv[~skip])
    np.testing.assert_array_equal(part.x_adv[skip], x0[skip])
    assert part.restart_accuracies[0] == pytest.approx(np.mean(~skip & full.correct))
    with pytest.raises(ValueError, match="skip needs early stop"):
        driver.run(model, x0, y, "pgd", eps=EPS, steps=2, step_size=0.01, verbose=0, skip=skip,
                   early_stop=False)
