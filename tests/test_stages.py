"""The cascade's stages and settings (daa_tf.catalogue today; the planned daa_tf.stages): the
default stages within a gradient budget, and the settings a cascade refuses. No model needed."""
import numpy as np
import pytest

from daa_tf import catalogue

EPS = 0.04


def test_default_stages_fit_the_budget():
    for budget, classes in ((1000, 10), (100, 10), (57, 6), (2, 10), (1, 2)):
        stages = catalogue.default_stages(budget, classes)
        assert 0 < sum(stage.gradients(classes) for stage in stages) <= budget
    stages = catalogue.default_stages(1000)
    assert [s.gradients(10) for s in stages] == [100, 99, 100, 99] + [100] * 6
    assert [s.attack for s in stages[:4]] == ["apgd", "multitargeted", "apgd_daa_blob", "fab_t"]
    assert stages[1].settings == {"steps": 11}  # 9 target classes x 11 steps
    assert stages[6].settings == {"loss": "margin", "init": "odi", "steps": 98}
    assert all(s.settings.get("loss") != "dlr" for s in catalogue.default_stages(1000, 2))
    # the targeted stages need 3 classes (two targets at least) and take at most C - 1 targets
    assert {s.attack for s in catalogue.default_stages(1000, 2)}.isdisjoint(
        {"multitargeted", "fab_t"})
    three = catalogue.default_stages(1000, 3)
    assert three[1].attack == "multitargeted" and three[1].settings == {"steps": 50}  # 2 x 50
    assert catalogue.default_stages(100, 4)[1].settings == {"steps": 16}  # 3 targets x 16
    assert len(catalogue.default_stages(35)) == 1  # stages of at least 50 gradients
    assert [s.settings["steps"] for s in catalogue.default_stages(120)] == [60, 6]


def test_reinvested_stages_share_what_the_earlier_ones_left():
    """docs/algorithms.md#strongest, "Reinvested budget": a pass may spend budget x the images
    it starts on; each gradient stage gets an equal part of what is left over the images it
    starts on, at most the budget per image; Square keeps its queries."""
    from daa_tf.stages import reinvested, strongest_stages

    stages = strongest_stages(100, 500)  # APGD-CE 50, MultiTargeted 9 x 5, Square 500
    # nothing fooled: the nominal shares
    assert reinvested(stages, 100, [200, 200, 200]) == stages
    # 63 of 141 left after APGD-CE: MultiTargeted may take 50 x 141 / 63 = 111, capped at 100
    # (9 x 11)
    sized = reinvested(stages, 100, [141, 63, 60])
    assert [s.settings["steps"] for s in sized] == [50, 11, 500]
    # 120 of 141 left: 50 x 141 / 120 = 58 gradients, 9 targets x 6 steps
    assert reinvested(stages, 100, [141, 120])[1].settings == {"steps": 6}
    # the charge never exceeds budget x the images at the start, whatever is fooled
    rng = np.random.default_rng(0)
    ten = catalogue.default_stages(1000)
    for _ in range(50):
        starts = np.sort(rng.integers(1, 500, size=len(ten)))[::-1].tolist()
        sized = reinvested(ten, 1000, starts)
        charged = sum(s.gradients(10) * n for s, n in zip(sized, starts))
        assert charged <= 1000 * starts[0]
        assert all(nominal.gradients(10) <= s.gradients(10) <= 1000
                   for nominal, s in zip(ten, sized))
        assert [s.attack for s in sized] == [s.attack for s in ten]
    # a stage no image reaches keeps its nominal size (it does not run)
    assert reinvested(ten, 1000, [10, 0])[1] == ten[1]


def test_cascade_settings_refuse_what_the_cascade_cannot_do():
    with pytest.raises(ValueError, match="untargeted cascade"):
        catalogue.cascade_settings(eps=EPS).replace(targeted=True)
    with pytest.raises(ValueError, match="Stage"):
        catalogue.cascade_settings(eps=EPS, stages=[("pgd", {"steps": 3})])
    with pytest.raises(ValueError, match="cascade of attacks"):
        catalogue.get_spec("strongest")


def test_strongest_stages_add_square_with_the_whole_query_budget():
    from daa_tf.stages import strongest_stages

    gradient_only = catalogue.default_stages(100)
    stages = strongest_stages(100, 500)
    assert stages[:-1] == gradient_only and stages[-1] == catalogue.Stage("square", {"steps": 500})
    assert strongest_stages(100) == gradient_only
    settings = catalogue.cascade_settings(eps=0.3, budget=100, queries=500)
    assert settings.stages_for(10) == stages
    assert sum(s.queries(10) for s in stages) == 500 and sum(s.gradients(10) for s in stages) == 95
    given = catalogue.cascade_settings(eps=0.3, budget=100, queries=499, stages=stages)
    with pytest.raises(ValueError, match="500 queries per image, more than the budget 499"):
        given.stages_for(10)
    with pytest.raises(ValueError, match="queries is strongest's setting"):
        catalogue.cascade_settings("autoattack", eps=0.3, queries=10)
    with pytest.raises(ValueError, match="queries"):
        catalogue.cascade_settings(eps=0.3, queries=0)
