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
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

from daa_tf import attacks, catalogue, distribute, files, iterates, validation
from daa_tf import loop
from daa_tf import multitarget
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
class Merged:
    """The running worst case over restarts (or a cascade's stages): per example the point kept,
    its score and whether it fools the model, with the accuracy after each restart (stage)."""

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
    def load(cls, path: str, fingerprint: str) -> "Merged":
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


# Calls on fewer rows than a batch (the last batch, the examples early stop leaves) are padded to
# the next multiple of batch / BUCKETS rows: at most BUCKETS shapes per compiled function (no
# retracing, or XLA recompiling, per subset size) and at most batch / BUCKETS rows of waste.
BUCKETS = 8


def bucket(n: int, batch: int) -> int:
    """The rows a call on ``n <= batch`` rows is padded to (see :data:`BUCKETS`)."""
    step = max(1, -(-batch // BUCKETS))
    return max(n, min(batch, -(-n // step) * step))


def padded(arrays: Sequence[np.ndarray], size: int) -> List[np.ndarray]:
    """``arrays`` (same leading length ``n <= size``) padded to ``size`` rows by repeating their
    last row; the caller keeps the first ``n`` rows of each result (rows are independent)."""
    n = len(arrays[0])
    return [a if n == size else np.concatenate([a, np.repeat(a[-1:], size - n, axis=0)])
            for a in arrays]


def evaluate(model: loop.Model, x: np.ndarray, y: np.ndarray, loss: Any = "xent",
             batch_size: int = catalogue.DEFAULT_BATCH, jit_compile: Optional[bool] = None
             ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions ``[N]``, per-example loss ``[N]`` and logits ``[N, C]`` of ``model`` on ``x``."""
    logits_fn = loop.compiled_logits(model, loop.resolve_jit_compile(jit_compile))
    chunks = []
    for i in range(0, len(x), batch_size):
        part = x[i:i + batch_size]
        (whole,) = padded([part], bucket(len(part), batch_size))
        chunks.append(logits_fn(tf.constant(whole)).numpy()[:len(part)])
    logits = np.concatenate(chunks)
    losses = get_loss(loss)(tf.constant(logits), tf.constant(y, tf.int32)).numpy()
    return logits.argmax(axis=1), losses, logits


def _loop_outputs(model: loop.Model, cfg: attacks.AttackConfig, strategy: Any,
                  x0: np.ndarray, labels: np.ndarray, x_start: np.ndarray, steps: int,
                  batch_size: int) -> Tuple[np.ndarray, ...]:
    """One compiled-loop call on one (global) batch: the last iterate, and with ``cfg.best`` the
    best-iterate state ``(x_best, objective, fooled)``, as NumPy. On one device, a short batch of
    independent examples is padded to its :func:`bucket` (DAA's groups are never padded)."""
    if strategy is None:
        n = len(x0)
        size = n if cfg.interacting else bucket(n, batch_size)
        x0, labels, x_start = padded([x0, labels, x_start], size)
        out = attacks.run_loop(model, cfg, tf.constant(x0), tf.constant(labels),
                               tf.constant(x_start), steps=steps)
        return tuple(t.numpy()[:n] for t in out) if cfg.best else (out.numpy()[:n],)
    # one batch of batch_size per replica, computed as above
    out = distribute.run_loop(strategy, model, cfg, x0, labels, x_start, steps=steps,
                              shard_size=batch_size)
    return out if cfg.best else (out,)


@dataclasses.dataclass
class _Plan:
    """What one call of :func:`run` fixes before attacking: the model and configuration, the
    checked data (``x0`` float32, ``y`` int32), throughput, early stop, MultiTargeted's target
    classes ``[N, k]`` (or None), the ODI start's configuration (or None) and the rounds."""

    model: loop.Model
    cfg: attacks.AttackConfig
    x0: np.ndarray
    y: np.ndarray
    seed: int
    batch_size: int
    strategy: Optional[tf.distribute.Strategy]
    early: bool
    targets: Optional[np.ndarray]
    odi_cfg: Optional[attacks.AttackConfig]
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
        """Model gradients per image and run (the ODI start's and the attack's steps)."""
        s = self.cfg.settings
        return s.odi_steps + s.steps

    @property
    def stride(self) -> int:
        """Examples per compiled call over all replicas."""
        return self.batch_size * distribute.num_replicas(self.strategy)


def _plan(model: loop.Model, x: Any, y: Any, attack: Union[str, catalogue.AttackSettings],
          steps_per_round: int, batch_size: Optional[int], seed: int,
          strategy: Optional[tf.distribute.Strategy], early_stop: Optional[bool],
          attack_params: Dict[str, Any]) -> _Plan:
    """Validates the inputs and settings and fixes everything the restarts share."""
    cfg = attacks.make_config(attack, **attack_params)
    s = cfg.settings
    x0 = validation.as_batch(x, np.float32, "x")
    y = np.asarray(y)
    validation.check_batch(x0, y, s.clip_min, s.clip_max)
    y = y.astype(np.int32)
    steps_per_round = catalogue.whole_number("steps_per_round", steps_per_round, 1)
    if early_stop and cfg.interacting:
        raise ValueError(f"early_stop does not apply to {s.attack}: DAA's particles are the whole "
                         "set, fooled examples included")
    problem = catalogue.batch_size_error(s.attack, batch_size, s.particles)
    if problem:
        raise ValueError(problem)
    batch_size = (catalogue.default_batch_size(s, len(x0)) if batch_size is None
                  else int(batch_size))
    logits_fn = loop.compiled_logits(model, cfg.jit_compile)
    validation.check_model_output(logits_fn, x0[:32], y)
    targets = None
    if s.targets:
        _, _, clean_logits = evaluate(model, x0, y, s.loss, batch_size, cfg.jit_compile)
        targets = multitarget.target_classes(clean_logits, y, s.targets)
    rounds = (round_lengths(s.steps, steps_per_round)
              if cfg.interacting and not cfg.schedule.needs_values else [s.steps])
    return _Plan(model=model, cfg=cfg, x0=x0, y=y, seed=seed, batch_size=batch_size,
                 strategy=strategy,
                 early=(not cfg.interacting) if early_stop is None else bool(early_stop),
                 targets=targets, odi_cfg=attacks.odi_config(cfg) if s.odi_steps else None,
                 classes=int(logits_fn(tf.constant(x0[:1])).shape[-1]) if s.odi_steps else 0,
                 rounds=rounds)


class _Progress:
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
               progress: _Progress) -> None:
    """The ODI start of the ``active`` examples, in place in ``x_r`` (examples are independent:
    batches in order)."""
    s = plan.cfg.settings
    w = attacks.odi_weights(run_seed, plan.n, plan.classes).numpy()
    for idx in _batches(active, plan.stride):
        x_r[idx] = _loop_outputs(plan.model, plan.odi_cfg, plan.strategy, plan.x0[idx], w[idx],
                                 x_r[idx], s.odi_steps, plan.batch_size)[0]
        progress.advance(len(idx) * s.odi_steps)


def _attack_rounds(plan: _Plan, active: np.ndarray, x_r: np.ndarray, labels: np.ndarray,
                   rng: np.random.Generator, progress: _Progress) -> np.ndarray:
    """The attack's rounds over the ``active`` examples (DAA: each round on a new permutation),
    ``x_r`` updated in place; returns each example's result: the last iterate, or its best one
    with ``best``."""
    cfg = plan.cfg
    tracked = None
    if cfg.best:
        tracked = (x_r.copy(), np.full(plan.n, -np.inf, np.float32), np.zeros(plan.n, bool))
    for length in plan.rounds:
        if not cfg.interacting:
            order = active
        else:
            order = rng.permutation(plan.n) if len(active) == plan.n else rng.permutation(active)
        for idx in _batches(order, plan.stride):
            out = _loop_outputs(plan.model, cfg, plan.strategy, plan.x0[idx], labels[idx],
                                x_r[idx], length, plan.batch_size)
            x_r[idx] = out[0]
            if tracked is not None:
                state = [part[idx] for part in tracked]
                iterates.merge(*state, *out[1:])
                for part, value in zip(tracked, state):
                    part[idx] = value
            progress.advance(len(idx) * length)
    return tracked[0] if tracked is not None else x_r


def _restart(plan: _Plan, merged: Optional[Merged], restart: int, progress: _Progress
             ) -> Tuple[Merged, np.ndarray, int]:
    """Restart ``restart``: every run (one per target class) from its own start, merged into
    the worst case. Returns the merged state, which examples this restart fooled (or, with early
    stop, an earlier one did) and the model gradients spent."""
    s = plan.cfg.settings
    n, y = plan.n, plan.y
    restart_seed = attacks.seed_tensor(plan.seed, restart)
    restart_success = np.zeros(n, bool)
    spent = 0
    for k in range(plan.runs):
        run_seed = attacks.target_seed(restart_seed, k) if s.targets else restart_seed
        active = np.arange(n)
        if plan.early and merged is not None:
            active = np.flatnonzero(~merged.fooled)
            restart_success |= merged.fooled
        if not len(active):  # every example fooled already
            progress.advance(n * plan.per_run)
            continue
        x_r = attacks.start_points(plan.cfg, tf.constant(plan.x0), run_seed).numpy()
        labels = y if plan.targets is None else multitarget.target_pairs(y, plan.targets, k)
        if plan.odi_cfg is not None:
            _odi_start(plan, active, x_r, run_seed, progress)
        rng = np.random.default_rng([plan.seed, restart] + ([k] if s.targets else []))
        points = _attack_rounds(plan, active, x_r, labels, rng, progress)
        spent += len(active) * plan.per_run
        progress.advance((n - len(active)) * plan.per_run)
        pred, loss, _ = evaluate(plan.model, points[active], y[active], s.loss, plan.batch_size,
                                 plan.cfg.jit_compile)
        success = (pred == y[active]) if s.targeted else (pred != y[active])
        score = -loss if s.targeted else loss
        restart_success[active] |= success
        if merged is None:  # the first run: every example active
            merged = Merged(points, score, success.copy(), [])
        else:
            merged.update(active, points[active], score, success)
    return merged, restart_success, spent


def _resumed_state(state_path: Optional[str], resume: bool, fingerprint: str,
                   restarts: int) -> Optional[Merged]:
    """The saved state to continue from, if asked for and present (checked against this run)."""
    if not (state_path and resume and os.path.exists(state_path)):
        return None
    merged = Merged.load(state_path, fingerprint)
    done = len(merged.restart_accuracies)
    if done > restarts:
        raise ValueError(f"the saved state {state_path} holds {done} restarts, more than the "
                         f"{restarts} asked for; ask for at least {done} or start afresh")
    return merged


def _cascade(model: loop.Model, x: Any, y: Any,
             attack: Union[str, catalogue.CascadeSettings], attack_params: Dict[str, Any],
             early_stop: Optional[bool], **run_kwargs: Any) -> RunResult:
    """A cascade through :func:`daa_tf.cascade.run` (which runs its stages through :func:`run`)."""
    from daa_tf import cascade

    if isinstance(attack, catalogue.CascadeSettings):
        settings = attack.replace(**attack_params) if attack_params else attack
    else:
        settings = catalogue.cascade_settings(attack, **attack_params)
    if early_stop is False:
        raise ValueError(f"{settings.attack} always stops early: each stage attacks only the "
                         "examples the earlier ones did not fool")
    return cascade.run(model, x, y, settings, **run_kwargs)


def run(model: loop.Model, x: Any, y: Any,
        attack: Union[str, catalogue.RunSettings] = "daa_blob", restarts: int = 1,
        steps_per_round: int = catalogue.DEFAULT_STEPS_PER_ROUND,
        batch_size: Optional[int] = None, seed: int = 0, verbose: int = 1,
        state_path: Optional[str] = None, resume: bool = False,
        strategy: Optional[tf.distribute.Strategy] = None,
        on_restart: Optional[Callable[[int, float, float], None]] = None,
        early_stop: Optional[bool] = None, **attack_params: Any) -> RunResult:
    """Runs ``attack`` over the whole set ``x`` ``[N, ...]`` with labels ``y`` ``[N]``.

    ``attack``: a name of :data:`daa_tf.catalogue.ATTACKS` with ``attack_params`` its settings
    (``eps``, ``step_size``, ``steps``, ``loss``, ``random_start``, ``clip_min``, ``clip_max``,
    ``targeted``, ``c``, ``particles``, ``decay``, ``init``, ``odi_steps``, ``odi_step_size``,
    ``targets``, ``best``, ``jit_compile``; see :mod:`daa_tf.attacks`), or validated
    :class:`daa_tf.catalogue.AttackSettings` (then ``attack_params``, if any, replace some of
    them). ``batch_size`` is throughput only (for DAA a multiple of ``particles``). With
    ``state_path`` the merged state is saved after every restart; ``resume=True`` continues from
    it (the result equals an uninterrupted run; a state with more restarts than asked for is
    refused). ``on_restart(index, accuracy, seconds)`` is called after each restart with that
    restart's own accuracy and wall time. With a ``strategy`` (``tf.distribute``; create the
    model under its scope) each call runs one batch per replica (``batch_size`` is per replica;
    see :mod:`daa_tf.distribute`): the result is the same. ``early_stop`` (default: on for
    attacks whose examples do not interact, refused for DAA): examples already fooled are not
    attacked again by later restarts or target runs; the merged result is the same
    (docs/algorithms.md#early-stop). The result reports the gradient budget per image and the
    gradients actually spent (:class:`RunResult`).

    A cascade (``attack="strongest"`` with ``eps``, ``budget``, ``stages``, the box, or its
    :class:`daa_tf.catalogue.CascadeSettings`) runs through :func:`daa_tf.cascade.run`: its
    restarts repeat the cascade, its restart figures are per stage.
    """
    if catalogue.is_cascade(attack):
        return _cascade(model, x, y, attack, attack_params, early_stop, restarts=restarts,
                        steps_per_round=steps_per_round, batch_size=batch_size, seed=seed,
                        verbose=verbose, state_path=state_path, resume=resume,
                        strategy=strategy, on_restart=on_restart)
    plan = _plan(model, x, y, attack, steps_per_round, batch_size, seed, strategy, early_stop,
                 attack_params)
    restarts = catalogue.whole_number("restarts", restarts, 1)
    fingerprint = _fingerprint(plan.cfg.settings, plan.x0, plan.y, seed,
                               catalogue.whole_number("steps_per_round", steps_per_round, 1),
                               plan.early)
    merged = _resumed_state(state_path, resume, fingerprint, restarts)
    done = len(merged.restart_accuracies) if merged else 0
    per_restart = plan.runs * plan.n * plan.per_run
    progress = _Progress(restarts * per_restart, verbose, done * per_restart,
                         merged.restart_accuracies[-1] if merged else None)
    seconds: List[float] = []
    spent = 0
    for restart in range(done, restarts):
        started = time.perf_counter()
        merged, fooled, spent_here = _restart(plan, merged, restart, progress)
        spent += spent_here
        merged.restart_accuracies.append(float(np.mean(~fooled)))
        if state_path:
            merged.save(state_path, fingerprint)
        seconds.append(time.perf_counter() - started)
        progress.advance(0, merged.restart_accuracies[-1])
        if on_restart is not None:
            on_restart(restart, merged.restart_accuracies[-1], seconds[-1])

    s = plan.cfg.settings
    pred, _, _ = evaluate(model, merged.x, plan.y, s.loss, plan.batch_size, plan.cfg.jit_compile)
    correct = (pred != plan.y) if s.targeted else (pred == plan.y)
    return RunResult(x_adv=merged.x, accuracy=float(np.mean(correct)), correct=correct,
                     restart_accuracies=list(merged.restart_accuracies), restart_seconds=seconds,
                     gradients_per_image=restarts * plan.runs * plan.per_run,
                     gradients_mean=spent / plan.n if restarts > done else 0.0)
