"""Algorithm 1 over a whole data set, for one attack: random starts, rounds over the permuted
set, restarts, target runs, and the per-example worst-case merge, with a progress bar and
resumable state.

DAA's distribution is the whole evaluation set: every round permutes all ``N`` examples, cuts them
into groups of ``particles`` and runs ``steps_per_round`` steps on every group. Attacks whose
examples do not interact (FGSM, PGD, momentum PGD, APGD) skip the rounds and run all their steps in
one call per batch, which is exactly one uninterrupted run (momentum is never reset mid-run). DAA
under APGD's schedule runs one round per restart (one permutation, all steps): the schedule's state
lives in the loop (docs/algorithms.md#apgd-with-daa-directions).

Each restart runs the ODI start when asked (docs/algorithms.md#odi), then the attack; with
``targets > 0`` (MultiTargeted) it runs the attack once per target class
(docs/algorithms.md#multitargeted). With ``early_stop`` (the default for attacks whose examples do
not interact), examples already fooled are not attacked again: their merged point cannot change
(docs/algorithms.md#early-stop). DAA always attacks the whole set: it is its particles.

Randomness is stateless and keyed by ``(seed, restart)``: a resumed run (or one extended by more
restarts) equals an uninterrupted one, and batches only set throughput (bit for bit, results need
the same ``batch_size``: CPU kernels may round an example's row differently in batches of other
sizes, see :mod:`daa_tf.distribute`).
"""
import dataclasses
import time
from typing import Any, Callable, List, Optional, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

from daa_tf import distribute, engine, iterates, loop, validation
from daa_tf.batching import (batches, bucket, buckets_for, default_batch_size, multiple_error,
                             padded)
from daa_tf.predict import evaluate
from daa_tf.results import Merged, RunResult, fingerprint, resumed
from daa_tf.settings import AttackSettings, whole_number
from daa_tf.specs import DEFAULT_SEED, DEFAULT_STEPS_PER_ROUND
from daa_tf.targets import target_classes, target_pairs

OnRestart = Callable[[int, float, float], None]


def round_lengths(steps: int, steps_per_round: int) -> List[int]:
    """``steps`` split into rounds of ``steps_per_round`` (the last may be shorter)."""
    full, rest = divmod(steps, steps_per_round)
    return [steps_per_round] * full + ([rest] if rest else [])


def _loop_outputs(model: loop.Model, cfg: engine.AttackConfig, strategy: Any,
                  x0: np.ndarray, labels: np.ndarray, x_start: np.ndarray, steps: int,
                  batch_size: int, keys: Optional[np.ndarray] = None) -> Tuple[np.ndarray, ...]:
    """One compiled-loop call on one (global) batch: the last iterate, with ``cfg.best`` the
    best-iterate state ``(x_best, objective, fooled)``, then with ``cfg.counts_queries`` the
    queries per example, as NumPy (:func:`daa_tf.engine.outputs`). ``keys``: the rows' keys
    (a random schedule's). On one device, a short batch of independent examples is padded to
    its :func:`~daa_tf.batching.bucket`, finer for a plain graph than under XLA (DAA's groups are
    never padded)."""
    if strategy is None:
        n = len(x0)
        size = n if cfg.interacting else bucket(n, batch_size, buckets_for(cfg.jit_compile))
        arrays = padded([x0, labels, x_start] + ([] if keys is None else [keys]), size)
        out = engine.run_loop(model, cfg, *(tf.constant(a) for a in arrays[:3]), steps=steps,
                              keys=None if keys is None else tf.constant(arrays[3]))
        return tuple(t.numpy()[:n] for t in engine.outputs(cfg, out))
    # one batch of batch_size per replica, computed as above
    out = distribute.run_loop(strategy, model, cfg, x0, labels, x_start, steps=steps,
                              shard_size=batch_size, keys=keys)
    return engine.outputs(cfg, out)


