"""Reproduce the paper's comparison: every attack, both losses, one report.

    python -m challenges.report --challenge=mnist --model_dir=models/adv_trained \\
        --data_dir=MNIST_data --out=report/ --num_examples=500 --steps=40 --restarts=1

Runs Rand+FGSM, PGD, momentum PGD, DAA-BLOB and DAA-DGF with the xent and CW losses through the
driver (:func:`daa_tf.run`, Algorithm 1 with restarts) and writes to ``--out``:

- ``table.md``: accuracy per attack (rows) and loss (columns xent / CW) as in the paper's table,
  with McNemar's exact test of each DAA variant against PGD on the same examples, the settings and
  the seconds per attack;
- ``results.json``: every figure of the report (and the settings that made it);
- ``accuracy_vs_eps.png``: accuracy over the ``--eps_grid``, one curve per attack and loss;
- ``examples.png``: natural images, PGD and DAA adversarials and their perturbations, for
  examples DAA fools and PGD does not.

The figures need matplotlib (``pip install .[report]``); without it the table and JSON are still
written and the command says how to get the pictures.

Resumable: each attack's result is saved under ``out/attacks/`` (the adversarial set, per-example
outcomes and predictions) and ``out/eps_grid/`` (per-example outcomes) as soon as it completes,
atomically; ``--resume`` skips the finished ones (refusing results made with other settings) and
continues an interrupted attack from its last completed restart (the driver's ``state_path``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from daa_tf.files import atomic_write

from challenges import submission

# (key, label): the rows of the table, in the paper's order.
ATTACKS: Tuple[Tuple[str, str], ...] = (
    ("rand_fgsm", "Rand+FGSM"),
    ("pgd", "PGD"),
    ("momentum_pgd", "momentum PGD"),
    ("daa_blob", "DAA-BLOB"),
    ("daa_dgf", "DAA-DGF"),
)
ATTACK_LABELS = dict(ATTACKS)
DAA_ATTACKS = ("daa_blob", "daa_dgf")
LOSSES: Tuple[Tuple[str, str], ...] = (("xent", "xent"), ("cw", "CW"))
LOSS_LABELS = dict(LOSSES)

RESULTS_FILE = "results.json"
TABLE_FILE = "table.md"
ACCURACY_PLOT = "accuracy_vs_eps.png"
EXAMPLES_PLOT = "examples.png"
ATTACKS_DIR = "attacks"
GRID_DIR = "eps_grid"
STATE_DIR = "state"
FORMAT_VERSION = 1

Log = Callable[[str], None]


class ReportError(RuntimeError):
    """A report cannot be made or resumed as asked; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """The settings of a report (everything but the model and the data).

    ``eps``, ``step_size``, ``fgsm_step_size`` are in pixel units of ``[clip_min, clip_max]``.
    ``fgsm_step_size`` (Rand+FGSM's one step) defaults to ``eps`` (ALGORITHMS.md); on the eps grid
    it scales with eps. ``c`` overrides the DAA constants: ``{"daa_blob": {"xent": 1.1}, ...}``
    (missing entries take the library defaults). ``eps_grid``: the eps values of the accuracy
    curve, run with the losses ``eps_grid_losses``; PGD, DAA step size and steps stay as given.
    ``examples_daa``/``examples_loss`` pick the DAA result shown against PGD in ``examples.png``.
    """

    eps: float
    step_size: float
    steps: int
    restarts: int = 1
    random_start: bool = True
    clip_min: float = 0.0
    clip_max: float = 1.0
    steps_per_round: int = 10
    particles: int = 200
    seed: int = 0
    batch_size: Optional[int] = None
    attacks: Tuple[str, ...] = tuple(key for key, _ in ATTACKS)
    losses: Tuple[str, ...] = ("xent", "cw")
    fgsm_step_size: Optional[float] = None
    c: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)
    eps_grid: Tuple[float, ...] = ()
    eps_grid_losses: Tuple[str, ...] = ("xent",)
    examples_daa: str = "daa_blob"
    examples_loss: str = "xent"
    jit_compile: Optional[bool] = None

    def __post_init__(self) -> None:
        unknown = [a for a in self.attacks if a not in ATTACK_LABELS]
        if unknown or not self.attacks:
            raise ReportError(f"unknown attacks {unknown}: choose from "
                              f"{', '.join(ATTACK_LABELS)}")
        bad = [l for l in (*self.losses, *self.eps_grid_losses) if l not in LOSS_LABELS]
        if bad or not self.losses:
            raise ReportError(f"unknown losses {bad}: choose from {', '.join(LOSS_LABELS)}")
        if len(set(self.attacks)) != len(self.attacks) or len(set(self.losses)) != len(self.losses):
            raise ReportError("attacks and losses must not repeat")
        if any(not math.isfinite(e) or e < 0 for e in self.eps_grid):
            raise ReportError(f"eps_grid values must be finite and >= 0, got {self.eps_grid}")
        if self.examples_daa not in DAA_ATTACKS:
            raise ReportError(f"examples_daa must be one of {DAA_ATTACKS}, got "
                              f"{self.examples_daa!r}")
        for attack, per_loss in self.c.items():
            if attack not in DAA_ATTACKS or any(l not in LOSS_LABELS for l in per_loss):
                raise ReportError(f"c overrides take DAA attacks and losses, got {self.c}")

    def attack_params(self, attack: str, loss: str, eps: Optional[float] = None
                      ) -> Tuple[str, Dict[str, Any]]:
        """The driver's attack name and its parameters for ``attack`` with ``loss`` at ``eps``."""
        eps = self.eps if eps is None else float(eps)
        params: Dict[str, Any] = dict(eps=eps, loss=loss, random_start=True,
                                      clip_min=self.clip_min, clip_max=self.clip_max,
                                      jit_compile=self.jit_compile)
        if attack == "rand_fgsm":  # always from a random start: that is what Rand+ means
            step = eps if self.fgsm_step_size is None else self.fgsm_step_size * eps / self.eps
            params.update(step_size=step)
            return "fgsm", params
        params.update(step_size=self.step_size, steps=self.steps,
                      random_start=self.random_start)
        if attack in DAA_ATTACKS:
            params.update(particles=self.particles, c=self.c.get(attack, {}).get(loss))
        return attack, params

    def c_value(self, attack: str, loss: str) -> float:
        """The DAA constant used (as given: DGF's per unit pixel range, see ALGORITHMS.md)."""
        from daa_tf.attacks import DEFAULT_C

        value = self.c.get(attack, {}).get(loss)
        return float(DEFAULT_C[attack][loss] if value is None else value)

    def as_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["attacks"], d["losses"] = list(self.attacks), list(self.losses)
        d["eps_grid"], d["eps_grid_losses"] = list(self.eps_grid), list(self.eps_grid_losses)
        d["c_used"] = {a: {l: self.c_value(a, l) for l in self.losses}
                       for a in self.attacks if a in DAA_ATTACKS}
        return d


