"""Smoke tests of the benchmark suite (benchmarks/): minimal sizes, structure only (never timings),
every section including training; the authors' baseline computes the paper's BLOB direction."""
import json
import sys

import numpy as np
import pytest

from benchmarks import authors

from benchmarks import run as bench
from daa_tf import particles

SMOKE = ["--random", "--batch", "8", "--particles", "4", "--steps", "2", "--repeats", "1",
         "--point-repeats", "1",
         "--driver-examples", "16", "--driver-steps", "4", "--steps-per-round", "2",
         "--driver-repeats", "1", "--compile-attacks", "pgd", "--large-particles", "12",
         "--large-steps", "1", "--large-repeats", "1", "--tile-threshold", "8",
         "--compile-steps", "1", "--compile-repeats", "1",
         "--paper-examples", "8", "--paper-steps", "10", "--paper-repeats", "1"]


DEFAULT_SECTIONS = ["paper", "steps", "driver", "compile", "large", "groups"]


def test_sections_register_their_arguments_and_defaults():
    assert bench.parse_args([]).sections == DEFAULT_SECTIONS
    assert "training" in bench.SECTIONS and not bench.SECTIONS["training"].default
    args = bench.parse_args(["--sections", "training", "--training-block", "3",
                             "--training-contenders", "fit,bare"])
    assert args.sections == ["training"]
    assert args.training_block == 3 and args.training_contenders == ["fit", "bare"]
    assert bench.parse_args(["--sections", "training", "--model", "cifar10"]).sections == []
    with pytest.raises(SystemExit):
        bench.parse_args(["--training-contenders", "nope"])


def test_benchmark_runs_and_reports_every_section(tmp_path, capsys):
    threshold = particles.TILE_THRESHOLD
    path = tmp_path / "bench.json"
    results = bench.main(SMOKE + ["--json", str(path)])
    printed = capsys.readouterr().out
    assert particles.TILE_THRESHOLD == threshold  # the override does not leak

    saved = json.loads(path.read_text())
    assert set(saved) == {"meta", *DEFAULT_SECTIONS}  # not training: it is not a default one
    assert saved["meta"]["tensorflow"] and saved["meta"]["command"].startswith("python -m")
    for section in DEFAULT_SECTIONS:
        keys = [key for key, _, _ in bench.SECTIONS[section].columns]
        assert saved[section], section
        for row in saved[section]:
            optional = {"vs_groups", "tiled_vs_held", "peak_over_before_mb", "tracing_count",
                        "vs_floor", "vs_pgd", "of_pgd_step",
                        "xla_vs_graph", "authors_s", "vs_authors"}
            assert set(keys) - optional <= set(row)
        title = f"## {section}:"
        assert title in printed
        for _, header, _ in bench.SECTIONS[section].columns:
            assert header in printed
    assert [r["attack"] for r in saved["steps"]] == list(bench.DEFAULT_STEP_ATTACKS) * 3
    assert [r["mode"] for r in saved["steps"]] == (["trajectory"] * 5 + ["same point"] * 5
                                                   + ["rule only"] * 5)
    assert all(r["tracing_count"] == 1 for r in saved["steps"])
    assert [r["jit"] for r in saved["compile"]] == [False, True]
    assert [r["kernel"] for r in saved["large"]] == ["held", "tiled", "tiled", "held"]
    assert results["driver"][0]["attack"] == "pgd"
    paper = {r["attack"]: r for r in saved["paper"]}
    assert set(paper) == {"pgd", "daa_blob"}
    for row in paper.values():  # the authors' loops ran in their subprocess, on the same images
        assert row["runs"] == 1 and row["authors_measured_s"] > 0
        assert row["vs_authors_measured"] == row["seconds"] / row["authors_measured_s"]
        assert 0.0 <= row["authors_accuracy"] <= 1.0


def test_json_to_stdout_keeps_the_tables_apart(capsys):
    bench.main(SMOKE + ["--sections", "steps", "--attacks", "floor,pgd", "--json", "-"])
    captured = capsys.readouterr()
    assert [r["attack"] for r in json.loads(captured.out)["steps"]] == ["floor", "pgd"] * 3
    assert "## steps:" in captured.err


