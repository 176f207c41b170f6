"""The whole-set entry points: ``daa_tf.run``, ``daa_tf.strongest`` and ``daa_tf.autoattack``,
on arrays (:func:`daa_tf.runs.run`: the driver or the cascade) or on a ``tf.data.Dataset``
(:func:`daa_tf.stream.run`, batch by batch)."""
from typing import Any, Optional, Sequence, Union

import tensorflow as tf

from daa_tf import cascade, driver, loop, runs, stream
from daa_tf.cascade import OnStage
from daa_tf.results import RunResult
from daa_tf.specs import DEFAULT_BUDGET, DEFAULT_SEED, DEFAULT_STEPS_PER_ROUND
from daa_tf.stages import CascadeSettings, RunSettings, Stage, cascade_settings
from daa_tf.stream import StreamResult


def run(model: loop.Model, x: Any, y: Any = None,
        attack: Union[str, RunSettings] = "daa_blob",
        restarts: int = 1, steps_per_round: int = DEFAULT_STEPS_PER_ROUND,
        batch_size: Optional[int] = None, seed: int = DEFAULT_SEED, verbose: int = 1,
        state_path: Optional[str] = None, resume: bool = False,
        strategy: Optional[tf.distribute.Strategy] = None,
        on_restart: Optional[driver.OnRestart] = None, early_stop: Optional[bool] = None,
        **attack_params: Any) -> Union[RunResult, StreamResult]:
    """Runs ``attack`` over the whole set ``x`` ``[N, ...]`` (pixel units in the box) with labels
    ``y`` ``[N]`` (targets when ``targeted``).

    ``attack``: a name of :data:`daa_tf.specs.RUNNABLE` with ``attack_params`` its settings (the
    attack functions' settings: ``eps``, ``step_size``, ``steps``, ``loss``, ``random_start``,
    ``clip_min``, ``clip_max``, ``targeted``, ``c``, ``particles``, ``decay``, ``init``,
    ``odi_steps``, ``odi_step_size``, ``targets``, ``best``, ``jit_compile``; a cascade's:
    ``eps``, ``budget``, ``stages``, the box), or validated settings
    (:class:`daa_tf.settings.AttackSettings`, :class:`daa_tf.stages.CascadeSettings`; then
    ``attack_params``, if any, replace some of them). ``batch_size`` is throughput only (for DAA
    a multiple of ``particles``). ``verbose`` 1 shows a progress bar, 0 none. With
    ``state_path`` the merged state is saved after every restart (a cascade's: every stage);
    ``resume=True`` continues from it (the result equals an uninterrupted run; a state with more
    restarts than asked for is refused). ``on_restart(index, accuracy, seconds)`` is called
    after each restart (a cascade's: each stage) with the running robust accuracy of the worst
    case so far and that restart's wall time. With a ``strategy`` (``tf.distribute``; create the
    model under its scope) each call runs one batch per replica (``batch_size`` is per replica;
    see :mod:`daa_tf.distribute`): the result is the same. ``early_stop`` (default: on for
    attacks whose examples do not interact, refused for DAA; a cascade always stops early):
    examples already fooled are not attacked again by later restarts or target runs; the merged
    result is the same (docs/algorithms.md#early-stop). The result reports the gradient budget
    per image and the gradients actually spent (:class:`daa_tf.results.RunResult`).
    A cascade's restarts repeat the cascade; its restart figures are per stage.

    ``x`` may instead be a ``tf.data.Dataset`` of ``(x, y)`` batches (``y`` left out): it is
    streamed by :func:`daa_tf.stream.run` (read once, attacked batch by batch; extra arguments
    ``output`` and ``on_batch``) and the result is a :class:`daa_tf.stream.StreamResult`.
    """
    common = dict(restarts=restarts, steps_per_round=steps_per_round, batch_size=batch_size,
                  seed=seed, verbose=verbose, state_path=state_path, resume=resume,
                  strategy=strategy, on_restart=on_restart, early_stop=early_stop)
    if stream.is_dataset(x):
        if y is not None:
            if not isinstance(y, str) and not hasattr(y, "attack"):
                raise ValueError("a dataset yields (x, y) batches: leave y out")
            attack = y  # run(model, dataset, "pgd", ...)
        return stream.run(model, x, attack, **common, **attack_params)
    return runs.run(model, x, y, attack, **common, **attack_params)


