"""AutoAttack's attacks as rows of the ``strength`` section (:mod:`benchmarks.strength`):

- ``apgd_t``, ``fab_t``: one run per budget ``B``, 9 target classes of ``B // 9`` steps, one
  restart (AutoAttack's APGD-T and FAB-T; docs/algorithms.md#apgd-t, #fab);
- ``square``: one run per query budget of ``--strength-queries`` (forward passes per image; its
  row's budget reads ``<Q> queries``, its gradients are 0);
- ``autoattack``: one run of ``daa_tf.autoattack`` (``standard``: APGD-CE, APGD-T, FAB-T, Square
  with AutoAttack's own settings); its budget column is the gradients per image of its stages.

Every row is one ``daa_tf`` call timed in this process (tracing included) on the section's images,
with its output checked by the section's ``check`` before it is reported.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List

import numpy as np

Row = Dict[str, Any]
Check = Callable[..., np.ndarray]  # strength.check_adversarial(name, x_adv, x, eps, lo, hi)
CONTENDERS = ("apgd_t", "fab_t", "square", "autoattack")
TARGETS = 9


def _timed(call: Callable[[], Any]) -> "tuple[Any, float]":
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def rows(name: str, model: Any, x: np.ndarray, y: np.ndarray, box: Dict[str, float],
         budgets: List[int], queries: List[int], seed: int, jit: Any, check: Check
         ) -> List[Row]:
    """The rows of contender ``name`` (one of :data:`CONTENDERS`) on ``x`` ``[N, ...]``, labels
    ``y`` ``[N]``, radius and box ``box`` (pixel units); ``budgets`` gradients per image (the
    targeted attacks), ``queries`` per image (Square)."""
    import daa_tf

    common = dict(seed=seed, verbose=0, jit_compile=jit, **box)
    out: List[Row] = []
    if name in ("apgd_t", "fab_t"):
        for budget in budgets:
            steps = budget // TARGETS
            result, seconds = _timed(lambda: daa_tf.run(model, x, y, name, steps=steps,
                                                        targets=TARGETS, **common))
            out.append(dict(budget=budget, runs=f"{TARGETS} targets x {steps}",
                            result=result, seconds=seconds, gradients=result.gradients_mean))
    elif name == "square":
        for count in queries:
            result, seconds = _timed(lambda: daa_tf.run(model, x, y, "square", steps=count,
                                                        **common))
            out.append(dict(budget=f"{count} queries", runs=f"1 x {count} queries",
                            result=result, seconds=seconds, gradients=0.0,
                            queries=result.queries_mean))
    elif name == "autoattack":
        result, seconds = _timed(lambda: daa_tf.autoattack(model, x, y, **common))
        out.append(dict(budget=result.gradients_per_image,
                        runs=f"{len(result.restart_accuracies)} attacks + "
                             f"{result.queries_per_image} queries",
                        result=result, seconds=seconds, gradients=result.gradients_mean,
                        queries=result.queries_mean,
                        stage_accuracies=list(result.restart_accuracies)))
    else:
        raise ValueError(f"unknown contender {name!r}: one of {CONTENDERS}")
    for row in out:
        result = row.pop("result")
        check(name, result.x_adv, x, **box)
        row.update(contender=name, attack=name, accuracy=result.accuracy, read="own run")
    return out