@dataclasses.dataclass
class _Plan:
    """What one call of :func:`run` fixes before attacking: the model and configuration, the
    checked data (``x0`` float32, ``y`` int32), throughput, early stop, MultiTargeted's target
    classes ``[N, k]`` (or None), the ODI start's configuration (or None) and the rounds."""

    model: loop.Model
    cfg: engine.AttackConfig
    x0: np.ndarray
    y: np.ndarray
    seed: int
    batch_size: int
    strategy: Optional[tf.distribute.Strategy]
    early: bool
    targets: Optional[np.ndarray]
    odi_cfg: Optional[engine.AttackConfig]
    classes: int
    rounds: List[int]

    @property
    def n(self) -> int:
        return len(self.x0)

    @property
    def runs(self) -> int:
        """Attack runs per restart: one per target class (MultiTargeted), else one."""
        return self.targets.shape[1] if self.targets is not None else 1

    @property
    def per_run(self) -> int:
        """Model passes per image and run (the ODI start's and the attack's steps): the
        progress bar's image-steps."""
        s = self.cfg.settings
        return s.odi_steps + s.steps

    @property
    def gradients_per_run(self) -> int:
        """Model gradients per image and run (a query attack's steps are forward passes)."""
        s = self.cfg.settings
        return s.odi_steps + (s.steps if self.cfg.gradients else 0)

    @property
    def stride(self) -> int:
        """Examples per compiled call over all replicas."""
        return self.batch_size * distribute.num_replicas(self.strategy)


def _plan(model: loop.Model, x: Any, y: Any, cfg: engine.AttackConfig, steps_per_round: int,
          batch_size: Optional[int], seed: int, strategy: Optional[tf.distribute.Strategy],
          early_stop: Optional[bool]) -> _Plan:
    """Validates the inputs and settings and fixes everything the restarts share."""
    s = cfg.settings
    x0 = validation.as_batch(x, np.float32, "x")
    y = validation.check_batch(x0, np.asarray(y), s.clip_min, s.clip_max).astype(np.int32)
    if early_stop and cfg.interacting:
        raise ValueError(f"early_stop does not apply to {s.attack}: DAA's particles are the whole "
                         "set, fooled examples included")
    problem = multiple_error(s.attack, batch_size, s.batch_multiple)
    if problem:
        raise ValueError(problem)
    batch_size = default_batch_size(s.batch_multiple, len(x0)) if batch_size is None \
        else int(batch_size)
    logits_fn = loop.compiled_logits(model, cfg.jit_compile)
    validation.check_model_output(logits_fn, x0[:32], y)
    targets = None
    if s.targets:
        _, _, clean_logits = evaluate(model, x0, y, s.loss, batch_size, cfg.jit_compile)
        targets = target_classes(clean_logits, y, s.targets)
    rounds = (round_lengths(s.steps, steps_per_round)
              if cfg.interacting and not cfg.schedule.needs_values else [s.steps])
    return _Plan(model=model, cfg=cfg, x0=x0, y=y, seed=seed, batch_size=batch_size,
                 strategy=strategy,
                 early=(not cfg.interacting) if early_stop is None else bool(early_stop),
                 targets=targets, odi_cfg=engine.odi_config(cfg) if s.odi_steps else None,
                 classes=engine.num_classes(model, x0) if s.odi_steps else 0, rounds=rounds)


class Progress:
    """The progress bar in image-steps (one per model gradient of one image)."""

    def __init__(self, total: int, verbose: int, done: int = 0,
                 accuracy: Optional[float] = None) -> None:
        self.verbose, self.count = verbose, done
        self.bar = keras.utils.Progbar(total, verbose=verbose, stateful_metrics=["accuracy"],
                                       unit_name="image-step")
        if verbose and done:
            self.bar.update(done, values=[("accuracy", accuracy)])

    def advance(self, image_steps: int, accuracy: Optional[float] = None) -> None:
        self.count += image_steps
        if self.verbose:
            self.bar.update(self.count, values=None if accuracy is None
                            else [("accuracy", accuracy)])


def _odi_start(plan: _Plan, active: np.ndarray, x_r: np.ndarray, run_seed: tf.Tensor,
               progress: Progress) -> None:
    """The ODI start of the ``active`` examples, in place in ``x_r`` (examples are independent:
    batches in order); the weights are drawn for the whole set."""
    s = plan.cfg.settings
    w = engine.odi_weights(run_seed, plan.n, plan.classes).numpy()
    for idx in batches(active, plan.stride):
        x_r[idx] = _loop_outputs(plan.model, plan.odi_cfg, plan.strategy, plan.x0[idx], w[idx],
                                 x_r[idx], s.odi_steps, plan.batch_size)[0]
        progress.advance(len(idx) * s.odi_steps)


