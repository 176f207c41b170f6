"""Reproduce the paper's comparison: every attack, both losses, one report.

    python -m challenges.report --challenge=mnist --model_dir=models/adv_trained \\
        --data_dir=MNIST_data --out=report/ --num_examples=500 --steps=40 --restarts=1

Runs Rand+FGSM, PGD, momentum PGD, DAA-BLOB and DAA-DGF (or any attacks of the catalogue, e.g.
``--attacks=pgd,daa_blob,apgd,multitargeted,strongest``) with the xent and CW losses through the
driver (:func:`daa_tf.run`, Algorithm 1 with restarts) and writes to ``--out``:

- ``table.md``: accuracy per attack (rows) and loss (columns) as in the paper's table, with
  McNemar's exact test of each DAA variant (and each stronger attack) against PGD on the same
  examples, the settings and the seconds per attack. The ``strongest`` cascade chooses its
  stages' losses: it runs once (``--steps`` gradients per image and restart) and fills every
  column;
- ``results.json``: every figure of the report (and the settings that made it);
- ``accuracy_vs_eps.png``: accuracy over the ``--eps_grid``, one curve per attack and loss;
- ``examples.png``: natural images, PGD and DAA adversarials and their perturbations, for
  examples DAA fools and PGD does not.

The figures need matplotlib (``pip install .[report]``); without it the table and JSON are still
written and the command says how to get the pictures.

Resumable: each attack's result is saved under ``out/attacks/`` and ``out/eps_grid/`` as soon as
it completes, atomically; ``--resume`` skips the finished ones (refusing results made with other
settings) and continues an interrupted attack from its last completed restart.

Modules: :mod:`~challenges.report.settings` (what to run), :mod:`~challenges.report.runs`
(running, saving, resuming), :mod:`~challenges.report.tables` (Markdown),
:mod:`~challenges.report.figures` and :mod:`~challenges.report.plots` (PNG), and
:mod:`~challenges.report.__main__` (the command line).
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Dict, List, Optional

import numpy as np

from daa_tf import files

from challenges import submission
from challenges.report import figures as report_figures
from challenges.report import plots, runs, tables
from challenges.report.runs import Log, Score, Session
from challenges.report.settings import PAPER_ATTACKS, ReportConfig, ReportError

RESULTS_FILE = "results.json"
TABLE_FILE = "table.md"
REPORT_FORMAT_VERSION = 2

__all__ = ["make_report", "ReportConfig", "ReportError", "PAPER_ATTACKS", "RESULTS_FILE",
           "TABLE_FILE"]

Runs = Dict[str, Dict[str, Any]]


def make_report(model: Any, x: np.ndarray, y: np.ndarray, cfg: ReportConfig, out: str, *,
                resume: bool = False, verbose: int = 1, log: Log = print,
                info: Optional[Dict[str, Any]] = None, figures: bool = True,
                score: Optional[Score] = None, fmt: Optional[submission.Format] = None,
                run_kwargs: Optional[Dict[str, Any]] = None, writer: bool = True
                ) -> Dict[str, Any]:
    """Runs every attack of ``cfg`` on ``(x, y)`` and writes the report to ``out``.

    ``info``: extra entries for ``results.json`` (challenge, model, data, the command).
    ``figures=False`` skips the PNGs. ``score(x, y) -> predictions`` scores every set (default
    :func:`daa_tf.evaluate`). ``fmt``: the challenge's format, whose checks every adversarial set
    must pass. ``run_kwargs``: extra arguments of :func:`daa_tf.run`. ``writer=False`` computes
    everything but writes no file (non-chief workers of a multi-worker run). Returns the content
    of ``results.json``.
    """
    import daa_tf

    started = time.perf_counter()
    session = _open_session(model, x, y, cfg, out, resume, verbose, log, score, fmt, run_kwargs,
                            writer)
    clean_accuracy = _clean_accuracy(session)
    main_runs = _run_table(session)
    results = {
        "format_version": REPORT_FORMAT_VERSION, "daa_tf_version": daa_tf.__version__,
        **(info or {}),
        "settings": cfg.as_dict(), "num_examples": int(len(session.x)),
        "clean_accuracy": clean_accuracy,
        "attacks": {key: runs.entry(saved, runs.result_file(out, saved["meta"]["key"]), out)
                    for key, saved in main_runs.items()},
        "mcnemar": _mcnemar_tests(cfg, main_runs),
        "eps_grid": _run_eps_grid(session, main_runs, clean_accuracy),
        "examples": _examples(cfg, main_runs, session.y),
        "figures": {},
    }
    results["attack_seconds"] = _attack_seconds(results)
    results["invocation_seconds"] = time.perf_counter() - started
    if writer:
        _write_outputs(results, main_runs, session, figures)
    return results


def _open_session(model: Any, x: np.ndarray, y: np.ndarray, cfg: ReportConfig, out: str,
                  resume: bool, verbose: int, log: Log, score: Optional[Score],
                  fmt: Optional[submission.Format], run_kwargs: Optional[Dict[str, Any]],
                  writer: bool) -> Session:
    import daa_tf

    if score is None:
        def score(x_: np.ndarray, y_: np.ndarray) -> np.ndarray:
            return daa_tf.evaluate(model, x_, y_, jit_compile=cfg.jit_compile)[0]
    os.makedirs(out, exist_ok=True)
    return Session(model=model, x=np.asarray(x, np.float32), y=np.asarray(y).astype(np.int64),
                   cfg=cfg, out=out, resume=resume, verbose=verbose, log=log, score=score,
                   fmt=fmt, run_kwargs=dict(run_kwargs or {}), writer=writer)


def _clean_accuracy(session: Session) -> float:
    accuracy = float(np.mean(np.asarray(session.score(session.x, session.y)) == session.y))
    session.log(f"[report] {len(session.x)} examples, clean accuracy {100 * accuracy:.2f}%")
    return accuracy


def _run_table(session: Session) -> Runs:
    """Every (attack, loss) of the table at the report's eps, column by column."""
    return {f"{attack}/{loss}": runs.run_attack(session, attack, loss)
            for loss in session.cfg.losses for attack in session.cfg.attacks}


