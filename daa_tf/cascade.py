"""The strongest-first cascade (docs/algorithms.md#strongest): attacks run one after another, each
on the examples still classified correctly, the worst case kept, within a gradient budget.

Each stage is an ordinary run of the driver (:func:`daa_tf.driver.run`: restarts, early stop,
ODI, targets) on the examples the earlier stages did not fool, so the cascade spends its budget
where it is still needed. The stages and the default sequence are catalogue entries
(:mod:`daa_tf.stages`); ``daa_tf.run`` runs a cascade's settings through :func:`run` here, so
every runner takes ``--attack=strongest``. Restarts repeat the whole cascade (new seeds) on the
examples still classified correctly; the state is saved after every stage.
"""
import time
from typing import Any, Callable, Collection, List, Optional, Sequence, Tuple

import numpy as np

from daa_tf import checks, device, driver, loop, validation
from daa_tf.batching import multiple_error
from daa_tf.predict import evaluate
from daa_tf.results import Merged, RunResult, fingerprint, resumed
from daa_tf.settings import whole_number
from daa_tf.specs import ATTACKS, DEFAULT_BATCH, DEFAULT_SEED
from daa_tf.specs import DEFAULT_STEPS_PER_ROUND
from daa_tf.stages import CascadeSettings, Stage, reinvested

OnStage = Callable[[int, Stage, float, float], None]

# What AutoAttack's checks look at (a cascade whose spec has checks): the model before the run,
# the figures after it. A streamed run asks for each once (docs/algorithms.md#streaming).
CHECKS = ("model", "figures")


def stage_seed(seed: int, index: int) -> int:
    """The seed of stage ``index`` (counted over restarts): ``SeedSequence([seed, index])``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _fingerprint(settings: CascadeSettings, stages: Sequence[Stage], x0: np.ndarray,
                 y: np.ndarray, seed: int) -> str:
    """Everything a saved cascade state depends on (not the number of restarts)."""
    return fingerprint([settings.attack, settings.eps, settings.clip_min, settings.clip_max,
                        [s.record() for s in stages], seed, settings.reinvests], x0, y)


def _sized(settings: CascadeSettings, stages: Sequence[Stage], index: int, clean: float,
           accuracies: Sequence[float], n: int, classes: int) -> Stage:
    """Stage ``index`` (counted over the restarts) as it runs: for the default sequence, sized
    from the images still correct when it and the earlier stages of its pass started
    (:func:`daa_tf.stages.reinvested`; recomputed from the saved accuracies, so a resumed run
    sizes it alike), else as given."""
    stage = stages[index % len(stages)]
    if not settings.reinvests:
        return stage
    before = [clean, *accuracies]  # accuracy before each stage so far, then before this one
    first = index - index % len(stages)
    starts = [int(round(before[j] * n)) for j in range(first, index + 1)]
    return reinvested(stages, settings.budget, starts, classes)[-1]


def _initial_state(model: loop.Model, x0: np.ndarray, y: np.ndarray, batch_size: int,
                   jit_compile: Optional[bool]) -> "tuple[Merged, int]":
    """The clean images as the starting worst case (examples misclassified already count as
    fooled), and the model's number of classes."""
    pred, score, logits = evaluate(model, x0, y, "margin", batch_size, jit_compile)
    return Merged(x0.copy(), score, pred != y, []), int(logits.shape[1])


# Images the checks of a cascade with checks (AutoAttack's) look at: its first batch.
CHECKED_IMAGES = 250


def _check_model(model: loop.Model, x0: np.ndarray, y: np.ndarray, classes: int,
                 stages: Sequence[Stage], jit_compile: Optional[bool]) -> None:
    """AutoAttack's checks of the model before a run (:mod:`daa_tf.checks`): logits, not
    probabilities; the same outputs on every call; non-zero gradients; enough classes."""
    x, y = x0[:CHECKED_IMAGES], y[:CHECKED_IMAGES]
    logits_fn = loop.compiled_logits(model, device.resolve_jit_compile(jit_compile))
    checks.check_logits(logits_fn(x).numpy())
    checks.check_deterministic(logits_fn, x, y)
    checks.check_gradients(model, x, y)
    targets = max([stage.resolved().targets for stage in stages] + [0])
    if targets:
        checks.check_classes(classes, targets)


def check_figures(clean: float, labels: Sequence[str], accuracies: Sequence[float]) -> None:
    """AutoAttack's check of a run's figures (:func:`daa_tf.checks.check_square`): ``clean``
    and the running accuracy after each stage (fractions), ``labels`` the stages' labels."""
    square = ATTACKS["square"].label
    checks.check_square({"clean": clean, **{
        ("square" if label == square or label.startswith(square + "-") else f"{label} {i}"): acc
        for i, (label, acc) in enumerate(zip(labels, accuracies))}})


