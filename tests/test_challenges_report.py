"""The report (challenges.report): the paper's table, McNemar, results.json, figures, resume.

The quick report runs the real CLI on the shared MNIST model (100 examples, 5 steps); the
synthetic tests use a tiny linear model, so that the table/JSON path also runs where neither the
shared fixtures nor matplotlib are installed (CI).
"""
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from challenges import report
from challenges.report import plots
from daa_tf import catalogue
from tests.helpers import REPO_ROOT

ATTACK_LABELS = {name: catalogue.label(name) for name in catalogue.RUNNABLE}
KEYS = [f"{a}/{l}" for l in ("xent", "cw") for a in
        ("rand_fgsm", "pgd", "momentum_pgd", "daa_blob", "daa_dgf")]
QUICK = ["--challenge=mnist", "--num_examples=100", "--steps=5", "--step_size=0.05",
         "--restarts=1", "--particles=50", "--eps_grid=0.2,0.3", "--verbose=0"]
HAVE_MPL = True
try:
    import matplotlib  # noqa: F401
except ImportError:
    HAVE_MPL = False

# Runs a module with matplotlib made unimportable (as if it were not installed).
NO_MPL_LAUNCHER = ("import runpy, sys\n"
                   "for name in [m for m in sys.modules if m.split('.')[0] == 'matplotlib']:\n"
                   "    del sys.modules[name]\n"
                   "sys.modules['matplotlib'] = None\n"
                   "sys.argv = ['report'] + sys.argv[1:]\n"
                   "runpy.run_module('challenges.report', run_name='__main__', alter_sys=True)\n")