# ------------------------------------------------------------------------------------ saving


def write_text(path: str, text: str) -> None:
    """Atomically writes ``text`` to ``path``."""
    atomic_write(path, lambda f: f.write(text), binary=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: str, data: Any) -> None:
    """Atomically writes ``data`` as indented JSON."""
    write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def data_fingerprint(x: np.ndarray, y: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(str((x.shape, str(x.dtype))).encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    digest.update(np.ascontiguousarray(np.asarray(y, np.int64)).tobytes())
    return digest.hexdigest()


def _fingerprint(data_fp: str, attack: str, params: Dict[str, Any], cfg: ReportConfig) -> str:
    settings = {k: v for k, v in params.items() if k != "jit_compile"}
    rounds = cfg.steps_per_round if attack in DAA_ATTACKS else None  # only DAA has rounds
    blob = json.dumps([FORMAT_VERSION, data_fp, attack, settings, cfg.restarts, rounds,
                       cfg.seed], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _eps_tag(eps: float) -> str:
    return f"{eps:g}".replace(".", "p").replace("-", "m").replace("+", "")


def result_file(out: str, key: str, eps: Optional[float] = None) -> str:
    """Where the result of ``key`` (``attack/loss``) is saved: main run, or the eps-grid run."""
    stem = key.replace("/", "_")
    if eps is None:
        return os.path.join(out, ATTACKS_DIR, f"{stem}.npz")
    return os.path.join(out, GRID_DIR, f"{stem}_eps{_eps_tag(eps)}.npz")


def load_result(path: str) -> Dict[str, Any]:
    """A saved attack result: ``correct``, ``pred``, ``accuracy``, ``seconds``, ... (and
    ``x_adv`` for the main runs), with ``meta`` the JSON metadata."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            data = {k: saved[k] for k in saved.files}
    except (OSError, ValueError, EOFError) as err:
        raise ReportError(f"cannot read the saved result {path}: {err}; delete it to rerun that "
                          "attack") from err
    data["meta"] = json.loads(str(data.pop("meta")))
    return data


# ---------------------------------------------------------------------------------- running


@dataclasses.dataclass
class _Context:
    model: Any
    x: np.ndarray
    y: np.ndarray
    cfg: ReportConfig
    out: str
    resume: bool
    verbose: int
    log: Log
    data_fp: str
    score: Callable[[np.ndarray, np.ndarray], np.ndarray]
    fmt: Optional[submission.Format]
    run_kwargs: Dict[str, Any]
    writer: bool


def _run_attack(ctx: _Context, attack: str, loss: str, eps: Optional[float] = None
                ) -> Dict[str, Any]:
    """Runs (or, resuming, loads) one attack; returns its entry of ``results.json`` plus arrays."""
    import daa_tf

    key = f"{attack}/{loss}"
    grid = eps is not None
    driver_attack, params = ctx.cfg.attack_params(attack, loss, eps)
    fp = _fingerprint(ctx.data_fp, driver_attack, params, ctx.cfg)
    path = result_file(ctx.out, key, eps)
    what = f"{ATTACK_LABELS[attack]} ({LOSS_LABELS[loss]}" + (f", eps {eps:g})" if grid else ")")
    if ctx.resume and os.path.exists(path):
        saved = load_result(path)
        if saved["meta"].get("fingerprint") != fp:
            raise ReportError(f"{path} was made with other settings or data than this run: "
                              "delete it, pick another --out, or run without --resume")
        ctx.log(f"[report] {what}: done before, loaded {os.path.relpath(path, ctx.out)}")
        return saved
    state_path = os.path.join(ctx.out, STATE_DIR, os.path.basename(path))
    ctx.log(f"[report] {what}: running")
    started = time.perf_counter()
    result = daa_tf.run(ctx.model, ctx.x, ctx.y, attack=driver_attack,
                        restarts=ctx.cfg.restarts, steps_per_round=ctx.cfg.steps_per_round,
                        batch_size=ctx.cfg.batch_size, seed=ctx.cfg.seed, verbose=ctx.verbose,
                        state_path=state_path, resume=ctx.resume, **ctx.run_kwargs, **params)
    wall = time.perf_counter() - started
    try:  # the runners' checks of a submission (pixel range, L-inf bound, NaN)
        size = (submission.check(result.x_adv, ctx.x, ctx.fmt, params["eps"]) if ctx.fmt
                else submission.perturbation(result.x_adv, ctx.x))
    except submission.InvalidSubmission as err:
        raise ReportError(f"{what}: the adversarial set fails the challenge's checks: {err}"
                          ) from None
    pred = np.asarray(ctx.score(result.x_adv, ctx.y))
    correct = pred == ctx.y
    if not np.array_equal(correct, result.correct):
        ctx.log(f"[report] WARNING {what}: the scoring disagrees with the driver's outcomes on "
                f"{int(np.sum(correct != result.correct))} examples (numerical ties?); the "
                "report uses the scoring")
    # Seconds of the whole attack: when restarts were resumed from the driver's state, the ones
    # not timed here are estimated by the mean of those that were.
    timed = list(result.restart_seconds)
    seconds = (sum(timed) * ctx.cfg.restarts / len(timed)) if timed else wall
    meta = {
        "key": key, "attack": attack, "loss": loss, "driver_attack": driver_attack,
        "eps": params["eps"], "params": {k: v for k, v in params.items() if k != "jit_compile"},
        "restarts": ctx.cfg.restarts, "steps_per_round": ctx.cfg.steps_per_round,
        "seed": ctx.cfg.seed, "fingerprint": fp, "accuracy": float(np.mean(correct)),
        "num_correct": int(np.sum(correct)), "num_examples": int(len(correct)),
        "restart_accuracies": [float(a) for a in result.restart_accuracies],
        "seconds": float(seconds), "seconds_estimated": len(timed) < ctx.cfg.restarts,
        "linf": size.linf, "mean_l2": size.mean_l2,
    }
    arrays = {"correct": correct, "pred": pred.astype(np.int64)}
    if not grid:
        arrays["x_adv"] = result.x_adv.astype(np.float32)
    if ctx.writer:
        atomic_write(path, lambda f: np.savez(f, meta=np.asarray(json.dumps(meta)), **arrays))
        if os.path.exists(state_path):
            os.remove(state_path)
    ctx.log(f"[report] {what}: accuracy {100 * meta['accuracy']:.2f}% in {seconds:.1f} s")
    return {**arrays, "meta": meta}


def _entry(saved: Dict[str, Any], path: str, out: str) -> Dict[str, Any]:
    meta = dict(saved["meta"])
    meta["file"] = os.path.relpath(path, out).replace(os.sep, "/")
    meta.pop("fingerprint", None)
    return meta


def _pick_examples(pgd: Dict[str, Any], daa: Dict[str, Any], limit: int) -> List[int]:
    """Indices (in order) of the examples DAA fools and PGD does not."""
    return [int(i) for i in np.flatnonzero(pgd["correct"] & ~daa["correct"])[:limit]]


def make_report(model: Any, x: np.ndarray, y: np.ndarray, cfg: ReportConfig, out: str,
                resume: bool = False, verbose: int = 1, log: Log = print,
                info: Optional[Dict[str, Any]] = None, figures: bool = True,
                score: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None,
                fmt: Optional[submission.Format] = None,
                run_kwargs: Optional[Dict[str, Any]] = None, writer: bool = True
                ) -> Dict[str, Any]:
    """Runs every attack of ``cfg`` on ``(x, y)`` and writes the report to ``out``.

    ``info``: extra entries for ``results.json`` (challenge, model and data descriptions, the
    command). ``figures=False`` skips the PNGs. ``score(x, y) -> predictions`` scores every set
    (default :func:`daa_tf.evaluate`; the CLI passes the runners' ``runner.score``). ``fmt``: the
    challenge's format, whose checks (:func:`challenges.submission.check`) every adversarial set
    must pass. ``run_kwargs``: extra arguments of :func:`daa_tf.run`. ``writer=False`` computes
    everything but writes no file (the non-chief workers of a multi-worker run; they read the
    chief's saved results on ``resume``, so ``out`` must then be a folder they share). Returns the
    content of ``results.json``.
    """
    import daa_tf
    from challenges import plots
    from daa_tf import stats

    started = time.perf_counter()
    x = np.asarray(x, np.float32)
    y = np.asarray(y).astype(np.int64)
    os.makedirs(out, exist_ok=True)
    if score is None:
        def score(x_: np.ndarray, y_: np.ndarray) -> np.ndarray:
            return daa_tf.evaluate(model, x_, y_, jit_compile=cfg.jit_compile)[0]
    ctx = _Context(model=model, x=x, y=y, cfg=cfg, out=out, resume=resume, verbose=verbose,
                   log=log, data_fp=data_fingerprint(x, y), score=score, fmt=fmt,
                   run_kwargs=dict(run_kwargs or {}), writer=writer)

    clean_pred = np.asarray(score(x, y))
    clean_accuracy = float(np.mean(clean_pred == y))
    log(f"[report] {len(x)} examples, clean accuracy {100 * clean_accuracy:.2f}%")

    runs: Dict[str, Dict[str, Any]] = {}
    entries: Dict[str, Dict[str, Any]] = {}
    for loss in cfg.losses:
        for attack in cfg.attacks:
            key = f"{attack}/{loss}"
            runs[key] = _run_attack(ctx, attack, loss)
            entries[key] = _entry(runs[key], result_file(out, key), out)

    tests: Dict[str, Dict[str, Any]] = {}
    if "pgd" in cfg.attacks:
        for loss in cfg.losses:
            for attack in DAA_ATTACKS:
                if attack in cfg.attacks:
                    test = stats.mcnemar(runs[f"pgd/{loss}"]["correct"],
                                         runs[f"{attack}/{loss}"]["correct"])
                    tests[f"{attack}/{loss}"] = {"versus": f"pgd/{loss}", **test.as_dict()}

    grid_eps = [float(e) for e in cfg.eps_grid]
    curves: Dict[str, List[float]] = {}
    grid_seconds: Dict[str, List[float]] = {}
    grid_files: Dict[str, List[Optional[str]]] = {}
    for loss in cfg.eps_grid_losses:
        for attack in cfg.attacks:
            key = f"{attack}/{loss}"
            curves[key], grid_seconds[key], grid_files[key] = [], [], []
            for e in grid_eps:
                if e == 0.0:  # no perturbation: the clean accuracy
                    curves[key].append(clean_accuracy)
                    grid_seconds[key].append(0.0)
                    grid_files[key].append(None)
                    continue
                if math.isclose(e, cfg.eps, rel_tol=1e-9) and key in runs:
                    saved, path = runs[key], result_file(out, key)
                else:
                    saved, path = _run_attack(ctx, attack, loss, e), result_file(out, key, e)
                curves[key].append(float(saved["meta"]["accuracy"]))
                grid_seconds[key].append(float(saved["meta"]["seconds"]))
                grid_files[key].append(os.path.relpath(path, out).replace(os.sep, "/"))

    example_keys = (f"pgd/{cfg.examples_loss}", f"{cfg.examples_daa}/{cfg.examples_loss}")
    indices: List[int] = []
    if all(k in runs for k in example_keys):
        indices = _pick_examples(runs[example_keys[0]], runs[example_keys[1]],
                                 plots.EXAMPLES_ROWS)

    results: Dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "daa_tf_version": daa_tf.__version__,
        **(info or {}),
        "settings": cfg.as_dict(),
        "num_examples": int(len(x)),
        "clean_accuracy": clean_accuracy,
        "attacks": entries,
        "mcnemar": tests,
        "eps_grid": {"eps": grid_eps, "losses": list(cfg.eps_grid_losses), "accuracy": curves,
                     "seconds": grid_seconds, "files": grid_files},
        "examples": {"pgd": example_keys[0], "daa": example_keys[1], "indices": indices,
                     "labels": [int(y[i]) for i in indices]},
        "figures": {},
    }
    results["attack_seconds"] = float(
        sum(e["seconds"] for e in entries.values())
        + sum(sec for key, secs in grid_seconds.items() for sec, f in
              zip(secs, grid_files[key]) if f and f.startswith(GRID_DIR)))
    results["invocation_seconds"] = time.perf_counter() - started

    if not writer:
        return results
    state_dir = os.path.join(out, STATE_DIR)
    if os.path.isdir(state_dir) and not os.listdir(state_dir):
        os.rmdir(state_dir)
    for name in (ACCURACY_PLOT, EXAMPLES_PLOT):  # never leave an earlier run's figure behind
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    if not figures:
        results["figures_note"] = "figures not requested (--nofigures)"
    elif not plots.matplotlib_available():
        results["figures_note"] = plots.INSTALL_HINT
    else:
        results["figures_note"] = "figures not drawn (the drawing failed)"
    _write_report(results, out)   # the table and JSON first: a plotting failure keeps them
    if figures and plots.matplotlib_available():
        results["figures"] = _draw_figures(results, runs, x, y, cfg, out)
        if results["figures"]:
            del results["figures_note"]
        else:
            results["figures_note"] = ("nothing to draw: no --eps_grid, and no PGD and "
                                       f"{cfg.examples_daa} runs with {cfg.examples_loss}")
        _write_report(results, out)
    log(f"[report] wrote {os.path.join(out, TABLE_FILE)} and {os.path.join(out, RESULTS_FILE)}")
    if results["figures"]:
        log("[report] wrote " + ", ".join(os.path.join(out, f["file"])
                                           for f in results["figures"].values()))
    else:
        log(f"[report] no figures: {results['figures_note']}")
    return results


def _write_report(results: Dict[str, Any], out: str) -> None:
    write_json(os.path.join(out, RESULTS_FILE), results)
    write_text(os.path.join(out, TABLE_FILE), format_table(results))


def _draw_figures(results: Dict[str, Any], runs: Dict[str, Dict[str, Any]], x: np.ndarray,
                  y: np.ndarray, cfg: ReportConfig, out: str) -> Dict[str, Any]:
    from challenges import plots

    title = _title(results)
    drawn: Dict[str, Any] = {}
    grid = results["eps_grid"]
    if grid["eps"]:
        curves = {f"{ATTACK_LABELS[k.split('/')[0]]} ({LOSS_LABELS[k.split('/')[1]]})": v
                  for k, v in grid["accuracy"].items()}
        plots.accuracy_vs_eps(os.path.join(out, ACCURACY_PLOT), grid["eps"], curves,
                              clean_accuracy=results["clean_accuracy"],
                              title=f"{title}: accuracy vs eps", eps_label="eps (L-inf)")
        width, height = plots.ACCURACY_SIZE
        drawn["accuracy_vs_eps"] = {"file": ACCURACY_PLOT, "width": width, "height": height}
    ex = results["examples"]
    if ex["pgd"] in runs and ex["daa"] in runs:
        pgd, daa = runs[ex["pgd"]], runs[ex["daa"]]
        rows = [{"index": i, "label": int(y[i]), "x_pgd": pgd["x_adv"][i],
                 "x_daa": daa["x_adv"][i], "pred_pgd": int(pgd["pred"][i]),
                 "pred_daa": int(daa["pred"][i])} for i in ex["indices"]]
        daa_label = f"{ATTACK_LABELS[ex['daa'].split('/')[0]]} ({LOSS_LABELS[cfg.examples_loss]})"
        plots.examples(os.path.join(out, EXAMPLES_PLOT), x[ex["indices"]], rows, cfg.eps,
                       cfg.clip_min, cfg.clip_max,
                       title=f"{title}: examples {daa_label} fools and PGD does not",
                       empty_message=f"no example that {daa_label} fools and PGD does not")
        width, height = plots.EXAMPLES_SIZE
        drawn["examples"] = {"file": EXAMPLES_PLOT, "width": width, "height": height}
    return drawn


# ----------------------------------------------------------------------------------- table


def fmt_accuracy(value: float) -> str:
    return f"{100.0 * value:.2f}%"


def fmt_p(value: float) -> str:
    """A p-value with three significant digits (``< 1e-300`` when it underflows)."""
    return f"{value:.3g}" if value > 0 else "< 1e-300"


def fmt_seconds(value: float) -> str:
    return f"{value:.1f}"


def _title(results: Dict[str, Any]) -> str:
    challenge = results.get("challenge", "")
    model = results.get("model_name") or ""
    return " ".join(s for s in (challenge.upper() if challenge else "", model) if s) or "report"


def format_table(results: Dict[str, Any]) -> str:
    """The Markdown report: the paper's table (rows attacks, columns xent / CW), McNemar, the
    settings and the seconds per attack."""
    s = results["settings"]
    losses = s["losses"]
    entries = results["attacks"]
    tests = results["mcnemar"]
    lines = [f"# {_title(results)}: accuracy under attack", ""]
    head = ["attack"] + [LOSS_LABELS[l] for l in losses]
    if tests:
        head += [f"McNemar p vs PGD, {LOSS_LABELS[l]}" for l in losses]
    head += [f"seconds, {LOSS_LABELS[l]}" for l in losses]
    lines += ["| " + " | ".join(head) + " |", "| --- " + "| ---: " * (len(head) - 1) + "|"]
    for attack in s["attacks"]:
        cells = [ATTACK_LABELS[attack]]
        cells += [fmt_accuracy(entries[f"{attack}/{l}"]["accuracy"]) for l in losses]
        if tests:
            cells += [fmt_p(tests[f"{attack}/{l}"]["p_value"]) if f"{attack}/{l}" in tests
                      else "-" for l in losses]
        cells += [fmt_seconds(entries[f"{attack}/{l}"]["seconds"]) for l in losses]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Clean accuracy: {fmt_accuracy(results['clean_accuracy'])} on "
                 f"{results['num_examples']} examples. Accuracy is the model's on the final "
                 "adversarial set (worst case over the restarts); lower is a stronger attack.")
    if tests:
        lines += ["", "McNemar's exact test of each DAA variant against PGD on the same examples "
                  "(b: examples only DAA fools, c: examples only PGD fools; two-sided p = "
                  "min(1, 2 P[Binomial(b + c, 1/2) <= min(b, c)])):", "",
                  "| comparison | loss | both correct | b: only DAA fools | c: only PGD fools | "
                  "both fooled | p |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for key, t in tests.items():
            attack, loss = key.split("/")
            lines.append(f"| {ATTACK_LABELS[attack]} vs PGD | {LOSS_LABELS[loss]} | "
                         f"{t['both_correct']} | {t['b']} | {t['c']} | {t['both_fooled']} | "
                         f"{fmt_p(t['p_value'])} |")
    lines += ["", "Settings:", ""]
    lines += [f"- {line}" for line in _settings_lines(results)]
    grid = results["eps_grid"]
    if grid["eps"]:
        lines += ["", f"Accuracy over the eps grid ({ACCURACY_PLOT}):", "",
                  "| attack | loss | " + " | ".join(f"eps {e:g}" for e in grid["eps"]) + " |",
                  "| --- | --- " + "| ---: " * len(grid["eps"]) + "|"]
        for key, accs in grid["accuracy"].items():
            attack, loss = key.split("/")
            lines.append(f"| {ATTACK_LABELS[attack]} | {LOSS_LABELS[loss]} | "
                         + " | ".join(fmt_accuracy(a) for a in accs) + " |")
    figs = results.get("figures") or {}
    lines += [""]
    if figs:
        lines.append("Figures: " + ", ".join(f"[{f['file']}]({f['file']})" for f in figs.values())
                     + ".")
    elif results.get("figures_note"):
        lines.append(f"No figures: {results['figures_note']}.")
    ex = results["examples"]
    if "examples" in figs:
        daa_name = (f"{ATTACK_LABELS[ex['daa'].split('/')[0]]} "
                    f"({LOSS_LABELS[ex['daa'].split('/')[1]]})")
        lines.append(f"{EXAMPLES_PLOT}: the first {len(ex['indices'])} examples (indices "
                     f"{ex['indices']}) that {daa_name} fools and PGD does not."
                     if ex["indices"] else
                     f"{EXAMPLES_PLOT}: no example that {daa_name} fools and PGD does not.")
    if results.get("command"):
        lines += ["", "Made with:", "", "```bash", results["command"], "```"]
    return "\n".join(lines).rstrip() + "\n"


def _settings_lines(results: Dict[str, Any]) -> List[str]:
    s = results["settings"]
    out = []
    desc = [f"{k}: {results[k]}" for k in ("challenge", "model", "data") if results.get(k)]
    if desc:
        out.append(", ".join(desc))
    out.append(f"{results['num_examples']} examples, seed {s['seed']}, pixel box "
               f"[{s['clip_min']:g}, {s['clip_max']:g}], L-inf eps {s['eps']:g}")
    fgsm = s["fgsm_step_size"]
    start = "random start" if s["random_start"] else "no random start (from the clean images)"
    out.append(f"PGD, momentum PGD (decay 1.0), DAA: {s['steps']} steps of {s['step_size']:g}, "
               f"{start}; Rand+FGSM: random start, then one step of "
               f"{'eps' if fgsm is None else format(fgsm, 'g')}")
    out.append(f"{s['restarts']} restart(s) per attack (the same random starts for every "
               "attack: the outcomes are paired)")
    if any(a in s["attacks"] for a in DAA_ATTACKS):
        cs = "; ".join(f"{ATTACK_LABELS[a]} c = " + ", ".join(
            f"{v:g} ({LOSS_LABELS[l]})" for l, v in per_loss.items())
            + (" per unit pixel range" if a == "daa_dgf" else "")
            for a, per_loss in s["c_used"].items())
        out.append(f"DAA: groups of {s['particles']} particles, rounds of "
                   f"{s['steps_per_round']} steps over the permuted set (Algorithm 1); {cs}")
    out.append(f"seconds: wall time of each attack (all restarts) on this machine; all "
               f"attacks of the report, eps grid included: {results['attack_seconds']:.0f} s")
    return out


# ------------------------------------------------------------------------------------- CLI

# The eps grids of accuracy_vs_eps.png (pixel units of each challenge's box).
DEFAULT_EPS_GRID = {"mnist": (0.1, 0.2, 0.3), "fashion_mnist": (0.05, 0.1, 0.2),
                    "cifar10": (2.0, 4.0, 8.0)}
_C_FLAGS = {("daa_blob", "xent"): "c_blob_xent", ("daa_blob", "cw"): "c_blob_cw",
            ("daa_dgf", "xent"): "c_dgf_xent", ("daa_dgf", "cw"): "c_dgf_cw"}
# daa_tf.attacks.DEFAULT_C as text (importing daa_tf would load TensorFlow before the flags).
_DEFAULT_C_TEXT = {("daa_blob", "xent"): "1.1", ("daa_blob", "cw"): "10",
                   ("daa_dgf", "xent"): "-0.001 per unit pixel range",
                   ("daa_dgf", "cw"): "-0.01 per unit pixel range"}


def define_flags() -> None:
    """The report's flags. Attack settings default to the challenge's (the paper's) values,
    resolved after parsing; model and data flags are the runners'."""
    from absl import flags

    from challenges import runner

    flags.DEFINE_enum("challenge", "mnist", list(runner.CHALLENGES), "Which challenge.")
    runner.define_model_data_flags(None)
    flags.DEFINE_string("out", "report", "Folder receiving table.md, results.json, the figures "
                        "and every attack's saved result.")
    flags.DEFINE_list("attacks", [key for key, _ in ATTACKS], "Attacks, the table's rows: "
                      + ", ".join(key for key, _ in ATTACKS) + ".")
    flags.DEFINE_list("losses", [key for key, _ in LOSSES], "Losses, the table's columns.")
    flags.DEFINE_float("epsilon", None, "L-inf radius in pixel units (default: the challenge's "
                       "bound: mnist 0.3, fashion_mnist 0.2, cifar10 8).")
    flags.DEFINE_float("step_size", None, "Step size of PGD, momentum PGD and DAA (default: the "
                       "challenge's: mnist 0.01, cifar10 2).")
    flags.DEFINE_integer("steps", None, "Steps per restart (default: the challenge's: mnist 200, "
                         "fashion_mnist 100, cifar10 20).", lower_bound=1)
    flags.DEFINE_integer("restarts", None, "Restarts per attack (default: the challenge's: mnist "
                         "50, fashion_mnist 10, cifar10 1).", lower_bound=1)
    flags.DEFINE_boolean("random_start", None, "Random start for PGD, momentum PGD and DAA "
                         "(default: the challenge's; Rand+FGSM always starts at random).")
    flags.DEFINE_float("fgsm_step_size", None, "Rand+FGSM's one step (default: --epsilon; on the "
                       "eps grid it scales with eps).")
    flags.DEFINE_integer("particles", None, "DAA: particles per group (default 200).",
                         lower_bound=2)
    flags.DEFINE_integer("steps_per_round", None, "DAA: steps per round (default 10).",
                         lower_bound=1)
    for (attack, loss), name in _C_FLAGS.items():
        flags.DEFINE_float(name, None, f"{ATTACK_LABELS[attack]}'s c with the {LOSS_LABELS[loss]} "
                           f"loss (default {_DEFAULT_C_TEXT[attack, loss]}).")
    flags.DEFINE_list("eps_grid", None, "The eps values of accuracy_vs_eps.png (default: mnist "
                      "0.1,0.2,0.3; fashion_mnist 0.05,0.1,0.2; cifar10 2,4,8); empty: no curve.")
    flags.DEFINE_list("eps_grid_losses", ["xent"], "Losses of the eps-grid curves.")
    flags.DEFINE_enum("examples_daa", "daa_blob", list(DAA_ATTACKS), "The DAA variant whose "
                      "adversarials examples.png shows against PGD's.")
    flags.DEFINE_enum("examples_loss", "xent", [key for key, _ in LOSSES], "The loss of the "
                      "attacks shown in examples.png.")
    flags.DEFINE_boolean("figures", True, "Draw the PNG figures (needs matplotlib).")
    flags.DEFINE_integer("batch_size", None, "Images per compiled call (throughput only; DAA: a "
                         "multiple of --particles).", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Random seed (the same starts for every attack).",
                         lower_bound=0)
    flags.DEFINE_boolean("resume", False, "Skip the attacks already saved under --out and "
                         "continue an interrupted one from its last restart.")
    flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "XLA: auto (GPU/TPU "
                      "only), true, false.")
    flags.DEFINE_integer("verbose", 1, "Progress bars: 1 on, 0 off.")
    runner.define_distribute_flag()


def config_from_flags(challenge: Any, f: Any) -> ReportConfig:
    """The report's settings from the parsed flags, with ``challenge``'s defaults filled in."""
    d = challenge.defaults
    fmt = challenge.format
    pick = lambda value, default: default if value is None else value  # noqa: E731
    try:
        grid = (DEFAULT_EPS_GRID.get(challenge.name, ()) if f.eps_grid is None
                else tuple(float(v) for v in f.eps_grid if v.strip()))
    except ValueError:
        raise ReportError(f"--eps_grid must list numbers, got {','.join(f.eps_grid)}") from None
    c: Dict[str, Dict[str, float]] = {}
    for (attack, loss), name in _C_FLAGS.items():
        if f[name].value is not None:
            c.setdefault(attack, {})[loss] = float(f[name].value)
    return ReportConfig(
        eps=float(pick(f.epsilon, fmt.eps)), step_size=float(pick(f.step_size, d.step_size)),
        steps=int(pick(f.steps, d.steps)), restarts=int(pick(f.restarts, d.restarts)),
        random_start=bool(pick(f.random_start, d.random_start)), clip_min=fmt.clip_min,
        clip_max=fmt.clip_max, steps_per_round=int(pick(f.steps_per_round, d.steps_per_round)),
        particles=int(pick(f.particles, d.particles)), seed=f.seed, batch_size=f.batch_size,
        attacks=tuple(f.attacks), losses=tuple(f.losses), fgsm_step_size=f.fgsm_step_size, c=c,
        eps_grid=grid, eps_grid_losses=tuple(f.eps_grid_losses), examples_daa=f.examples_daa,
        examples_loss=f.examples_loss,
        jit_compile={"auto": None, "true": True, "false": False}[f.jit_compile])


def _command(resume: bool = False) -> str:
    args = [a for a in sys.argv[1:] if a not in ("--resume", "--resume=true", "--resume=True")]
    return shlex.join(["python", "-m", "challenges.report", *args]
                      + (["--resume"] if resume else []))


def run_report(f: Any) -> int:
    """The CLI: resolve model and data as the runners do, make the report. Returns the exit
    status (0 done, 1 error, 130 interrupted: the finished attacks are kept for --resume)."""
    from absl import logging

    from challenges import plots, runner

    challenge = runner.CHALLENGES[f.challenge]
    try:
        cfg = config_from_flags(challenge, f)
        if cfg.batch_size and cfg.batch_size % cfg.particles and any(
                a in DAA_ATTACKS for a in cfg.attacks):
            raise ReportError("--batch_size must be a multiple of --particles for the DAA attacks")
    except ReportError as err:
        logging.error("%s", err)
        return 1
    if cfg.eps > challenge.format.eps + submission.EPS_TOLERANCE:
        logging.warning("--epsilon=%g exceeds the %s bound %g", cfg.eps, challenge.title,
                        challenge.format.eps)
    if f.figures and not plots.matplotlib_available():
        logging.warning("no figures will be drawn: %s", plots.INSTALL_HINT)
    try:
        runner.check_paths(challenge, model_dir=f.model_dir, data_dir=f.data_dir)
        strategy = runner.distribution_strategy()
        model, path, x, y, source = runner.load_inputs(
            challenge, f.model_dir, f.model, f.data_dir, f.num_examples,
            strategy.scope() if strategy is not None else None)
        if f.model_dir is not None and f["model"].present:
            logging.warning("--model is ignored: --model_dir is given")
        info = {"challenge": challenge.name, "model": str(path), "model_name": Path(path).name,
                "data": str(source), "command": _command()}

        def score(x_adv: np.ndarray, labels: np.ndarray) -> np.ndarray:
            return runner.score(challenge, model, x_adv, labels, cfg.jit_compile)[0]

        from daa_tf.distribute import is_chief

        make_report(model, x, y, cfg, f.out, resume=f.resume, verbose=f.verbose,
                    log=lambda message: logging.info("%s", message), info=info,
                    figures=f.figures, score=score, fmt=challenge.format,
                    run_kwargs={"strategy": strategy} if strategy is not None else None,
                    writer=is_chief(strategy))
    except KeyboardInterrupt:
        logging.error("interrupted: the finished attacks are saved under %s (and the last "
                      "finished restart of the running one). Continue with:\n  %s", f.out,
                      _command(resume=True))
        return 130
    except (runner.SetupError, ReportError, ValueError) as err:
        logging.error("%s", err)
        return 1
    return 0


def main() -> None:
    """Entry point of ``python -m challenges.report``."""
    import signal

    from absl import app, flags

    define_flags()

    def _main(argv: list) -> int:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        return run_report(flags.FLAGS)

    app.run(_main)


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