def _stage(model: loop.Model, merged: Merged, x0: np.ndarray, y: np.ndarray,
           settings: CascadeSettings, stage: Stage, seed: int, batch: int,
           given_batch: Optional[int], run_kwargs: dict) -> Tuple[float, float]:
    """One stage on the examples ``merged`` has not fooled, merged in place (the first point
    that fools an example is kept, else the highest margin). An attack of independent examples
    runs on the whole set with the fooled ones skipped, so each example gets the starts and
    draws it gets from the stage run alone with ``seed``. Returns the gradients and the
    queries (a query attack's forward passes) spent.
    ``batch``: the whole set's batch, which every stage of independent examples keeps (shapes
    from :func:`daa_tf.batching.bucket`, no retrace per stage); a DAA stage takes
    ``given_batch`` (the caller's, a whole number of its groups; None: its default)."""
    rows = np.flatnonzero(~merged.fooled)
    if not len(rows):
        return 0.0, 0.0
    interacting = ATTACKS[stage.attack].interacting
    common = dict(restarts=stage.restarts, seed=seed, eps=settings.eps,
                  clip_min=settings.clip_min, clip_max=settings.clip_max,
                  jit_compile=settings.jit_compile, **run_kwargs, **stage.settings)
    if interacting:  # DAA: its particles are the examples still correct
        result = driver.run(model, x0[rows], y[rows], stage.attack, batch_size=given_batch,
                            **common)
        x_r, n = result.x_adv, len(rows)
    else:  # the whole set's draws, the fooled examples skipped: as the stage run alone
        result = driver.run(model, x0, y, stage.attack, batch_size=batch,
                            skip=merged.fooled.copy(), **common)
        x_r, n = result.x_adv[rows], len(x0)
    pred, score, _ = evaluate(model, x_r, y[rows], "margin", batch, settings.jit_compile)
    merged.update(rows, x_r, score, pred != y[rows])
    return result.gradients_mean * n, result.queries_mean * n


def run(model: loop.Model, x: Any, y: Any, settings: CascadeSettings, restarts: int = 1,
        batch_size: Optional[int] = None, seed: int = DEFAULT_SEED, verbose: int = 1,
        state_path: Optional[str] = None, resume: bool = False, strategy: Any = None,
        on_restart: Optional[driver.OnRestart] = None,
        steps_per_round: int = DEFAULT_STEPS_PER_ROUND, on_stage: Optional[OnStage] = None,
        checks_made: Collection[str] = CHECKS) -> RunResult:
    """The cascade ``settings`` over the whole set ``x`` ``[N, ...]`` (pixel units in the box),
    labels ``y`` ``[N]``; what ``daa_tf.run`` does with a cascade's settings (same arguments:
    ``batch_size``, ``verbose``, ``strategy``, ``steps_per_round`` go to every stage's run).

    ``restarts`` repeat the whole cascade on the examples still classified correctly (stage
    ``i`` counted over the restarts takes the seed :func:`stage_seed` ``(seed, i)``). Examples
    misclassified already keep their clean image; a fooled example keeps the first point that
    fooled it, one never fooled the point of highest margin ``max_{j != y} z_j - z_y`` over the
    stages. With ``state_path`` the state is saved after every stage and ``resume=True``
    continues from it (the result equals an uninterrupted run). ``on_restart(index, accuracy,
    seconds)`` is called after every stage (``index`` counted over the restarts) with the
    running accuracy; ``on_stage(index, stage, accuracy, seconds)`` likewise, with the stage.
    The result's ``restart_accuracies`` / ``restart_seconds`` hold one entry per stage,
    ``gradients_per_image`` is ``restarts x`` the stages' budgets (the default sequence:
    ``restarts x budget``, its stages sized as they start), ``gradients_mean`` the
    gradients spent per image in this call; ``queries_per_image`` / ``queries_mean`` likewise
    for the query stages (Square). ``checks_made``: which of :data:`CHECKS` a cascade with
    checks (AutoAttack's) makes.
    """
    x0 = validation.as_batch(x, np.float32, "x")
    y = validation.check_batch(x0, np.asarray(y), settings.clip_min,
                               settings.clip_max).astype(np.int32)
    restarts = whole_number("restarts", restarts, 1)
    problem = multiple_error(settings.attack, batch_size, settings.batch_multiple)
    if problem:
        raise ValueError(problem)
    batch = batch_size or min(DEFAULT_BATCH, len(x0))
    merged, classes = _initial_state(model, x0, y, batch, settings.jit_compile)
    clean = merged.accuracy
    stages = settings.stages_for(classes)
    if settings.spec.checks and "model" in checks_made and not (resume and state_path):
        _check_model(model, x0, y, classes, stages, settings.jit_compile)
    key = _fingerprint(settings, stages, x0, y, seed)
    merged = resumed(state_path, resume, key, restarts * len(stages), "stages") or merged
    done = len(merged.restart_accuracies)
    run_kwargs = dict(verbose=verbose, steps_per_round=steps_per_round,
                      **({"strategy": strategy} if strategy is not None else {}))
    seconds: List[float] = []
    spent = queried = 0.0
    for index in range(done, restarts * len(stages)):
        started = time.perf_counter()
        stage = _sized(settings, stages, index, clean, merged.restart_accuracies, len(x0),
                       classes)
        spent_here, queried_here = _stage(model, merged, x0, y, settings, stage,
                                          stage_seed(seed, index), batch, batch_size, run_kwargs)
        spent += spent_here
        queried += queried_here
        merged.restart_accuracies.append(merged.accuracy)
        if state_path:
            merged.save(state_path, key)
        seconds.append(time.perf_counter() - started)
        for callback, args in ((on_restart, (index,)), (on_stage, (index, stage))):
            if callback is not None:
                callback(*args, merged.accuracy, seconds[-1])
    pred, _, _ = evaluate(model, merged.x, y, "xent", batch, settings.jit_compile)
    correct = pred == y
    labels = [stages[i % len(stages)].label for i in range(len(merged.restart_accuracies))]
    if settings.spec.checks and "figures" in checks_made:
        check_figures(clean, labels, merged.restart_accuracies)
    return RunResult(x_adv=merged.x, accuracy=float(np.mean(correct)), correct=correct,
                     restart_accuracies=list(merged.restart_accuracies), restart_seconds=seconds,
                     gradients_per_image=restarts * (settings.budget if settings.reinvests else
                                                     sum(s.gradients(classes) for s in stages)),
                     gradients_mean=spent / len(x0),
                     queries_per_image=restarts * sum(s.queries(classes) for s in stages),
                     queries_mean=queried / len(x0), clean_accuracy=clean, stage_labels=labels)