def _attack_rounds(plan: _Plan, active: np.ndarray, x_r: np.ndarray, labels: np.ndarray,
                   rng: np.random.Generator, progress: Progress, keys: Optional[np.ndarray]
                   ) -> Tuple[np.ndarray, int]:
    """The attack's rounds over the ``active`` examples (DAA: each round on a new permutation),
    ``x_r`` updated in place; returns each example's result (the last iterate, or its best one
    with ``best``) and the queries a query attack spent (0 for the others). ``keys``: the
    whole set's keys of a random schedule (None otherwise)."""
    cfg = plan.cfg
    spent = 0
    tracked = None
    if cfg.best:
        tracked = (x_r.copy(), np.full(plan.n, -np.inf, np.float32), np.zeros(plan.n, bool))
    for length in plan.rounds:
        if not cfg.interacting:
            order = active
        else:
            order = rng.permutation(plan.n) if len(active) == plan.n else rng.permutation(active)
        for idx in batches(order, plan.stride):
            out = _loop_outputs(plan.model, cfg, plan.strategy, plan.x0[idx], labels[idx],
                                x_r[idx], length, plan.batch_size,
                                None if keys is None else keys[idx])
            x_r[idx] = out[0]
            if cfg.counts_queries:
                spent += int(out[-1].sum())
            if tracked is not None:
                state = [part[idx] for part in tracked]
                iterates.merge(*state, *out[1:4])
                for part, value in zip(tracked, state):
                    part[idx] = value
            progress.advance(len(idx) * length)
    return (tracked[0] if tracked is not None else x_r), spent


def _run(plan: _Plan, merged: Optional[Merged], restart: int, k: int, progress: Progress
         ) -> Tuple[Merged, np.ndarray, np.ndarray, int]:
    """Run ``k`` (the ``k``-th target class; 0 without targets) of restart ``restart`` from its
    own start, merged into the worst case. Returns the merged state, the examples attacked,
    which of them this run fooled and the queries it spent (a query attack's)."""
    s = plan.cfg.settings
    restart_seed = engine.seed_tensor(plan.seed, restart)
    run_seed = engine.target_seed(restart_seed, k) if s.targets else restart_seed
    active = np.arange(plan.n)
    if plan.early and merged is not None:
        active = np.flatnonzero(~merged.fooled)
    if not len(active):  # every example fooled already
        return merged, active, np.zeros(0, bool), 0
    x_r = engine.start_points(plan.cfg, tf.constant(plan.x0), run_seed, restart).numpy()
    labels = plan.y if plan.targets is None else target_pairs(plan.y, plan.targets, k)
    if plan.odi_cfg is not None:
        _odi_start(plan, active, x_r, run_seed, progress)
    rng = np.random.default_rng([plan.seed, restart] + ([k] if s.targets else []))
    keys = engine.example_keys(run_seed, plan.n).numpy() if plan.cfg.random else None
    x_r, queries = _attack_rounds(plan, active, x_r, labels, rng, progress, keys)
    y = plan.y[active]
    pred, loss, _ = evaluate(plan.model, x_r[active], y, s.loss, plan.batch_size,
                             plan.cfg.jit_compile)
    success = (pred == y) if s.targeted else (pred != y)
    score = -loss if s.targeted else loss
    if merged is None:  # the first run: every example active
        merged = Merged(x_r, score, success.copy(), [])
    else:
        merged.update(active, x_r[active], score, success)
    return merged, active, success, queries


def _restart(plan: _Plan, merged: Optional[Merged], restart: int, progress: Progress
             ) -> Tuple[Merged, float, int, int]:
    """Restart ``restart``: every run (one per target class), merged into the worst case.
    Returns the merged state, this restart's accuracy (with early stop, examples an earlier
    restart fooled count as fooled), the model gradients and the queries spent."""
    fooled = np.zeros(plan.n, bool)
    spent = queries = 0
    for k in range(plan.runs):
        if plan.early and merged is not None:
            fooled |= merged.fooled
        merged, active, success, queried = _run(plan, merged, restart, k, progress)
        fooled[active] |= success
        spent += len(active) * plan.gradients_per_run
        queries += queried
        progress.advance((plan.n - len(active)) * plan.per_run)
    return merged, float(np.mean(~fooled)), spent, queries


def _fingerprint(plan: _Plan, steps_per_round: int) -> str:
    """Everything a saved state depends on (not the number of restarts: restart ``r`` is the same
    in a run of any length, so a finished run can be extended)."""
    fields = dataclasses.asdict(plan.cfg.settings)
    fields.pop("jit_compile")
    if not isinstance(fields["loss"], str):
        fields["loss"] = repr(plan.cfg.settings.loss)
    extra = [True] if plan.early else []  # early stop changes the restart accuracies only
    return fingerprint([fields, plan.seed, steps_per_round] + extra, plan.x0, plan.y)