# The paper's baselines: the rows the others are tested against PGD without.
BASELINES = ("rand_fgsm", "fgsm", "pgd", "momentum_pgd")


def _mcnemar_tests(cfg: ReportConfig, main_runs: Runs) -> Dict[str, Dict[str, Any]]:
    """McNemar's exact test against PGD with the same loss of every row but the baselines
    (the DAA rows and the stronger attacks)."""
    from daa_tf import stats

    tests: Dict[str, Dict[str, Any]] = {}
    if "pgd" not in cfg.attacks:
        return tests
    for loss in cfg.losses:
        for attack in cfg.attacks:
            if attack not in BASELINES:  # DAA and the stronger attacks
                test = stats.mcnemar(main_runs[f"pgd/{loss}"]["correct"],
                                     main_runs[f"{attack}/{loss}"]["correct"])
                tests[f"{attack}/{loss}"] = {"versus": f"pgd/{loss}", **test.as_dict()}
    return tests


def _grid_point(session: Session, main_runs: Runs, key: str, eps: float,
                clean_accuracy: float) -> Dict[str, Any]:
    """One point of a curve: the clean accuracy at eps 0, the main run at the report's eps,
    else a run of its own."""
    if eps == 0.0:  # no perturbation: the clean accuracy
        return {"accuracy": clean_accuracy, "seconds": 0.0, "file": None}
    if math.isclose(eps, session.cfg.eps, rel_tol=1e-9) and key in main_runs:
        saved = main_runs[key]
        path = runs.result_file(session.out, saved["meta"]["key"])
    else:
        attack, loss = key.split("/")
        saved = runs.run_attack(session, attack, loss, eps)
        path = runs.result_file(session.out, saved["meta"]["key"], eps)
    return {"accuracy": float(saved["meta"]["accuracy"]),
            "seconds": float(saved["meta"]["seconds"]), "file": runs.relative(path, session.out)}


