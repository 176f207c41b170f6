"""Algorithm 1 over a whole data set: random starts, rounds over the permuted set, restarts, and
the per-example worst-case merge, with a progress bar and resumable state.

DAA's distribution is the whole evaluation set: every round permutes all ``N`` examples, cuts them
into groups of ``particles`` and runs ``steps_per_round`` steps on every group. Attacks whose
examples do not interact (FGSM, PGD, momentum PGD, APGD) skip the rounds and run all their steps in
one call per batch, which is exactly one uninterrupted run (momentum is never reset mid-run). DAA
under APGD's schedule runs one round per restart (one permutation, all steps): the schedule's state
lives in the loop (docs/algorithms.md#apgd-with-daa-directions).

Each restart runs the ODI start when asked (docs/algorithms.md#odi), then the attack; MultiTargeted
(``targets > 0``) runs the attack once per target class within each restart
(docs/algorithms.md#multitargeted). With ``early_stop`` (the default for attacks whose examples do
not interact), examples already fooled are not attacked again: their merged point cannot change
(docs/algorithms.md#early-stop). DAA always attacks the whole set: it is its particles.

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
from typing import Any, Callable, Iterator, List, Optional, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

from daa_tf import attacks, catalogue, distribute, files, iterates, validation
from daa_tf import loop as compiled
from daa_tf import multitarget as multi
from daa_tf.losses import get_loss


@dataclasses.dataclass
class RunResult:
    """What :func:`run` returns.

    ``x_adv``: the final adversarial set, float32, the input's shape. ``accuracy``: the model's
    accuracy on it (fraction; for targeted attacks the fraction *not* classified as the target).
    ``correct``: per-example bool ``[N]`` behind ``accuracy``. ``restart_accuracies``: accuracy of
    each restart's own points (with early stop, an example skipped because an earlier restart
    fooled it counts as fooled). ``restart_seconds``: wall time of each restart run in this call.
    ``gradients_per_image``: the gradient budget of one image, ``restarts x max(1, targets) x
    (odi_steps + steps)`` (``targets`` at most the number of wrong classes; model gradients: the
    forward passes that judge final points are not counted). ``gradients_mean``: the gradients
    actually computed per image, averaged over the set, for the restarts run in this call
    (smaller than the budget with early stop).
    """

    x_adv: np.ndarray
    accuracy: float
    correct: np.ndarray
    restart_accuracies: List[float]
    restart_seconds: List[float]
    gradients_per_image: int = 0
    gradients_mean: float = 0.0


def round_lengths(steps: int, steps_per_round: int) -> List[int]:
    """``steps`` split into rounds of ``steps_per_round`` (the last may be shorter)."""
    full, rest = divmod(steps, steps_per_round)
    return [steps_per_round] * full + ([rest] if rest else [])


def _batches(order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


# Settings added with APGD, ODI, MultiTargeted and best iterates: left out of the fingerprint at
# their defaults, so that the states of earlier runs stay valid.
_NEW_FIELDS = {"odi_steps": 0, "odi_step_size": None, "targets": 0, "best": False}


def _fingerprint(settings: catalogue.AttackSettings, x0: np.ndarray, y: np.ndarray, seed: int,
                 steps_per_round: int, early_stop: bool = False) -> str:
    """Everything a saved state depends on (not the number of restarts: restart ``r`` is the same
    in a run of any length, so a finished run can be extended)."""
    digest = hashlib.sha256()
    fields = dataclasses.asdict(settings)
    fields.pop("jit_compile")
    fields["loss"] = fields["loss"] if isinstance(fields["loss"], str) else repr(settings.loss)
    for name, default in _NEW_FIELDS.items():
        if fields[name] == default:
            fields.pop(name)
    extra = [True] if early_stop else []  # early stop changes the restart accuracies only
    digest.update(json.dumps([fields, seed, steps_per_round] + extra, sort_keys=True).encode())
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
        self.update(np.arange(len(self.x)), x_r, score_r, success_r)
        self.restart_accuracies.append(float(np.mean(~success_r)))

    def update(self, rows: np.ndarray, x_r: np.ndarray, score_r: np.ndarray,
               success_r: np.ndarray) -> None:
        """Merges the points ``x_r`` of the examples ``rows`` (no restart accuracy recorded)."""
        take = ~self.fooled[rows] & (success_r | (score_r > self.score[rows]))
        self.x[rows[take]] = x_r[take]
        self.score[rows[take]] = score_r[take]
        self.fooled[rows] |= success_r

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
             batch_size: int = catalogue.DEFAULT_BATCH, jit_compile: Optional[bool] = None
             ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions ``[N]``, per-example loss ``[N]`` and logits ``[N, C]`` of ``model`` on ``x``."""
    logits_fn = compiled.compiled_logits(model, compiled.resolve_jit_compile(jit_compile))
    logits = np.concatenate([logits_fn(tf.constant(x[i:i + batch_size])).numpy()
                             for i in range(0, len(x), batch_size)])
    losses = get_loss(loss)(tf.constant(logits), tf.constant(y, tf.int32)).numpy()
    return logits.argmax(axis=1), losses, logits