def test_authors_baseline_computes_the_blob_direction_of_algorithms_md():
    from tests.numpy_reference import blob_terms
    rng = np.random.default_rng(3)
    for m in (5, 8):
        x = rng.uniform(0, 1, (m, 784))
        g = rng.normal(0, 1, (m, 784))
        np.testing.assert_allclose(authors.blob_direction(g, x), blob_terms(g, x, 1.1)[0],
                                   rtol=1e-9, atol=1e-12)


def _strength_context(argv):
    """The strength section's context on a random MNIST net: 20 random images labelled with the
    net's own predictions (clean accuracy 1) and a small eps, so that accuracies fall gradually."""
    import keras

    import daa_tf
    from benchmarks.common import SETTINGS, Context, build_model, load_data
    args = bench.parse_args(["--random", "--particles", "4", "--sections", "strength"] + argv)
    keras.utils.set_random_seed(0)
    model, _ = build_model("mnist", True)
    x, _, _ = load_data("mnist", 20, True)
    y = daa_tf.evaluate(model, x, np.zeros(len(x), np.int32), jit_compile=False)[0]
    y = y.astype(np.int32)
    settings = dict(SETTINGS["mnist"], eps=0.02, step_size=0.005)
    return Context(args=args, model=model, model_name="mnist", x=x, y=y, x_all=x, y_all=y,
                   settings=settings, jit=False)


def test_art_square_rows_count_queries_and_pass_the_checks():
    """ART's SquareAttack as a peer row (benchmarks/strength_art.py), when ART is installed: one
    row per query budget, its queries counted from the estimator's predictions, its output
    checked and scored like ours."""
    pytest.importorskip("art")
    from benchmarks import strength, strength_art

    ctx = _strength_context(["--strength-examples", "20"])
    box = dict(eps=0.02, clip_min=0.0, clip_max=1.0)
    checked = []

    def check(name, x_adv, x, **kw):
        checked.append(name)
        return strength.check_adversarial(name, x_adv, x, **kw)

    rows = strength_art.rows("art_square", ctx.model, ctx.x, ctx.y, box, [20], [10, 30], 0, 10,
                             check, lambda x_adv, y: strength._accuracy(ctx, x_adv, y))
    assert [r["budget"] for r in rows] == ["10 queries", "30 queries"] and checked == [
        "art_square"] * 2
    for row, queries in zip(rows, (10, 30)):
        assert 0.0 <= row["accuracy"] <= 1.0 and row["gradients"] == 0.0
        # ART predicts a few times per iteration (candidates, margins, success), so its count
        # is of the order of the budget, not equal to it
        assert 1.0 <= row["queries"] <= 4 * queries + 4
    assert rows[1]["queries"] > rows[0]["queries"]
    with pytest.raises(ValueError, match="unknown contender"):
        strength_art.rows("art_fab", ctx.model, ctx.x, ctx.y, box, [20], [10], 0, 10, check,
                          lambda x_adv, y: 1.0)