def _skip_mask(plan: _Plan, skip: Any) -> np.ndarray:
    """``skip`` checked: ``[N]`` bool, and only for a run with early stop."""
    skip = np.array(skip, bool)
    if skip.shape != (plan.n,):
        raise ValueError(f"skip must be a [N] mask of the {plan.n} examples, got shape "
                         f"{skip.shape}")
    if not plan.early:
        raise ValueError(f"skip needs early stop: {plan.cfg.settings.attack} attacks every "
                         "example on every restart")
    return skip


def run(model: loop.Model, x: Any, y: Any, attack: Union[str, AttackSettings] = "daa_blob",
        restarts: int = 1, steps_per_round: int = DEFAULT_STEPS_PER_ROUND,
        batch_size: Optional[int] = None, seed: int = DEFAULT_SEED, verbose: int = 1,
        state_path: Optional[str] = None, resume: bool = False,
        strategy: Optional[tf.distribute.Strategy] = None,
        on_restart: Optional[OnRestart] = None, early_stop: Optional[bool] = None,
        skip: Optional[np.ndarray] = None, **attack_params: Any) -> RunResult:
    """One attack over the whole set ``x`` ``[N, ...]`` with labels ``y`` ``[N]``; what
    ``daa_tf.run`` does with an attack (its docstring documents the arguments).
    ``on_restart(index, accuracy, seconds)``: after each restart, the running accuracy of the
    worst case so far and the restart's wall time. ``skip`` ``[N]`` bool (a cascade's examples
    fooled by earlier stages; needs early stop): those examples are not attacked (they keep
    ``x`` and count as fooled in the restart accuracies) while every other example gets exactly
    the starts and draws of a run on the whole set (docs/algorithms.md#strongest)."""
    cfg = engine.make_config(attack, **attack_params)
    steps_per_round = whole_number("steps_per_round", steps_per_round, 1)
    plan = _plan(model, x, y, cfg, steps_per_round, batch_size, seed, strategy, early_stop)
    restarts = whole_number("restarts", restarts, 1)
    key = _fingerprint(plan, steps_per_round)
    if skip is not None:
        skip = _skip_mask(plan, skip)
        key = fingerprint([key, np.packbits(skip).tobytes().hex()], plan.x0, plan.y)
    merged = resumed(state_path, resume, key, restarts, "restarts")
    if merged is None and skip is not None:
        merged = Merged(plan.x0.copy(), np.full(plan.n, -np.inf, np.float32), skip, [])
    done = len(merged.restart_accuracies) if merged else 0
    per_restart = plan.runs * plan.n * plan.per_run
    progress = Progress(restarts * per_restart, verbose, done * per_restart,
                        merged.restart_accuracies[-1] if done else None)
    seconds: List[float] = []
    spent = queries = 0
    for restart in range(done, restarts):
        started = time.perf_counter()
        merged, accuracy, spent_here, queried = _restart(plan, merged, restart, progress)
        spent += spent_here
        queries += queried
        merged.restart_accuracies.append(accuracy)
        if state_path:
            merged.save(state_path, key)
        seconds.append(time.perf_counter() - started)
        progress.advance(0, accuracy)
        if on_restart is not None:
            on_restart(restart, merged.accuracy, seconds[-1])
    return _result(plan, merged, restarts, done, seconds, spent, queries)


def _result(plan: _Plan, merged: Merged, restarts: int, done: int, seconds: List[float],
            spent: int, queries: int) -> RunResult:
    """The :class:`RunResult` of a finished run: the merged points judged once more."""
    s = plan.cfg.settings
    pred, _, _ = evaluate(plan.model, merged.x, plan.y, s.loss, plan.batch_size,
                          plan.cfg.jit_compile)
    correct = (pred != plan.y) if s.targeted else (pred == plan.y)
    return RunResult(x_adv=merged.x, accuracy=float(np.mean(correct)), correct=correct,
                     restart_accuracies=list(merged.restart_accuracies), restart_seconds=seconds,
                     gradients_per_image=restarts * plan.runs * plan.gradients_per_run,
                     gradients_mean=spent / plan.n if restarts > done else 0.0,
                     queries_per_image=(0 if plan.cfg.gradients
                                        else restarts * plan.runs * plan.cfg.settings.steps),
                     queries_mean=queries / plan.n if restarts > done else 0.0)
