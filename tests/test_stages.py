"""The cascade's stages and settings (daa_tf.catalogue today; the planned daa_tf.stages): the
default stages within a gradient budget, and the settings a cascade refuses. No model needed."""
import pytest

from daa_tf import catalogue

EPS = 0.04


def test_default_stages_fit_the_budget():
    for budget, classes in ((1000, 10), (100, 10), (57, 6), (2, 10), (1, 2)):
        stages = catalogue.default_stages(budget, classes)
        assert 0 < sum(stage.gradients(classes) for stage in stages) <= budget
    stages = catalogue.default_stages(1000)
    assert [s.gradients(10) for s in stages] == [100] * 10
    assert [s.attack for s in stages[:3]] == ["apgd", "apgd_daa_blob", "apgd_daa_dgf"]
    assert stages[4].settings == {"loss": "margin", "init": "odi", "steps": 98}
    assert all(s.settings["loss"] != "dlr" for s in catalogue.default_stages(1000, 2))
    assert len(catalogue.default_stages(35)) == 1  # stages of at least 50 gradients
    assert [s.settings["steps"] for s in catalogue.default_stages(120)] == [60, 60]


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
    assert sum(s.queries(10) for s in stages) == 500 and sum(s.gradients(10) for s in stages) == 100
    given = catalogue.cascade_settings(eps=0.3, budget=100, queries=499, stages=stages)
    with pytest.raises(ValueError, match="500 queries per image, more than the budget 499"):
        given.stages_for(10)
    with pytest.raises(ValueError, match="queries is strongest's setting"):
        catalogue.cascade_settings("autoattack", eps=0.3, queries=10)
    with pytest.raises(ValueError, match="queries"):
        catalogue.cascade_settings(eps=0.3, queries=0)