def _run_eps_grid(session: Session, main_runs: Runs, clean_accuracy: float) -> Dict[str, Any]:
    """The accuracy-vs-eps curves: every attack with each of ``eps_grid_losses``."""
    cfg = session.cfg
    grid_eps = [float(e) for e in cfg.eps_grid]
    curves: Dict[str, List[float]] = {}
    seconds: Dict[str, List[float]] = {}
    grid_files: Dict[str, List[Optional[str]]] = {}
    for loss in cfg.eps_grid_losses:
        for attack in cfg.attacks:
            key = f"{attack}/{loss}"
            points = [_grid_point(session, main_runs, key, e, clean_accuracy) for e in grid_eps]
            curves[key] = [p["accuracy"] for p in points]
            seconds[key] = [p["seconds"] for p in points]
            grid_files[key] = [p["file"] for p in points]
    return {"eps": grid_eps, "losses": list(cfg.eps_grid_losses), "accuracy": curves,
            "seconds": seconds, "files": grid_files}


def _examples(cfg: ReportConfig, main_runs: Runs, y: np.ndarray) -> Dict[str, Any]:
    """The examples ``examples.png`` shows: those the chosen DAA fools and PGD does not."""
    keys = (f"pgd/{cfg.examples_loss}", f"{cfg.examples_daa}/{cfg.examples_loss}")
    indices: List[int] = []
    if all(k in main_runs for k in keys):
        indices = report_figures.pick_examples(main_runs[keys[0]], main_runs[keys[1]],
                                               plots.EXAMPLES_ROWS)
    return {"pgd": keys[0], "daa": keys[1], "indices": indices,
            "labels": [int(y[i]) for i in indices]}


def _attack_seconds(results: Dict[str, Any]) -> float:
    """Wall time of every attack run for the report (grid points reusing a main run once)."""
    grid = results["eps_grid"]
    own_grid_runs = (sec for key, secs in grid["seconds"].items()
                     for sec, f in zip(secs, grid["files"][key])
                     if f and f.startswith(runs.GRID_DIR))
    return float(sum(e["seconds"] for e in results["attacks"].values()) + sum(own_grid_runs))


def write_json(path: str, data: Any) -> None:
    """Atomically writes ``data`` as indented JSON (NumPy scalars and arrays as numbers)."""
    def default(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")
    text = json.dumps(data, indent=2, default=default) + "\n"
    files.atomic_write(path, lambda f: f.write(text), binary=False)


def _write_report(results: Dict[str, Any], out: str) -> None:
    write_json(os.path.join(out, RESULTS_FILE), results)
    table = tables.format_table(results)
    files.atomic_write(os.path.join(out, TABLE_FILE), lambda f: f.write(table), binary=False)


def _figures_note(figures: bool) -> str:
    if not figures:
        return "figures not requested (--nofigures)"
    if not plots.matplotlib_available():
        return plots.INSTALL_HINT
    return "figures not drawn (the drawing failed)"


def _write_outputs(results: Dict[str, Any], main_runs: Runs, session: Session,
                   figures: bool) -> None:
    """table.md and results.json first (a plotting failure keeps them), then the figures."""
    out, cfg = session.out, session.cfg
    state_dir = os.path.join(out, runs.STATE_DIR)
    if os.path.isdir(state_dir) and not os.listdir(state_dir):
        os.rmdir(state_dir)
    for name in (report_figures.ACCURACY_PLOT, report_figures.EXAMPLES_PLOT):
        if os.path.exists(os.path.join(out, name)):  # never leave an earlier run's figure
            os.remove(os.path.join(out, name))
    results["figures_note"] = _figures_note(figures)
    _write_report(results, out)
    if figures and plots.matplotlib_available():
        results["figures"] = report_figures.draw_figures(results, main_runs, session.x,
                                                         session.y, cfg, out,
                                                         tables.title(results))
        if results["figures"]:
            del results["figures_note"]
        else:
            results["figures_note"] = ("nothing to draw: no --eps_grid, and no PGD and "
                                       f"{cfg.examples_daa} runs with {cfg.examples_loss}")
        _write_report(results, out)
    session.log(f"[report] wrote {os.path.join(out, TABLE_FILE)} and "
                f"{os.path.join(out, RESULTS_FILE)}")
    if results["figures"]:
        session.log("[report] wrote " + ", ".join(os.path.join(out, f["file"])
                                                   for f in results["figures"].values()))
    else:
        session.log(f"[report] no figures: {results['figures_note']}")