def test_strength_section_reads_budgets_cumulatively():
    import importlib.util

    import daa_tf
    from benchmarks import strength
    art = importlib.util.find_spec("art") is not None
    contenders = ["pgd", "daa_blob", "strongest"] + (["art_apgd_ce"] if art else [])
    ctx = _strength_context(["--strength-examples", "20", "--strength-budgets", "40,20",
                             "--strength-restart-steps", "10",
                             "--strength-contenders", ",".join(contenders)])
    assert ctx.args.strength_budgets == [20, 40]
    rows = bench.SECTIONS["strength"].run(ctx)
    assert rows[0]["contender"] == "clean" and rows[0]["accuracy"] == 1.0
    assert [(r["contender"], r["budget"]) for r in rows[1:]] == [
        (c, b) for c in contenders for b in (20, 40)]
    acc = {(r["contender"], r["budget"]): r["accuracy"] for r in rows}
    for row in rows[1:]:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["examples"] == 20
        assert 0.0 < row["gradients"] <= row["budget"] + 1e-9, row
        assert row["seconds"] > 0
    for name in ("pgd", "daa_blob"):  # restart-read: cumulative, so never rising with budget
        assert acc[name, 40] <= acc[name, 20] <= 1.0
    assert acc["pgd", 20] < 1.0  # the attacks do bite at this eps
    assert [r["gradients"] for r in rows if r["contender"] == "daa_blob"] == [20, 40]
    # DAA extended restart by restart equals one uninterrupted run of 4 restarts (merged set)
    whole = daa_tf.run(ctx.model, ctx.x_all, ctx.y_all, "daa_blob", restarts=4, steps=10,
                       step_size=0.005, eps=0.02, particles=4, seed=0, verbose=0,
                       jit_compile=False)
    assert acc["daa_blob", 40] == whole.accuracy
    assert min(whole.restart_accuracies) >= whole.accuracy  # per restart, not cumulative
    top = [r for r in rows if r["contender"] == "strongest"][-1]
    from daa_tf import catalogue
    stages = len(catalogue.default_stages(40))
    assert top["runs"] == f"{stages} stage" + ("s" if stages > 1 else "")
    assert top["reach_stage"] is not None
    table = bench.format_table("strength", rows)
    assert table.startswith("## strength:")
    for _, header, _ in bench.SECTIONS["strength"].columns:
        assert header in table
    for name in contenders:
        assert name in table
    with pytest.raises(RuntimeError, match="L-inf"):
        strength.check_adversarial("x", ctx.x_all + 0.03, ctx.x_all, 0.02, -1.0, 2.0)


def test_strength_section_has_autoattacks_rows(monkeypatch):
    """apgd_t and fab_t per gradient budget, square per query budget, autoattack once (its stages
    shortened here): accuracies of real runs, the query rows spending no gradients."""
    from daa_tf import stages

    monkeypatch.setattr(stages, "_AUTOATTACK", {"standard": (
        ("apgd", {"loss": "xent", "steps": 4}, 1), ("apgd_t", {"steps": 2}, 1),
        ("fab_t", {"steps": 2}, 1), ("square", {"steps": 30}, 1))})
    ctx = _strength_context(["--strength-examples", "20", "--strength-budgets", "18",
                             "--strength-restart-steps", "18",
                             "--strength-queries", "30,10", "--strength-contenders",
                             "apgd_t,fab_t,square,autoattack"])
    rows = bench.SECTIONS["strength"].run(ctx)
    assert [(r["contender"], r["budget"]) for r in rows[1:]] == [
        ("apgd_t", 18), ("fab_t", 18), ("square", "10 queries"), ("square", "30 queries"),
        ("autoattack", 4 + 9 * 2 + 9 * 2)]
    acc = {(r["contender"], r["budget"]): r for r in rows}
    assert acc["apgd_t", 18]["runs"] == "9 targets x 2"
    assert 0 < acc["apgd_t", 18]["gradients"] <= 18
    assert acc["square", "30 queries"]["gradients"] == 0
    assert acc["square", "30 queries"]["accuracy"] <= acc["square", "10 queries"]["accuracy"]
    assert 0 < acc["square", "30 queries"]["queries"] <= 30
    auto = rows[-1]
    assert len(auto["stage_accuracies"]) == 4 and auto["accuracy"] == auto["stage_accuracies"][-1]
    assert min(r["accuracy"] for r in rows[1:]) < 1.0  # the attacks bite at this eps
    assert all(r["seconds"] > 0 for r in rows[1:])
    ctx = _strength_context(["--strength-budgets", "8", "--strength-restart-steps", "8",
                             "--strength-contenders", "fab_t"])
    with pytest.raises(ValueError, match="fab_t need budgets of at least 9"):
        bench.SECTIONS["strength"].run(ctx)