def _cascade(model: loop.Model, x: Any, y: Any, settings: CascadeSettings,
             on_stage: Optional[OnStage], **run_kwargs: Any) -> Union[RunResult, StreamResult]:
    """A cascade's settings over arrays (with ``on_stage``) or a dataset (batch by batch)."""
    if stream.is_dataset(x):
        if on_stage is not None or y is not None:
            raise ValueError("a dataset carries its labels (leave y out) and its stages run "
                             "batch by batch: use on_restart, not on_stage")
        return stream.run(model, x, settings, **run_kwargs)
    return cascade.run(model, x, y, settings, on_stage=on_stage, **run_kwargs)


def autoattack(model: loop.Model, x: Any, y: Any = None, *, eps: float, version: str = "standard",
               seed: int = DEFAULT_SEED, clip_min: float = 0.0, clip_max: float = 1.0,
               batch_size: Optional[int] = None, verbose: int = 1,
               jit_compile: Optional[bool] = None, on_stage: Optional[OnStage] = None,
               **run_kwargs: Any) -> Union[RunResult, StreamResult]:
    """AutoAttack (Croce & Hein 2020; docs/algorithms.md#autoattack) on the whole set ``x``
    ``[N, ...]`` (pixel units in ``[clip_min, clip_max]``), labels ``y`` ``[N]``, L-inf radius
    ``eps``: ``version`` ``standard`` (APGD-CE, APGD-T, FAB-T, Square with 5000 queries) or
    ``plus``, each attack on the examples still classified correctly, in the compiled loop. The
    model is checked first (logits, determinism, gradients, classes: warnings of
    :mod:`daa_tf.checks`), and Square's result after. ``result.accuracies()`` gives the robust
    accuracy after each attack; ``run_kwargs`` (``state_path``, ``resume``: the state is saved
    after each attack; ``strategy``; ``on_restart``) go to :func:`daa_tf.cascade.run`.
    ``x`` may be a ``tf.data.Dataset`` of ``(x, y)`` batches (``y`` left out; no ``on_stage``):
    streamed batch by batch, with ``accuracies()`` and Square's queries over the whole set and
    the checks made once (the model's on the first batch).
    """
    settings = cascade_settings("autoattack", eps=eps, version=version, clip_min=clip_min,
                                clip_max=clip_max, jit_compile=jit_compile)
    return _cascade(model, x, y, settings, on_stage, batch_size=batch_size, seed=seed,
                    verbose=verbose, **run_kwargs)


def strongest(model: loop.Model, x: Any, y: Any = None, *, eps: float,
              budget: int = DEFAULT_BUDGET, queries: Optional[int] = None,
              seed: int = DEFAULT_SEED,
              stages: Optional[Sequence[Stage]] = None, clip_min: float = 0.0,
              clip_max: float = 1.0, batch_size: Optional[int] = None, verbose: int = 1,
              jit_compile: Optional[bool] = None, restarts: int = 1,
              on_stage: Optional[OnStage] = None,
              **run_kwargs: Any) -> Union[RunResult, StreamResult]:
    """The cascade on the whole set ``x`` ``[N, ...]`` (pixel units in ``[clip_min,
    clip_max]``), labels ``y`` ``[N]``, L-inf radius ``eps`` (pixel units), ``budget``
    gradients per image (and restart) and at most ``queries`` forward passes per image for the
    query stages (None: no query stage). ``stages`` default
    :func:`daa_tf.stages.strongest_stages`: the gradient sequence, each stage sized when it
    starts so that the pass spends at most ``budget`` gradients per image it attacks on
    average, and none more than ``budget`` on one image in one stage (what the images fooled
    early leave goes to the rest: docs/algorithms.md#reinvested-budget), then Square with all
    ``queries`` (docs/algorithms.md#strongest: never weaker, per example, than any of its
    stages run alone as it ran). Given ``stages`` keep their sizes, their budgets summed at
    most ``budget``. ``on_stage(index, stage, accuracy, seconds)`` is
    called after each stage with the running accuracy; ``run_kwargs`` (``state_path``,
    ``resume``, ``strategy``, ``on_restart``) go to :func:`daa_tf.cascade.run`, which
    documents the result.
    ``x`` may be a ``tf.data.Dataset`` of ``(x, y)`` batches (``y`` left out; no ``on_stage``):
    :func:`daa_tf.stream.run` streams it.
    """
    settings = cascade_settings(eps=eps, budget=budget, queries=queries, clip_min=clip_min,
                                clip_max=clip_max, jit_compile=jit_compile, stages=stages)
    return _cascade(model, x, y, settings, on_stage, restarts=restarts, batch_size=batch_size,
                    seed=seed, verbose=verbose, **run_kwargs)