def _cli(args, no_matplotlib=False):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    head = ["-c", NO_MPL_LAUNCHER] if no_matplotlib else ["-m", "challenges.report"]
    return subprocess.run([sys.executable, *head, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def _png_size(path):
    """Width and height from the IHDR chunk, checking the signature, the CRC and IEND."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG signature"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    (crc,) = struct.unpack(">I", data[29:33])
    assert zlib.crc32(data[12:29]) == crc, f"{path}: IHDR CRC mismatch"
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82", f"{path}: no IEND chunk"
    return struct.unpack(">II", data[16:24])


def _main_table(text):
    """{attack label: [cells]} of the paper's table (the first table of table.md)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| attack | xent"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def _mcnemar_rows(text):
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\| (DAA-\w+) vs PGD \| (xent|CW) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| "
                     r"([^|]+) \|", line)
        if m:
            rows[(m.group(1), m.group(2))] = m.groups()[2:]
    return rows


def _p_reference(b, c):
    n, k = b + c, min(b, c)
    return 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


# ------------------------------------------------------------------- the shared MNIST model


@pytest.fixture(scope="module")
def quick(shared, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    proc = _cli([*QUICK, f"--model_dir={shared / 'models/mnist/adv_trained'}",
                 f"--data_dir={shared / 'data/mnist'}", f"--out={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


@pytest.fixture(scope="module")
def mnist(shared):
    from daa_tf.data import load_mnist
    from daa_tf.models import load_madry_mnist

    x, y = load_mnist(data_dir=shared / "data/mnist", num_examples=100)
    return load_madry_mnist(shared / "models/mnist/adv_trained"), x, y


def test_quick_report_writes_every_file(quick):
    out, proc = quick
    results = json.loads((out / "results.json").read_text())
    assert (out / "table.md").is_file()
    assert sorted(results["attacks"]) == sorted(KEYS)
    for key in KEYS:
        assert (out / results["attacks"][key]["file"]).is_file()
    for key, files in results["eps_grid"]["files"].items():
        assert len(files) == 2 and (out / files[0]).is_file()     # eps 0.2: its own run
        assert files[1] == results["attacks"][key]["file"]        # eps 0.3: the main run's
    assert not (out / "state").exists()                          # no leftover driver state
    assert results["challenge"] == "mnist" and results["num_examples"] == 100
    assert results["settings"]["steps"] == 5 and results["settings"]["eps"] == 0.3
    assert "python -m challenges.report" in results["command"]
    if HAVE_MPL:
        assert _png_size(out / "accuracy_vs_eps.png") == plots.ACCURACY_SIZE == (700, 450)
        assert _png_size(out / "examples.png") == plots.EXAMPLES_SIZE == (800, 700)
        assert results["figures"]["examples"] == {"file": "examples.png", "width": 800,
                                                  "height": 700}
        assert "figures_note" not in results
    else:
        assert not list(out.glob("*.png"))
        assert "pip install" in proc.stderr and "pip install" in results["figures_note"]


def test_table_numbers_equal_results_json(quick):
    out, _ = quick
    results = json.loads((out / "results.json").read_text())
    text = (out / "table.md").read_text()
    rows = _main_table(text)
    assert list(rows) == ["Rand+FGSM", "PGD", "momentum PGD", "DAA-BLOB", "DAA-DGF"]
    for key in KEYS:
        attack, loss = key.split("/")
        entry = results["attacks"][key]
        row = rows[ATTACK_LABELS[attack]]
        column = catalogue.LOSS_LABELS[loss]
        assert float(row[column].rstrip("%")) == pytest.approx(100 * entry["accuracy"], abs=5e-3)
        assert row[column] == f"{100 * entry['accuracy']:.2f}%"
        assert float(row[f"seconds, {column}"]) == pytest.approx(entry["seconds"], abs=0.05)
        p_cell = row[f"McNemar p vs PGD, {column}"]
        if attack.startswith("daa"):
            assert float(p_cell) == pytest.approx(results["mcnemar"][key]["p_value"], rel=5e-3)
        else:
            assert p_cell == "-"
    mc = _mcnemar_rows(text)
    assert len(mc) == 4
    for key, t in results["mcnemar"].items():
        attack, loss = key.split("/")
        cells = mc[(ATTACK_LABELS[attack], catalogue.LOSS_LABELS[loss])]
        assert [int(v) for v in cells[:4]] == [t["both_correct"], t["b"], t["c"],
                                               t["both_fooled"]]
        assert float(cells[4]) == pytest.approx(t["p_value"], rel=5e-3)
    assert f"Clean accuracy: {100 * results['clean_accuracy']:.2f}%" in text
    for key, accs in results["eps_grid"]["accuracy"].items():
        attack, _ = key.split("/")
        assert f"| {ATTACK_LABELS[attack]} | xent | " + " | ".join(
            f"{100 * a:.2f}%" for a in accs) + " |" in text


def test_saved_sets_give_the_reported_numbers(quick, mnist):
    """Evaluates every saved adversarial set with the model directly (no report code)."""
    out, _ = quick
    model, x, y = mnist
    results = json.loads((out / "results.json").read_text())
    clean = np.argmax(np.asarray(model(x, training=False)), axis=1)
    assert np.mean(clean == y) == results["clean_accuracy"]
    correct = {}
    for key in KEYS:
        with np.load(out / results["attacks"][key]["file"]) as saved:
            x_adv, saved_correct = saved["x_adv"], saved["correct"]
        assert x_adv.shape == x.shape and x_adv.dtype == np.float32
        assert np.abs(x_adv - x).max() <= 0.3 + 1e-6
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
        pred = np.argmax(np.asarray(model(x_adv, training=False)), axis=1)
        correct[key] = pred == y
        assert np.array_equal(correct[key], saved_correct)
        assert np.mean(correct[key]) == results["attacks"][key]["accuracy"]
    # McNemar recomputed from the outcomes: b = only DAA fools, c = only PGD fools.
    for key, t in results["mcnemar"].items():
        loss = key.split("/")[1]
        pgd, daa = correct[f"pgd/{loss}"], correct[key]
        b, c = int(np.sum(pgd & ~daa)), int(np.sum(~pgd & daa))
        assert (t["b"], t["c"], t["n"]) == (b, c, 100)
        assert t["p_value"] == pytest.approx(_p_reference(b, c), rel=1e-12)
    # The examples shown are exactly the first ones DAA-BLOB (xent) fools and PGD does not.
    expected = np.flatnonzero(correct["pgd/xent"] & ~correct["daa_blob/xent"])[:4].tolist()
    assert results["examples"]["indices"] == expected


def test_resume_skips_finished_attacks(quick, shared, tmp_path):
    out, _ = quick
    again = tmp_path / "again"
    shutil.copytree(out, again)
    before = json.loads((out / "results.json").read_text())
    (again / "attacks" / "pgd_cw.npz").unlink()                  # as if interrupted there
    proc = _cli([*QUICK, f"--model_dir={shared / 'models/mnist/adv_trained'}",
                 f"--data_dir={shared / 'data/mnist'}", f"--out={again}", "--resume"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count(": running") == 1 and "PGD (CW): running" in proc.stderr
    assert proc.stderr.count("done before") == 14
    after = json.loads((again / "results.json").read_text())
    for key in KEYS:   # same seed, same starts: the rerun attack gives the same outcome
        assert after["attacks"][key]["accuracy"] == before["attacks"][key]["accuracy"]
    assert after["mcnemar"] == before["mcnemar"]


def test_cli_without_matplotlib_still_writes_table_and_json(quick, shared, tmp_path):
    out, _ = quick
    again = tmp_path / "nompl"
    shutil.copytree(out, again)      # with the figures of the first run, if it drew them
    (again / "table.md").unlink()
    (again / "results.json").unlink()
    proc = _cli([*QUICK, f"--model_dir={shared / 'models/mnist/adv_trained'}",
                 f"--data_dir={shared / 'data/mnist'}", f"--out={again}", "--resume"],
                no_matplotlib=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pip install" in proc.stderr and "matplotlib" in proc.stderr
    assert not list(again.glob("*.png"))   # no figure of an earlier run left to mislead
    results = json.loads((again / "results.json").read_text())
    assert results["figures"] == {} and "pip install" in results["figures_note"]
    assert "No figures:" in (again / "table.md").read_text()
    before = json.loads((out / "results.json").read_text())
    assert {k: v["accuracy"] for k, v in results["attacks"].items()} == {
        k: v["accuracy"] for k, v in before["attacks"].items()}


def test_cli_rejects_bad_settings(tmp_path):
    proc = _cli(["--attacks=pgd,bim", f"--out={tmp_path}", "--model_dir=nowhere"])
    assert proc.returncode == 1 and "unknown attacks" in proc.stderr
    proc = _cli(["--eps_grid=0.1,x", f"--out={tmp_path}"])
    assert proc.returncode == 1 and "--eps_grid" in proc.stderr
    proc = _cli([f"--out={tmp_path}", "--model_dir=nowhere", "--data_dir=nowhere"])
    assert proc.returncode == 1 and "--model_dir=nowhere" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------- a tiny synthetic model (runs everywhere)


def _tiny(classes=3):
    import keras

    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, size=(40, 16)).astype(np.float32)
    w = rng.normal(size=(16, classes)).astype(np.float32)
    y = np.argmax(x @ w, axis=1)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(classes)])
    model.layers[0].set_weights([w, np.zeros(classes, np.float32)])
    return model, x, y


def _tiny_config(**kw):
    settings = dict(eps=0.1, step_size=0.02, steps=3, particles=10, eps_grid=(0.0, 0.05, 0.1),
                    eps_grid_losses=("cw",))
    settings.update(kw)
    return report.ReportConfig(**settings)


def test_synthetic_report_table_json_and_resume(tmp_path):
    model, x, y = _tiny()
    out = str(tmp_path / "r")
    logs = []
    results = report.make_report(model, x, y, _tiny_config(), out, verbose=0, log=logs.append,
                                 info={"challenge": "toy"})
    on_disk = json.loads((tmp_path / "r" / "results.json").read_text())
    assert on_disk["attacks"] == json.loads(json.dumps(results["attacks"]))
    rows = _main_table((tmp_path / "r" / "table.md").read_text())
    for key in KEYS:
        attack, loss = key.split("/")
        cell = rows[ATTACK_LABELS[attack]][catalogue.LOSS_LABELS[loss]]
        assert cell == f"{100 * results['attacks'][key]['accuracy']:.2f}%"
        with np.load(os.path.join(out, results["attacks"][key]["file"])) as saved:
            pred = np.argmax(np.asarray(model(saved["x_adv"])), axis=1)
        assert np.mean(pred == y) == results["attacks"][key]["accuracy"]
    grid = results["eps_grid"]
    assert grid["eps"] == [0.0, 0.05, 0.1]
    for key, accs in grid["accuracy"].items():
        assert accs[0] == results["clean_accuracy"]                    # eps 0: clean
        assert accs[2] == results["attacks"][key]["accuracy"]          # eps 0.1: the main run
    assert sorted(grid["accuracy"]) == sorted(k for k in KEYS if k.endswith("/cw"))
    assert (tmp_path / "r" / "examples.png").is_file() == HAVE_MPL

    logs.clear()
    report.make_report(model, x, y, _tiny_config(), out, resume=True, verbose=0,
                       log=logs.append)
    assert not any(": running" in line for line in logs)
    with pytest.raises(report.ReportError, match="other settings"):
        report.make_report(model, x, y, _tiny_config(steps=4), out, resume=True, verbose=0,
                           log=logs.append)
    with pytest.raises(report.ReportError, match="other settings"):   # other data
        report.make_report(model, x[:30], y[:30], _tiny_config(), out, resume=True,
                           verbose=0, log=logs.append)


def test_the_stronger_attacks_and_the_cascade_are_rows(tmp_path):
    """APGD, MultiTargeted and the cascade as rows: each tested against PGD; the cascade (whose
    stages choose their losses) runs once and fills every column."""
    model, x, y = _tiny()
    logs = []
    cfg = _tiny_config(attacks=("pgd", "apgd", "multitargeted", "strongest"), steps=150,
                       eps_grid=(0.0, 0.1))
    results = report.make_report(model, x, y, cfg, str(tmp_path), verbose=0, log=logs.append)
    entries = results["attacks"]
    assert entries["strongest/cw"] == entries["strongest/xent"]
    assert entries["strongest/xent"]["file"] == "attacks/strongest_xent.npz"
    assert not (tmp_path / "attacks" / "strongest_cw.npz").exists()
    assert sum("strongest: running" in line for line in logs) == 1
    assert len(entries["strongest/xent"]["restart_accuracies"]) == 3  # 3 stages of 50
    assert entries["strongest/xent"]["accuracy"] <= entries["pgd/xent"]["accuracy"]
    assert sorted(results["mcnemar"]) == sorted(f"{a}/{l}" for a in ("apgd", "multitargeted",
                                                                      "strongest")
                                                 for l in ("xent", "cw"))
    rows = _main_table((tmp_path / "table.md").read_text())
    assert list(rows) == ["PGD", "APGD", "MultiTargeted", "strongest"]
    assert rows["strongest"]["xent"] == rows["strongest"]["CW"]
    assert results["eps_grid"]["accuracy"]["strongest/cw"] == [
        results["clean_accuracy"], entries["strongest/xent"]["accuracy"]]
    logs.clear()
    report.make_report(model, x, y, cfg, str(tmp_path), resume=True, verbose=0,
                       log=logs.append)
    assert not any(": running" in line for line in logs)


def test_autoattack_is_a_row_with_its_own_settings(tmp_path, monkeypatch):
    """``autoattack`` as a row: its version's stages (shortened here), no budget, one run with one
    restart whatever the report's restarts, filling every column, no weaker than PGD."""
    from daa_tf import stages

    short = {"standard": (("apgd", {"loss": "xent", "steps": 5}, 1), ("apgd_t", {"steps": 5}, 1),
                          ("fab_t", {"steps": 5}, 1), ("square", {"steps": 40}, 1)),
             "plus": (("apgd", {"loss": "dlr", "steps": 5}, 2),)}
    monkeypatch.setattr(stages, "_AUTOATTACK", short)
    model, x, y = _tiny(classes=10)
    cfg = _tiny_config(attacks=("pgd", "autoattack"), restarts=2, eps_grid=(),
                       autoattack_version="plus")
    assert cfg.attack_settings("autoattack", "cw").budget is None
    assert cfg.attack_settings("autoattack", "cw").version == "plus"
    assert (cfg.run_restarts("autoattack"), cfg.run_restarts("pgd")) == (1, 2)
    results = report.make_report(model, x, y, _tiny_config(attacks=("pgd", "autoattack"),
                                                           restarts=2, eps_grid=()),
                                 str(tmp_path), verbose=0, log=lambda _: None)
    entry = results["attacks"]["autoattack/xent"]
    assert entry == results["attacks"]["autoattack/cw"] and entry["restarts"] == 1
    assert entry["params"]["budget"] is None and entry["params"]["version"] == "standard"
    accuracies = entry["restart_accuracies"]
    assert len(accuracies) == 4 and accuracies == sorted(accuracies, reverse=True)
    assert entry["accuracy"] <= results["attacks"]["pgd/xent"]["accuracy"]
    with pytest.raises(report.ReportError, match="autoattack_version"):
        _tiny_config(autoattack_version="rand")


def test_report_gives_strongest_its_query_budget():
    """``queries`` (``--queries``): strongest's Square stage in the report, as in the runners;
    a saved strongest result names its default stages, so a changed sequence runs again."""
    from challenges.report.runs import _settings_record

    cfg = _tiny_config(attacks=("pgd", "strongest"), queries=300)
    settings = cfg.attack_settings("strongest", "xent")
    assert settings.queries == 300 and settings.stages_for(10)[-1].attack == "square"
    assert cfg.attack_settings("pgd", "xent").steps == cfg.steps  # other rows untouched
    record = _settings_record(settings)
    assert record["reinvests"] and record["stages"][-1][0] == "square"
    assert _settings_record(_tiny_config(attacks=("strongest",)).attack_settings(
        "strongest", "xent"))["stages"][-1][0] != "square"
    for bad in (0, 2.5):
        with pytest.raises(report.ReportError, match="queries"):
            _tiny_config(queries=bad)


def test_synthetic_report_without_matplotlib(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert not plots.matplotlib_available()
    with pytest.raises(plots.MatplotlibMissing, match="pip install"):
        plots.accuracy_vs_eps(str(tmp_path / "a.png"), [0.1], {"PGD": [0.5]})
    model, x, y = _tiny()
    logs = []
    results = report.make_report(model, x, y, _tiny_config(attacks=("pgd", "daa_blob"),
                                                           losses=("xent",), eps_grid=(0.05,),
                                                           eps_grid_losses=("xent",)),
                                 str(tmp_path), verbose=0, log=logs.append)
    assert results["figures"] == {} and "pip install" in results["figures_note"]
    assert any("pip install" in line for line in logs)
    assert not list(tmp_path.glob("*.png"))
    table = (tmp_path / "table.md").read_text()
    assert "| attack | xent | McNemar p vs PGD, xent | seconds, xent |" in table
    assert "No figures:" in table and "pip install" in table


def test_synthetic_report_with_nothing_to_compare_or_draw(tmp_path):
    model, x, y = _tiny()
    results = report.make_report(model, x, y, _tiny_config(attacks=("rand_fgsm",),
                                                           losses=("cw",), eps_grid=()),
                                 str(tmp_path), verbose=0, log=lambda message: None)
    assert results["mcnemar"] == {} and results["figures"] == {}
    assert results["figures_note"]
    table = (tmp_path / "table.md").read_text()
    assert "| attack | CW | seconds, CW |" in table and "McNemar" not in table
    assert not list(tmp_path.glob("*.png"))


def test_config_validation_and_parameters():
    with pytest.raises(report.ReportError, match="unknown attacks"):
        report.ReportConfig(eps=0.3, step_size=0.01, steps=1, attacks=("bim",))
    with pytest.raises(report.ReportError, match="unknown losses"):
        report.ReportConfig(eps=0.3, step_size=0.01, steps=1, losses=("hinge",))
    cfg = report.ReportConfig(eps=0.3, step_size=0.01, steps=7, particles=20,
                              fgsm_step_size=0.15, c={"daa_dgf": {"cw": -0.5}})
    rand = cfg.attack_settings("rand_fgsm", "xent", eps=0.2)
    assert rand.spec.one_step and rand.random_start and rand.step_size == pytest.approx(0.1)
    assert rand.steps == 1
    dgf = cfg.attack_settings("daa_dgf", "cw")
    assert (dgf.attack, dgf.c, dgf.particles, dgf.steps) == ("daa_dgf", -0.5, 20, 7)
    assert cfg.attack_settings("daa_blob", "xent").c == 1.1            # the catalogue default
    assert report.ReportConfig(eps=8, step_size=2, steps=1).attack_settings(
        "rand_fgsm", "cw").step_size == 8                               # a = eps by default


def test_figures_have_the_stated_size(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(1)
    path = plots.accuracy_vs_eps(str(tmp_path / "a.png"), [2.0, 4.0, 8.0],
                                 {"PGD (xent)": [0.6, 0.5, 0.4], "DAA-BLOB (CW)": [0.6, 0.4, 0.3]},
                                 clean_accuracy=0.7, title="t")
    assert _png_size(path) == plots.ACCURACY_SIZE == plots.png_size(path)
    # Gray flat images, RGB images in [0, 255], and no example at all: always the same size.
    x = rng.uniform(size=(2, 784))
    gray = [{"index": i, "label": 1, "pred_pgd": 1, "pred_daa": 2,
             "x_pgd": np.clip(x[i] + 0.1, 0, 1), "x_daa": np.clip(x[i] - 0.1, 0, 1)}
            for i in range(2)]
    xc = rng.uniform(0, 255, size=(6, 32, 32, 3))
    rgb = [{"index": i, "label": 1, "pred_pgd": 1, "pred_daa": 2,
            "x_pgd": np.clip(xc[i] + 8, 0, 255), "x_daa": np.clip(xc[i] - 8, 0, 255)}
           for i in range(6)]
    for name, images, rows, eps, hi in (("g", x, gray, 0.1, 1.0), ("c", xc, rgb, 8.0, 255.0),
                                        ("e", x[:0], [], 0.1, 1.0)):
        path = plots.examples(str(tmp_path / f"{name}.png"), images, rows, eps, 0.0, hi)
        assert _png_size(path) == plots.EXAMPLES_SIZE
    assert not list(tmp_path.glob(".*"))            # no temporary file left behind
    (tmp_path / "x.txt").write_text("x" * 40)
    with pytest.raises(ValueError, match="not a PNG"):
        plots.png_size(str(tmp_path / "x.txt"))