def test_strength_arguments():
    args = bench.parse_args(["--sections", "strength"])
    assert args.strength_budgets == [100, 500, 1000] and args.strength_examples == 1000
    assert not bench.SECTIONS["strength"].default and "strength" not in DEFAULT_SECTIONS
    with pytest.raises(SystemExit):
        bench.parse_args(["--strength-contenders", "pgd,nope"])
    ctx = _strength_context(["--strength-budgets", "15", "--strength-restart-steps", "10"])
    with pytest.raises(ValueError, match="multiples"):
        bench.SECTIONS["strength"].run(ctx)


def _steps_context(argv):
    """The steps section's context on a random MNIST net and 8 random images (2 steps, 1 repeat)."""
    import keras

    from benchmarks.common import SETTINGS, Context, build_model, load_data
    args = bench.parse_args(["--random", "--sections", "steps", "--batch", "8", "--steps", "2",
                             "--repeats", "1", "--point-repeats", "1"] + argv)
    keras.utils.set_random_seed(0)
    model, _ = build_model("mnist", True)
    x, y, _ = load_data("mnist", 8, True)
    return Context(args=args, model=model, model_name="mnist", x=x, y=y, x_all=x, y_all=y,
                   settings=SETTINGS["mnist"], jit=False)


def test_steps_section_times_apgd_multitargeted_and_art_pgd():
    # no capsys here: importing ART reconfigures logging around the captured streams
    import importlib.util

    import daa_tf
    from benchmarks.runners import attack_runner
    art = importlib.util.find_spec("art") is not None
    names = ["floor", "pgd", "apgd", "multitargeted"] + (["art_pgd"] if art else [])
    ctx = _steps_context(["--attacks", ",".join(names)])
    rows = bench.SECTIONS["steps"].run(ctx)
    assert [(r["mode"], r["attack"]) for r in rows] == (
        [("trajectory", n) for n in names]
        + [("same point", "floor"), ("same point", "pgd")]  # best iterates: no one-step call
        + [("rule only", n) for n in names if n != "art_pgd"])
    for row in rows:
        assert row["ms_per_step"] > 0 and row["image_steps_per_s"] > 0, row
        if row["mode"] == "rule only":
            assert row["of_pgd_step"] > 0 and row["vs_pgd"] is None
        else:
            assert row["vs_pgd"] > 0 and row["vs_floor"] > 0
        assert row["tracing_count"] == (None if row["attack"] == "art_pgd" else 1)
    table = bench.format_table("steps", rows)
    for name in names:
        assert name in table
    # the timed loops are the catalogue's: APGD, and MultiTargeted's run toward its first target
    s, (x, y) = ctx.settings, (ctx.x, ctx.y)
    run, _, cfg = attack_runner(ctx.model, "multitargeted", x, y, 2, 4, False, s)
    assert cfg.settings.loss == "margin" and cfg.settings.step_size == 2 * s["eps"]
    one_target = daa_tf.multitargeted(ctx.model, x, y, eps=s["eps"], steps=2, targets=1,
                                      seed=0, jit_compile=False)
    np.testing.assert_array_equal(run(), one_target.numpy())
    run, _, _ = attack_runner(ctx.model, "apgd", x, y, 2, 4, False, s)
    np.testing.assert_array_equal(run(), daa_tf.apgd(ctx.model, x, y, eps=s["eps"], steps=2,
                                                     seed=0, jit_compile=False).numpy())


