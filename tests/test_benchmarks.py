"""Smoke test of the benchmark suite: minimal sizes, structure only (never timings); the authors'
baseline computes the paper's BLOB direction."""
import json

import numpy as np
import pytest

from benchmarks import authors

from benchmarks import run as bench
from daa_tf import particles

SMOKE = ["--random", "--batch", "8", "--particles", "4", "--steps", "2", "--repeats", "1", "--point-repeats", "1",
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
    assert [r["attack"] for r in saved["steps"]] == list(bench.STEP_ATTACKS) * 3
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