def _loop_outputs(model: compiled.Model, cfg: attacks.AttackConfig, strategy: Any,
                  x0: np.ndarray, labels: np.ndarray, x_start: np.ndarray, steps: int,
                  batch_size: int) -> Tuple[np.ndarray, ...]:
    """One compiled-loop call on one (global) batch: the last iterate, and with ``cfg.best`` the
    best-iterate state ``(x_best, objective, fooled)``, as NumPy."""
    if strategy is None:
        out = attacks.run_loop(model, cfg, tf.constant(x0), tf.constant(labels),
                               tf.constant(x_start), steps=steps)
        return tuple(t.numpy() for t in out) if cfg.best else (out.numpy(),)
    # one batch of batch_size per replica, computed as above
    out = distribute.run_loop(strategy, model, cfg, x0, labels, x_start, steps=steps,
                              shard_size=batch_size)
    return out if cfg.best else (out,)


def run(model: compiled.Model, x: Any, y: Any,
        attack: Union[str, catalogue.AttackSettings] = "daa_blob", restarts: int = 1,
        steps_per_round: int = catalogue.DEFAULT_STEPS_PER_ROUND, batch_size: Optional[int] = None, seed: int = 0,
        verbose: int = 1, state_path: Optional[str] = None, resume: bool = False,
        strategy: Optional[tf.distribute.Strategy] = None,
        on_restart: Optional[Callable[[int, float, float], None]] = None,
        early_stop: Optional[bool] = None, **attack_params: Any) -> RunResult:
    """Runs ``attack`` over the whole set ``x`` ``[N, ...]`` with labels ``y`` ``[N]``.

    ``attack``: a name of :data:`daa_tf.catalogue.ATTACKS` with ``attack_params`` its settings
    (``eps``, ``step_size``, ...), or validated :class:`daa_tf.catalogue.AttackSettings` (then
    ``attack_params``, if any, replace some of them). The settings (``eps``, ``step_size``, ``steps``, ``loss``,
    ``random_start``, ``clip_min``, ``clip_max``, ``targeted``, ``c``, ``particles``, ``decay``,
    ``init``, ``odi_steps``, ``odi_step_size``, ``targets``, ``best``,
    ``jit_compile``; see :mod:`daa_tf.attacks`). ``batch_size`` is throughput only (for DAA a
    multiple of ``particles``). With ``state_path`` the merged state is saved after every restart;
    ``resume=True`` continues from it (the result equals an uninterrupted run; a state with more
    restarts than asked for is refused). ``on_restart(index, accuracy, seconds)`` is called after
    each restart with that restart's own accuracy and wall time. With a
    ``strategy`` (``tf.distribute``; create the model under its scope) each call runs one batch per
    replica (``batch_size`` is per replica; see :mod:`daa_tf.distribute`): the result is the same.
    ``early_stop`` (default: on for attacks whose examples do not interact, refused for DAA):
    examples already fooled are not attacked again by later restarts or target runs; the merged
    result is the same (docs/algorithms.md#early-stop). The result reports the gradient budget
    per image and the gradients actually spent (:class:`RunResult`).
    """
    cfg = attacks.make_config(attack, **attack_params)
    s = cfg.settings
    x0 = validation.as_batch(x, np.float32, "x")
    y = np.asarray(y)
    validation.check_batch(x0, y, s.clip_min, s.clip_max)
    y = y.astype(np.int32)
    restarts = catalogue.whole_number("restarts", restarts, 1)
    steps_per_round = catalogue.whole_number("steps_per_round", steps_per_round, 1)
    if early_stop and cfg.interacting:
        raise ValueError(f"early_stop does not apply to {s.attack}: DAA's particles are the whole "
                         "set, fooled examples included")
    early = (not cfg.interacting) if early_stop is None else bool(early_stop)
    n = len(x0)
    problem = catalogue.batch_size_error(s.attack, batch_size, s.particles)
    if problem:
        raise ValueError(problem)
    batch_size = catalogue.default_batch_size(s, n) if batch_size is None else int(batch_size)
    logits_fn = compiled.compiled_logits(model, cfg.jit_compile)
    validation.check_model_output(logits_fn, x0[:32], y)
    targets = None
    if s.targets:
        _, _, clean_logits = evaluate(model, x0, y, s.loss, batch_size, cfg.jit_compile)
        targets = multi.target_classes(clean_logits, y, s.targets)
    classes = int(logits_fn(tf.constant(x0[:1])).shape[-1]) if s.odi_steps else 0
    odi_cfg = attacks.odi_config(cfg) if s.odi_steps else None

    fingerprint = _fingerprint(s, x0, y, seed, steps_per_round, early)
    merged: Optional[_Merged] = None
    if state_path and resume and os.path.exists(state_path):
        merged = _Merged.load(state_path, fingerprint)
    done = len(merged.restart_accuracies) if merged else 0
    if done > restarts:
        raise ValueError(f"the saved state {state_path} holds {done} restarts, more than the "
                         f"{restarts} asked for; ask for at least {done} or start afresh")

    rounds = (round_lengths(s.steps, steps_per_round)
              if cfg.interacting and not cfg.schedule.needs_values else [s.steps])
    runs = targets.shape[1] if targets is not None else 1
    per_run = s.odi_steps + s.steps  # gradients per image and run
    progbar = keras.utils.Progbar(restarts * runs * n * per_run, verbose=verbose,
                                  stateful_metrics=["accuracy"], unit_name="image-step")
    progress = done * runs * n * per_run
    if verbose and done:
        progbar.update(progress, values=[("accuracy", merged.restart_accuracies[-1])])
    seconds: List[float] = []
    spent = 0
    replicas = distribute.num_replicas(strategy)
    for restart in range(done, restarts):
        started = time.perf_counter()
        restart_seed = attacks.seed_tensor(seed, restart)
        restart_success = np.zeros(n, bool)
        for k in range(runs):
            run_seed = attacks.target_seed(restart_seed, k) if s.targets else restart_seed
            if early and merged is not None:
                active = np.flatnonzero(~merged.fooled)
                restart_success |= merged.fooled
            else:
                active = np.arange(n)
            if not len(active):  # every example fooled already
                progress += n * per_run
                continue
            x_r = attacks.start_points(cfg, tf.constant(x0), run_seed).numpy()
            labels = y if targets is None else multi.target_pairs(y, targets, k)
            if odi_cfg is not None:  # independent per example: batches in order
                w = attacks.odi_weights(run_seed, n, classes).numpy()
                for idx in _batches(active, batch_size * replicas):
                    x_r[idx] = _loop_outputs(model, odi_cfg, strategy, x0[idx], w[idx], x_r[idx],
                                             s.odi_steps, batch_size)[0]
                    progress += len(idx) * s.odi_steps
                    if verbose:
                        progbar.update(progress)
            tracked = None
            if cfg.best:
                tracked = (x_r.copy(), np.full(n, -np.inf, np.float32), np.zeros(n, bool))
            rng = np.random.default_rng([seed, restart] + ([k] if s.targets else []))
            for length in rounds:
                if not cfg.interacting:
                    order = active
                elif len(active) == n:
                    order = rng.permutation(n)
                else:
                    order = rng.permutation(active)
                for idx in _batches(order, batch_size * replicas):
                    out = _loop_outputs(model, cfg, strategy, x0[idx], labels[idx], x_r[idx],
                                        length, batch_size)
                    x_r[idx] = out[0]
                    if tracked is not None:
                        state = [part[idx] for part in tracked]
                        iterates.merge(*state, *out[1:])
                        for part, value in zip(tracked, state):
                            part[idx] = value
                    progress += len(idx) * length
                    if verbose:
                        progbar.update(progress)
            spent += len(active) * per_run
            progress += (n - len(active)) * per_run
            points = tracked[0] if tracked is not None else x_r
            pred, loss, _ = evaluate(model, points[active], y[active], s.loss, batch_size,
                                     cfg.jit_compile)
            success = (pred == y[active]) if s.targeted else (pred != y[active])
            score = -loss if s.targeted else loss
            restart_success[active] |= success
            if merged is None:  # the first run: every example active
                merged = _Merged(points, score, success.copy(), [])
            else:
                merged.update(active, points[active], score, success)
        merged.restart_accuracies.append(float(np.mean(~restart_success)))
        if state_path:
            merged.save(state_path, fingerprint)
        seconds.append(time.perf_counter() - started)
        if verbose:
            progbar.update(progress, values=[("accuracy", merged.restart_accuracies[-1])])
        if on_restart is not None:
            on_restart(restart, merged.restart_accuracies[-1], seconds[-1])

    pred, _, _ = evaluate(model, merged.x, y, s.loss, batch_size, cfg.jit_compile)
    correct = (pred != y) if s.targeted else (pred == y)
    ran = restarts - done
    return RunResult(x_adv=merged.x, accuracy=float(np.mean(correct)), correct=correct,
                     restart_accuracies=list(merged.restart_accuracies), restart_seconds=seconds,
                     gradients_per_image=restarts * runs * per_run,
                     gradients_mean=spent / n if ran else 0.0)
