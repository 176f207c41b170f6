"""Algorithm 1 over a whole data set: random starts, rounds over the permuted set, restarts, and
the per-example worst-case merge, with a progress bar and resumable state.

DAA's distribution is the whole evaluation set: every round permutes all ``N`` examples, cuts them
into groups of ``particles`` and runs ``steps_per_round`` steps on every group. Attacks whose
examples do not interact (FGSM, PGD, momentum PGD) skip the rounds and run all their steps in one
call per batch, which is exactly one uninterrupted run (momentum is never reset mid-run).

Randomness is stateless and keyed by ``(seed, restart)``: a resumed run (or one extended by more
restarts) equals an uninterrupted one, and batches only set throughput (bit for bit, results need
the same ``batch_size``: CPU kernels may round an example's row differently in batches of other
sizes, see :mod:`daa_tf.distribute`).
"""
import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Callable, Iterator, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from daa_tf import attacks, distribute, files, validation
from daa_tf import loop as compiled
from daa_tf.losses import get_loss

DEFAULT_BATCH = 1000


@dataclasses.dataclass
class RunResult:
    """What :func:`run` returns.

    ``x_adv``: the final adversarial set, float32, the input's shape. ``accuracy``: the model's
    accuracy on it (fraction; for targeted attacks the fraction *not* classified as the target).
    ``correct``: per-example bool ``[N]`` behind ``accuracy``. ``restart_accuracies``: accuracy of
    each restart's own points. ``restart_seconds``: wall time of each restart run in this call.
    """

    x_adv: np.ndarray
    accuracy: float
    correct: np.ndarray
    restart_accuracies: List[float]
    restart_seconds: List[float]


def round_lengths(steps: int, steps_per_round: int) -> List[int]:
    """``steps`` split into rounds of ``steps_per_round`` (the last may be shorter)."""
    full, rest = divmod(steps, steps_per_round)
    return [steps_per_round] * full + ([rest] if rest else [])


