"""Running the report's attacks: each attack's result saved under ``out/`` as soon as it is done
(atomically, with a fingerprint of its settings and data), and loaded instead of rerun on
``--resume``; an interrupted attack continues from its last restart (the driver's state)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Callable, Dict, Optional

import numpy as np

from daa_tf import catalogue
from daa_tf.files import atomic_write

from challenges import submission
from challenges.report.settings import ReportConfig, ReportError

ATTACKS_DIR = "attacks"
GRID_DIR = "eps_grid"
STATE_DIR = "state"
FORMAT_VERSION = 2

Log = Callable[[str], None]
Score = Callable[[np.ndarray, np.ndarray], np.ndarray]


def data_fingerprint(x: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of the images (shape, dtype, bytes) and the labels."""
    digest = hashlib.sha256()
    digest.update(str((x.shape, str(x.dtype))).encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    digest.update(np.ascontiguousarray(np.asarray(y, np.int64)).tobytes())
    return digest.hexdigest()


def _settings_record(settings: catalogue.RunSettings) -> Dict[str, Any]:
    """The settings a saved result depends on; a cascade's default stages spelled out (and
    whether they are sized as they start), so a changed default sequence is run again."""
    record = {k: v for k, v in dataclasses.asdict(settings).items() if k != "jit_compile"}
    if catalogue.is_cascade(settings) and settings.stages is None:
        record["stages"] = [s.record() for s in settings.stages_for(10, checked=False)]
        record["reinvests"] = settings.reinvests
    return record


def _fingerprint(data_fp: str, settings: catalogue.RunSettings, cfg: ReportConfig) -> str:
    rounds = cfg.steps_per_round if settings.interacting else None  # only DAA has rounds
    restarts = cfg.run_restarts(settings.attack)
    blob = json.dumps([FORMAT_VERSION, data_fp, _settings_record(settings), restarts,
                       rounds, cfg.seed], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _eps_tag(eps: float) -> str:
    return f"{eps:g}".replace(".", "p").replace("-", "m").replace("+", "")


def result_file(out: str, key: str, eps: Optional[float] = None) -> str:
    """Where the result of ``key`` (``attack/loss``) is saved: main run, or the eps-grid run."""
    stem = key.replace("/", "_")
    if eps is None:
        return os.path.join(out, ATTACKS_DIR, f"{stem}.npz")
    return os.path.join(out, GRID_DIR, f"{stem}_eps{_eps_tag(eps)}.npz")


def relative(path: str, out: str) -> str:
    """``path`` relative to ``out``, with forward slashes (as results.json records it)."""
    return os.path.relpath(path, out).replace(os.sep, "/")


def load_result(path: str) -> Dict[str, Any]:
    """A saved attack result: ``correct``, ``pred`` (and ``x_adv`` for the main runs), with
    ``meta`` the JSON metadata (accuracy, seconds, settings, ...)."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            data = {k: saved[k] for k in saved.files}
    except (OSError, ValueError, EOFError) as err:
        raise ReportError(f"cannot read the saved result {path}: {err}; delete it to rerun that "
                          "attack") from err
    data["meta"] = json.loads(str(data.pop("meta")))
    return data


@dataclasses.dataclass
class Session:
    """What every attack of one report shares: model, data, settings, where and how to write.

    ``score(x, y) -> predictions`` scores every set; ``fmt``: the challenge's format whose checks
    every adversarial set must pass (None: only measure the perturbation); ``run_kwargs``: extra
    arguments of ``daa_tf.run``; ``writer``: False on non-chief workers (nothing is written);
    ``done``: the results of this session by file (a cascade's one run fills every column).
    """

    model: Any
    x: np.ndarray
    y: np.ndarray
    cfg: ReportConfig
    out: str
    resume: bool
    verbose: int
    log: Log
    score: Score
    fmt: Optional[submission.Format]
    run_kwargs: Dict[str, Any]
    writer: bool
    data_fp: str = ""
    done: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_fp = data_fingerprint(self.x, self.y)


def _check_adversarial(session: Session, x_adv: np.ndarray, eps: float, what: str
                       ) -> submission.Perturbation:
    """The runners' checks of a submission (pixel range, L-inf bound, NaN)."""
    try:
        if session.fmt is not None:
            return submission.check(x_adv, session.x, session.fmt, eps)
        return submission.perturbation(x_adv, session.x)
    except submission.InvalidSubmission as err:
        raise ReportError(f"{what}: the adversarial set fails the challenge's checks: {err}"
                          ) from None


def _load_saved(session: Session, path: str, fp: str, what: str) -> Dict[str, Any]:
    saved = load_result(path)
    if saved["meta"].get("fingerprint") != fp:
        raise ReportError(f"{path} was made with other settings or data than this run: "
                          "delete it, pick another --out, or run without --resume")
    session.log(f"[report] {what}: done before, loaded {relative(path, session.out)}")
    return saved


def run_attack(session: Session, attack: str, loss: str, eps: Optional[float] = None
               ) -> Dict[str, Any]:
    """Runs (or, resuming, loads) row ``attack`` with ``loss`` (at ``eps`` on the grid); returns
    ``{"correct", "pred", ["x_adv"], "meta"}``."""
    import daa_tf

    cfg = session.cfg
    loss = cfg.run_loss(attack, loss)
    key, grid = f"{attack}/{loss}", eps is not None
    settings = cfg.attack_settings(attack, loss, eps)
    fp = _fingerprint(session.data_fp, settings, cfg)
    path = result_file(session.out, key, eps)
    if path in session.done:  # a cascade's one run, shown in every column
        return session.done[path]
    details = ([] if catalogue.is_cascade(attack) else [catalogue.LOSS_LABELS[loss]]) + (
        [f"eps {eps:g}"] if grid else [])
    what = catalogue.label(attack) + (f" ({', '.join(details)})" if details else "")
    if session.resume and os.path.exists(path):
        session.done[path] = _load_saved(session, path, fp, what)
        return session.done[path]
    state_path = os.path.join(session.out, STATE_DIR, os.path.basename(path))
    session.log(f"[report] {what}: running")
    started = time.perf_counter()
    result = daa_tf.run(session.model, session.x, session.y, settings,
                        restarts=cfg.run_restarts(attack),
                        steps_per_round=cfg.steps_per_round, batch_size=cfg.batch_size,
                        seed=cfg.seed, verbose=session.verbose, state_path=state_path,
                        resume=session.resume, **session.run_kwargs)
    wall = time.perf_counter() - started
    size = _check_adversarial(session, result.x_adv, settings.eps, what)
    pred = np.asarray(session.score(result.x_adv, session.y))
    correct = pred == session.y
    if not np.array_equal(correct, result.correct):
        session.log(f"[report] WARNING {what}: the scoring disagrees with the driver's outcomes "
                    f"on {int(np.sum(correct != result.correct))} examples (numerical ties?); "
                    "the report uses the scoring")
    # Seconds of the whole attack: when restarts (a cascade's stages) were resumed from the
    # driver's state, the ones not timed here are estimated by the mean of those that were.
    timed, runs = list(result.restart_seconds), len(result.restart_accuracies)
    seconds = (sum(timed) * runs / len(timed)) if timed else wall
    meta = {
        "key": key, "attack": attack, "loss": loss, "eps": settings.eps,
        "params": _settings_record(settings), "restarts": cfg.run_restarts(attack),
        "steps_per_round": cfg.steps_per_round, "seed": cfg.seed, "fingerprint": fp,
        "accuracy": float(np.mean(correct)), "num_correct": int(np.sum(correct)),
        "num_examples": int(len(correct)),
        "restart_accuracies": [float(a) for a in result.restart_accuracies],
        "seconds": float(seconds), "seconds_estimated": len(timed) < runs,
        "linf": size.linf, "mean_l2": size.mean_l2,
    }
    arrays = {"correct": correct, "pred": pred.astype(np.int64)}
    if not grid:
        arrays["x_adv"] = result.x_adv.astype(np.float32)
    if session.writer:
        atomic_write(path, lambda f: np.savez(f, meta=np.asarray(json.dumps(meta)), **arrays))
        if os.path.exists(state_path):
            os.remove(state_path)
    session.log(f"[report] {what}: accuracy {100 * meta['accuracy']:.2f}% in {seconds:.1f} s")
    session.done[path] = {**arrays, "meta": meta}
    return session.done[path]


def entry(saved: Dict[str, Any], path: str, out: str) -> Dict[str, Any]:
    """A saved result's entry of ``results.json``: its metadata and file, no fingerprint."""
    meta = dict(saved["meta"])
    meta["file"] = relative(path, out)
    meta.pop("fingerprint", None)
    return meta