def test_steps_section_skips_art_pgd_without_art(monkeypatch, capsys):
    for name in ("art", "art.attacks.evasion", "art.estimators.classification"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails: ART is never imported here
    ctx = _steps_context(["--attacks", "pgd,art_pgd", "--point-repeats", "0"])
    rows = bench.SECTIONS["steps"].run(ctx)
    assert [(r["mode"], r["attack"]) for r in rows] == [("trajectory", "pgd"), ("rule only", "pgd")]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["steps: art_pgd skipped: art is not importable "
                   "(pip install adversarial-robustness-toolbox)"]


def test_step_attack_names():
    assert bench.parse_args([]).attacks == list(bench.DEFAULT_STEP_ATTACKS)
    args = bench.parse_args(["--attacks", "apgd,multitargeted,art_pgd",
                             "--compile-attacks", "apgd,multitargeted"])
    assert args.attacks == ["apgd", "multitargeted", "art_pgd"]
    with pytest.raises(SystemExit):  # a peer has no compiled loop
        bench.parse_args(["--compile-attacks", "art_pgd"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--attacks", "nope"])


def test_contender_lists_and_the_art_helpers(monkeypatch):
    import argparse
    import os
    import types

    from benchmarks import common

    parse = common.contender_list(("a", "b"))
    assert parse(" b, a,,") == ["b", "a"] and parse("") == []
    with pytest.raises(argparse.ArgumentTypeError,
                       match=r"unknown contenders \['c'\]; known: \['a', 'b'\]"):
        parse("a,c")
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    for name in [m for m in sys.modules if m == "art" or m.startswith("art.")] + ["art"]:
        monkeypatch.setitem(sys.modules, name, None)  # not importable, even once imported
    assert common.import_art("art.attacks.evasion.ProjectedGradientDescent") is None
    assert os.environ["TQDM_DISABLE"] == "1"  # set before tqdm could load with ART

    made = {}

    class Classifier:  # records what ART's TensorFlowV2Classifier would be given
        def __init__(self, model, **kwargs):
            made.update(kwargs, model=model)

    fake = {"art": types.ModuleType("art"),
            "art.estimators": types.ModuleType("art.estimators"),
            "art.estimators.classification": types.ModuleType("art.estimators.classification"),
            "art.attacks": types.ModuleType("art.attacks"),
            "art.attacks.evasion": types.ModuleType("art.attacks.evasion")}
    fake["art.estimators.classification"].TensorFlowV2Classifier = Classifier
    fake["art.attacks.evasion"].ProjectedGradientDescent = "PGD class"
    for name, module in fake.items():
        monkeypatch.setitem(sys.modules, name, module)
    assert common.import_art("art.attacks.evasion.ProjectedGradientDescent") == "PGD class"
    common.art_classifier("net", 10, np.zeros((28, 28, 1)).shape, (0.0, 1.0), optimizer="adam")
    loss = made.pop("loss_object")
    assert made == {"model": "net", "nb_classes": 10, "input_shape": (28, 28, 1),
                    "clip_values": (0.0, 1.0), "optimizer": "adam"}
    assert loss.get_config()["from_logits"] is True


def test_training_section_runs_and_reports(shared, tmp_path, capsys):
    """``python -m benchmarks.run --sections training`` at minimal sizes: structure only, never
    timings (its outcome part trains on the shared MNIST)."""
    path = tmp_path / "training.json"
    bench.main(["--sections", "training", "--batch", "4", "--training-batch", "4",
                "--training-steps", "1", "--training-block", "1", "--training-repeats", "1",
                "--training-contenders", "bare,fit", "--training-outcome-steps", "2",
                "--training-eval-examples", "8", "--training-eval-steps", "1",
                "--json", str(path)])
    saved = json.loads(path.read_text())
    assert set(saved) == {"meta", "training"}
    assert saved["meta"]["command"].startswith("python -m benchmarks.run --sections training")
    rows = saved["training"]
    assert [(row["part"], row["contender"]) for row in rows] == [
        ("speed", "bare"), ("speed", "fit"), ("outcome", "fit")]
    speed, outcome = rows[:2], rows[2]
    assert speed[0]["vs_bare"] == 1.0 and speed[1]["s_per_step"] > 0
    for row in speed:
        assert row["batch"] == 4 and row["steps"] == 1 and row["eps"] == 0.3
        assert row["cpu_s_per_step"] > 0 and len(row["repeats_s_per_step"]) == 1
    assert outcome["train_steps"] == 2 and outcome["test_examples"] == 8
    assert 0 <= outcome["pgd_accuracy"] <= 1 and 0 <= outcome["natural_accuracy"] <= 1
    printed = capsys.readouterr().out
    assert "## training:" in printed
    for _, header, _ in bench.SECTIONS["training"].columns:
        assert header in printed