def default_batch_size(cfg: attacks.AttackConfig, n: int) -> int:
    """About 1000 examples, a whole number of DAA groups, never more than needed."""
    if cfg.interacting:
        groups = max(1, DEFAULT_BATCH // cfg.particles)
        return min(groups, -(-n // cfg.particles)) * cfg.particles
    return min(DEFAULT_BATCH, n)


def _batches(order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def _fingerprint(cfg: attacks.AttackConfig, x0: np.ndarray, y: np.ndarray, seed: int,
                 steps_per_round: int) -> str:
    """Everything a saved state depends on (not the number of restarts: restart ``r`` is the same
    in a run of any length, so a finished run can be extended)."""
    digest = hashlib.sha256()
    settings = dataclasses.asdict(cfg)
    settings.pop("jit_compile")
    settings["loss"] = settings["loss"] if isinstance(settings["loss"], str) else repr(cfg.loss)
    settings["rule"] = repr(cfg.rule)
    digest.update(json.dumps([settings, seed, steps_per_round], sort_keys=True).encode())
    digest.update(np.ascontiguousarray(x0).tobytes())
    digest.update(np.ascontiguousarray(y).tobytes())
    return digest.hexdigest()


@dataclasses.dataclass
class _Merged:
    """The running worst case over restarts."""

    x: np.ndarray
    score: np.ndarray
    fooled: np.ndarray
    restart_accuracies: List[float]

    def add(self, x_r: np.ndarray, score_r: np.ndarray, success_r: np.ndarray) -> None:
        """Keeps a point from a restart that fools the model, else the highest-scoring one."""
        take = ~self.fooled & (success_r | (score_r > self.score))
        self.x[take] = x_r[take]
        self.score[take] = score_r[take]
        self.fooled |= success_r
        self.restart_accuracies.append(float(np.mean(~success_r)))

    def save(self, path: str, fingerprint: str) -> None:
        """Writes the state atomically (a temporary file, then a rename)."""
        files.atomic_write(path, lambda f: np.savez(
            f, x=self.x, score=self.score, fooled=self.fooled,
            restart_accuracies=np.asarray(self.restart_accuracies, np.float64),
            fingerprint=np.asarray(fingerprint)))

    @classmethod
    def load(cls, path: str, fingerprint: str) -> "_Merged":
        try:
            with np.load(path) as state:
                saved = {key: state[key] for key in
                         ("x", "score", "fooled", "restart_accuracies", "fingerprint")}
        except (OSError, KeyError, EOFError, ValueError) as err:
            raise ValueError(f"cannot read the saved state {path}: {err}; delete it to start "
                             "afresh") from err
        if str(saved["fingerprint"]) != fingerprint:
            raise ValueError(f"the saved state {path} belongs to a different run (other settings, "
                             "seed or data); delete it or run without resuming")
        return cls(saved["x"], saved["score"], saved["fooled"],
                   [float(a) for a in saved["restart_accuracies"]])


def evaluate(model: compiled.Model, x: np.ndarray, y: np.ndarray, loss: Any = "xent",
             batch_size: int = DEFAULT_BATCH, jit_compile: Optional[bool] = None
             ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions ``[N]``, per-example loss ``[N]`` and logits ``[N, C]`` of ``model`` on ``x``."""
    logits_fn = compiled.compiled_logits(model, compiled.resolve_jit_compile(jit_compile))
    logits = np.concatenate([logits_fn(tf.constant(x[i:i + batch_size])).numpy()
                             for i in range(0, len(x), batch_size)])
    losses = get_loss(loss)(tf.constant(logits), tf.constant(y, tf.int32)).numpy()
    return logits.argmax(axis=1), losses, logits


def run(model: compiled.Model, x: Any, y: Any, attack: str = "daa_blob", restarts: int = 1,
        steps_per_round: int = 10, batch_size: Optional[int] = None, seed: int = 0,
        verbose: int = 1, state_path: Optional[str] = None, resume: bool = False,
        strategy: Optional[tf.distribute.Strategy] = None,
        on_restart: Optional[Callable[[int, float, float], None]] = None,
        **attack_params: Any) -> RunResult:
    """Runs ``attack`` over the whole set ``x`` ``[N, ...]`` with labels ``y`` ``[N]``.

    ``attack_params`` are the attack's settings (``eps``, ``step_size``, ``steps``, ``loss``,
    ``random_start``, ``clip_min``, ``clip_max``, ``targeted``, ``c``, ``particles``, ``decay``,
    ``jit_compile``; see :mod:`daa_tf.attacks`). ``batch_size`` is throughput only (for DAA a
    multiple of ``particles``). With ``state_path`` the merged state is saved after every restart;
    ``resume=True`` continues from it (the result equals an uninterrupted run; a state with more
    restarts than asked for is refused). ``on_restart(index, accuracy, seconds)`` is called after
    each restart with that restart's own accuracy and wall time. With a
    ``strategy`` (``tf.distribute``; create the model under its scope) each call runs one batch per
    replica (``batch_size`` is per replica; see :mod:`daa_tf.distribute`): the result is the same.
    """
    cfg = attacks.make_config(attack, **attack_params)
    x0 = validation.as_batch(x, np.float32, "x")
    y = np.asarray(y)
    validation.check_batch(x0, y, cfg.clip_min, cfg.clip_max)
    y = y.astype(np.int32)
    if int(restarts) != restarts or restarts < 1:
        raise ValueError(f"restarts must be a whole number >= 1, got {restarts!r}")
    if int(steps_per_round) != steps_per_round or steps_per_round < 1:
        raise ValueError(f"steps_per_round must be a whole number >= 1, got {steps_per_round!r}")
    n = len(x0)
    batch_size = default_batch_size(cfg, n) if batch_size is None else int(batch_size)
    if batch_size < 1 or (cfg.interacting and batch_size % cfg.particles):
        raise ValueError(f"batch_size must be a positive multiple of particles ({cfg.particles}) "
                         f"for {attack}, got {batch_size}" if cfg.interacting else
                         f"batch_size must be positive, got {batch_size}")
    validation.check_model_output(compiled.compiled_logits(model, cfg.jit_compile),
                                  x0[:32], y)

    fingerprint = _fingerprint(cfg, x0, y, seed, steps_per_round)
    merged: Optional[_Merged] = None
    if state_path and resume and os.path.exists(state_path):
        merged = _Merged.load(state_path, fingerprint)
    done = len(merged.restart_accuracies) if merged else 0
    if done > restarts:
        raise ValueError(f"the saved state {state_path} holds {done} restarts, more than the "
                         f"{restarts} asked for; ask for at least {done} or start afresh")

    schedule = round_lengths(cfg.steps, steps_per_round) if cfg.interacting else [cfg.steps]
    progbar = keras.utils.Progbar(restarts * n * cfg.steps, verbose=verbose,
                                  stateful_metrics=["accuracy"],
                                  unit_name="image-step")
    progress = done * n * cfg.steps
    if verbose and done:
        progbar.update(progress, values=[("accuracy", merged.restart_accuracies[-1])])
    seconds: List[float] = []
    for restart in range(done, restarts):
        started = time.perf_counter()
        x_r = attacks.start_points(cfg, tf.constant(x0), attacks.seed_tensor(seed, restart)).numpy()
        rng = np.random.default_rng([seed, restart])
        for length in schedule:
            order = rng.permutation(n) if cfg.interacting else np.arange(n)
            for idx in _batches(order, batch_size * distribute.num_replicas(strategy)):
                if strategy is None:
                    x_r[idx] = attacks.run_steps(model, cfg, tf.constant(x0[idx]),
                                                 tf.constant(y[idx]), tf.constant(x_r[idx]),
                                                 steps=length).numpy()
                else:  # one batch of batch_size per replica, computed as above
                    x_r[idx] = distribute.run_steps(strategy, model, cfg, x0[idx], y[idx],
                                                    x_r[idx], steps=length, shard_size=batch_size)
                progress += len(idx) * length
                if verbose:
                    progbar.update(progress)
        pred, loss, _ = evaluate(model, x_r, y, cfg.loss, batch_size, cfg.jit_compile)
        success = (pred == y) if cfg.targeted else (pred != y)
        score = -loss if cfg.targeted else loss
        if merged is None:
            merged = _Merged(x_r, score, success.copy(), [float(np.mean(~success))])
        else:
            merged.add(x_r, score, success)
        if state_path:
            merged.save(state_path, fingerprint)
        seconds.append(time.perf_counter() - started)
        if verbose:
            progbar.update(progress, values=[("accuracy", merged.restart_accuracies[-1])])
        if on_restart is not None:
            on_restart(restart, merged.restart_accuracies[-1], seconds[-1])

    pred, _, _ = evaluate(model, merged.x, y, cfg.loss, batch_size, cfg.jit_compile)
    correct = (pred != y) if cfg.targeted else (pred == y)
    return RunResult(x_adv=merged.x, accuracy=float(np.mean(correct)), correct=correct,
                     restart_accuracies=list(merged.restart_accuracies), restart_seconds=seconds)
