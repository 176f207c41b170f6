"""Attack strength against the gradient budget: the ``strength`` section of ``benchmarks.run``
(not run by default: on the full set it takes tens of minutes per model)::

    python -m benchmarks.run --model mnist --sections strength
    python -m benchmarks.run --model cifar10 --sections strength

Measured: the model's accuracy (the fraction of the first ``--strength-examples`` images of the
loaded set still classified correctly after the attack) at budgets of ``--strength-budgets``
model gradients per image, with the wall time of each, in one process, on the same model, images
and settings (eps, step size and pixel box of :data:`benchmarks.common.SETTINGS`). Forward-only
passes (judging final points) are not counted as gradients, as in :mod:`daa_tf.driver`.

How a budget ``B`` is read (``R = --strength-restart-steps``, 100: each restart costs ``R``
gradients per image, so budget ``B`` is ``B / R`` restarts):

- ``pgd``, ``apgd_ce``, ``apgd_dlr``, ``odi_pgd``, ``odi_apgd`` (ODI: 2 ODI steps + ``R - 2``
  attack steps per restart): ONE ``daa_tf.run`` of ``max(B) / R`` restarts. It early-stops (the
  driver's default for attacks whose examples do not interact): after restart ``k`` the fooled
  examples are exactly those fooled by some restart ``<= k`` (``_restart`` ORs the merged
  ``fooled`` into the restart's success), so ``restart_accuracies[k-1]`` is the accuracy of the
  merged set after ``k`` restarts, i.e. of a run of budget ``k R``. Seconds: the cumulative
  ``restart_seconds``; gradients spent: restart ``j`` attacks the examples not fooled after
  restart ``j - 1``, so ``R (1 + sum(restart_accuracies[:k-1]))`` per image (checked against
  ``gradients_mean`` at the largest budget).
- ``daa_blob``, ``apgd_daa_blob`` (DAA: early stop is refused, every restart moves every
  particle, and ``restart_accuracies`` are each restart's own, NOT cumulative): the same run,
  extended one restart per call through the driver's resumable state (``state_path``,
  ``resume=True``; restart ``r`` depends only on ``(seed, r)``, so the extended run equals an
  uninterrupted one); the merged set's accuracy (``RunResult.accuracy``) is read after each call.
- ``multitargeted`` (9 target classes, margin loss, APGD schedule), ``strongest``
  (``daa_tf.strongest``, its default sequence for the budget): one run per budget;
  MultiTargeted takes ``B // 9`` steps per target.
- ``apgd_t``, ``fab_t``, ``square`` (at ``--strength-queries`` queries per image, not gradients)
  and ``autoattack`` (one run, AutoAttack's own settings): :mod:`benchmarks.strength_autoattack`.
- ART's ``art_apgd_ce``, ``art_apgd_dlr``, ``art_square`` and ``art_autoattack`` (an optional
  peer, ``pip install adversarial-robustness-toolbox``): :mod:`benchmarks.strength_art`.

Times include each configuration's tracing (its first call), as a user pays it. For
``strongest`` the row also says after which stage its accuracy first reaches the ``daa_blob``
row's at the same budget, after how many seconds, and that time as a multiple of DAA-BLOB's.
Every attack's output is checked (L-inf distance at most ``eps + 1e-5`` from the clean images,
inside the pixel box within ``1e-5``) before it is reported; a violation raises.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from benchmarks import strength_art, strength_autoattack
from benchmarks.common import Context, Row, contender_list, section

RESTART_READ = ("pgd", "daa_blob", "apgd_ce", "apgd_dlr", "apgd_daa_blob", "odi_pgd",
                "odi_apgd")
CONTENDERS = (RESTART_READ + ("multitargeted", "strongest") + strength_autoattack.CONTENDERS
              + strength_art.CONTENDERS)
TOLERANCE = 1e-5  # slack of the output check (float32 rounding near the box's top)


def _budgets(text: str) -> List[int]:
    try:
        budgets = sorted({int(b) for b in text.split(",") if b.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"budgets must be whole numbers, got {text!r}") from None
    if not budgets or budgets[0] < 1:
        raise argparse.ArgumentTypeError(f"budgets must be positive, got {text!r}")
    return budgets


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The section's ``--strength-...`` arguments (its ``arguments`` hook)."""
    g = p.add_argument_group("strength section")
    g.add_argument("--strength-budgets", type=_budgets, default=_budgets("100,500,1000"),
                   help="gradients per image, comma-separated (multiples of the restart steps)")
    g.add_argument("--strength-examples", type=int, default=1000,
                   help="the first images of the loaded set")
    g.add_argument("--strength-seed", type=int, default=0)
    g.add_argument("--strength-contenders", type=contender_list(CONTENDERS),
                   default=list(CONTENDERS),
                   help=f"comma-separated, of {', '.join(CONTENDERS)}")
    g.add_argument("--strength-queries", type=_budgets, default=_budgets("1000"),
                   help="queries (forward passes) per image of the square rows, comma-separated")
    g.add_argument("--strength-restart-steps", type=int, default=100,
                   help="gradients per restart of the restart-read contenders and of ART")


def check_adversarial(name: str, x_adv: Any, x: np.ndarray, eps: float, clip_min: float,
                      clip_max: float) -> np.ndarray:
    """``x_adv`` as an array, after checking its shape, L-inf distance to ``x`` (at most ``eps +``
    :data:`TOLERANCE`) and box; RuntimeError naming ``name`` on a violation."""
    x_adv = np.asarray(x_adv)
    if x_adv.shape != x.shape or not np.all(np.isfinite(x_adv)):
        raise RuntimeError(f"{name}: output of shape {x_adv.shape} (expected {x.shape}) or "
                           "not finite")
    wide = x_adv.astype(np.float64)
    dist = float(np.max(np.abs(wide - x.astype(np.float64)))) if x.size else 0.0
    if dist > eps + TOLERANCE:
        raise RuntimeError(f"{name}: L-inf distance {dist!r} exceeds eps {eps} + {TOLERANCE}")
    if x.size and (wide.min() < clip_min - TOLERANCE or wide.max() > clip_max + TOLERANCE):
        raise RuntimeError(f"{name}: output in [{wide.min()!r}, {wide.max()!r}], outside the box "
                           f"[{clip_min}, {clip_max}]")
    return x_adv


def _accuracy(ctx: Context, x_adv: np.ndarray, y: np.ndarray) -> float:
    import daa_tf
    pred, _, _ = daa_tf.evaluate(ctx.model, x_adv, y, jit_compile=ctx.jit)
    return float(np.mean(pred == y))


def _box(ctx: Context) -> Dict[str, float]:
    s = ctx.settings
    return dict(eps=s["eps"], clip_min=s["clip_min"], clip_max=s["clip_max"])


def _restart_attack(ctx: Context, name: str) -> Tuple[str, Dict[str, Any], str]:
    """``(attack, settings, restart label)`` of a restart-read contender (eps and box added)."""
    from daa_tf import catalogue
    steps = ctx.args.strength_restart_steps
    odi = catalogue.DEFAULT_ODI_STEPS
    pgd_step = dict(step_size=ctx.settings["step_size"], random_start=True)
    table = {
        "pgd": ("pgd", dict(pgd_step, steps=steps), f"{steps}"),
        "daa_blob": ("daa_blob", dict(pgd_step, steps=steps, particles=ctx.args.particles),
                     f"{steps}"),
        "apgd_ce": ("apgd", dict(loss="xent", steps=steps), f"{steps}"),
        "apgd_dlr": ("apgd", dict(loss="dlr", steps=steps), f"{steps}"),
        "apgd_daa_blob": ("apgd_daa_blob", dict(loss="xent", steps=steps,
                                                particles=ctx.args.particles), f"{steps}"),
        "odi_pgd": ("pgd", dict(pgd_step, steps=steps - odi, init="odi"),
                    f"({odi}+{steps - odi})"),
        "odi_apgd": ("apgd", dict(loss="xent", steps=steps - odi, init="odi"),
                     f"({odi}+{steps - odi})"),
    }
    attack, settings, label = table[name]
    return attack, {**settings, **_box(ctx), "jit_compile": ctx.jit}, label


def _early_stop_rows(ctx: Context, name: str, x: np.ndarray, y: np.ndarray) -> List[Row]:
    """One early-stopping run of the largest budget, read per budget (see the module's doc)."""
    import daa_tf
    args = ctx.args
    attack, settings, label = _restart_attack(ctx, name)
    per_restart = args.strength_restart_steps
    restarts = args.strength_budgets[-1] // per_restart
    result = daa_tf.run(ctx.model, x, y, attack, restarts=restarts, seed=args.strength_seed,
                        verbose=0, **settings)
    check_adversarial(name, result.x_adv, x, **_box(ctx))
    acc, secs = result.restart_accuracies, result.restart_seconds
    spent = [per_restart * (1 + sum(acc[:k - 1])) for k in range(1, restarts + 1)]
    if not np.isclose(spent[-1], result.gradients_mean):
        raise RuntimeError(f"{name}: {result.gradients_mean} gradients spent per image, expected "
                           f"{spent[-1]} from the cumulative restart accuracies")
    rows = []
    for budget in args.strength_budgets:
        k = budget // per_restart
        rows.append(dict(contender=name, attack=attack, budget=budget, runs=f"{k} x {label}",
                         accuracy=acc[k - 1], gradients=spent[k - 1], seconds=sum(secs[:k]),
                         read=f"restart {k} of {restarts}"))
    rows[-1]["accuracy_reevaluated"] = result.accuracy  # the merged set's own forward pass
    return rows


def _extended_rows(ctx: Context, name: str, x: np.ndarray, y: np.ndarray) -> List[Row]:
    """DAA: the run extended one restart per call (resumable state); the merged set's accuracy
    after each, i.e. the cumulative one (its ``restart_accuracies`` are per restart)."""
    import daa_tf
    args = ctx.args
    attack, settings, label = _restart_attack(ctx, name)
    per_restart = args.strength_restart_steps
    restarts = args.strength_budgets[-1] // per_restart
    merged, seconds, spent = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        state = os.path.join(folder, "state.npz")
        for k in range(1, restarts + 1):
            result = daa_tf.run(ctx.model, x, y, attack, restarts=k, seed=args.strength_seed,
                                verbose=0, state_path=state, resume=True, **settings)
            check_adversarial(name, result.x_adv, x, **_box(ctx))
            merged.append(result.accuracy)
            seconds.append(sum(result.restart_seconds))
            spent.append(result.gradients_mean)
    rows = []
    for budget in args.strength_budgets:
        k = budget // per_restart
        rows.append(dict(contender=name, attack=attack, budget=budget, runs=f"{k} x {label}",
                         accuracy=merged[k - 1], gradients=sum(spent[:k]),
                         seconds=sum(seconds[:k]), read=f"merged after {k} (resumed)"))
    return rows


def _multitargeted_rows(ctx: Context, x: np.ndarray, y: np.ndarray) -> List[Row]:
    """One run per budget: 9 targets of ``budget // 9`` APGD steps, margin loss, one restart."""
    import daa_tf
    from daa_tf import catalogue
    rows = []
    targets = catalogue.DEFAULT_TARGETS
    for budget in ctx.args.strength_budgets:
        steps = budget // targets
        started = time.perf_counter()
        result = daa_tf.run(ctx.model, x, y, "multitargeted", seed=ctx.args.strength_seed,
                            verbose=0, steps=steps, loss="margin", targets=targets,
                            jit_compile=ctx.jit, **_box(ctx))
        seconds = time.perf_counter() - started
        check_adversarial("multitargeted", result.x_adv, x, **_box(ctx))
        rows.append(dict(contender="multitargeted", attack="multitargeted", budget=budget,
                         runs=f"{targets} targets x {steps}", accuracy=result.accuracy,
                         gradients=result.gradients_mean, seconds=seconds, read="own run"))
    return rows


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("s" if n != 1 else "")


def _strongest_rows(ctx: Context, x: np.ndarray, y: np.ndarray) -> List[Row]:
    """One ``daa_tf.strongest`` run per budget (its default sequence); the stage accuracies and
    seconds are kept for the time-to-a-strength columns."""
    import daa_tf
    rows = []
    for budget in ctx.args.strength_budgets:
        started = time.perf_counter()
        result = daa_tf.strongest(ctx.model, x, y, budget=budget, seed=ctx.args.strength_seed,
                                  jit_compile=ctx.jit, **_box(ctx))
        seconds = time.perf_counter() - started
        check_adversarial("strongest", result.x_adv, x, **_box(ctx))
        rows.append(dict(contender="strongest", attack="strongest", budget=budget,
                         runs=_count(len(result.restart_accuracies), "stage"),
                         accuracy=result.accuracy, gradients=result.gradients_mean,
                         seconds=seconds, read="own run",
                         stage_accuracies=list(result.restart_accuracies),
                         stage_seconds=list(result.restart_seconds)))
    return rows


def _add_reach(rows: List[Row]) -> None:
    """On each ``strongest`` row with a ``daa_blob`` row of the same budget: the first stage
    whose accuracy is at most DAA-BLOB's, the seconds up to it and their ratio to DAA-BLOB's."""
    daa = {r["budget"]: r for r in rows if r["contender"] == "daa_blob"}
    for row in rows:
        target = daa.get(row["budget"]) if row["contender"] == "strongest" else None
        if target is None:
            continue
        reached = [i for i, a in enumerate(row["stage_accuracies"]) if a <= target["accuracy"]]
        if reached:
            seconds = sum(row["stage_seconds"][:reached[0] + 1])
            row.update(reach_stage=reached[0] + 1, reach_seconds=seconds,
                       reach_vs_daa=seconds / target["seconds"])
        else:
            row["reach_stage"] = "never"


def _validate(args: Any) -> None:
    steps = args.strength_restart_steps
    if steps < 1 or any(b % steps for b in args.strength_budgets):
        raise ValueError(f"--strength-budgets {args.strength_budgets} must be multiples of "
                         f"--strength-restart-steps {steps}")
    if steps <= 2 and {"odi_pgd", "odi_apgd"} & set(args.strength_contenders):
        raise ValueError("the ODI contenders need --strength-restart-steps above 2")
    targeted = {"multitargeted", "apgd_t", "fab_t"} & set(args.strength_contenders)
    if targeted and args.strength_budgets[0] < 9:
        raise ValueError(f"{', '.join(sorted(targeted))} need budgets of at least 9 (one step "
                         "per target)")


def _runner(ctx: Context, name: str) -> Callable[[np.ndarray, np.ndarray], Optional[List[Row]]]:
    if name in ("daa_blob", "apgd_daa_blob"):
        return lambda x, y: _extended_rows(ctx, name, x, y)
    if name in RESTART_READ:
        return lambda x, y: _early_stop_rows(ctx, name, x, y)
    if name == "multitargeted":
        return lambda x, y: _multitargeted_rows(ctx, x, y)
    if name == "strongest":
        return lambda x, y: _strongest_rows(ctx, x, y)
    if name in strength_autoattack.CONTENDERS:
        return lambda x, y: strength_autoattack.rows(
            name, ctx.model, x, y, _box(ctx), ctx.args.strength_budgets,
            ctx.args.strength_queries, ctx.args.strength_seed, ctx.jit, check_adversarial)
    return lambda x, y: strength_art.rows(
        name, ctx.model, x, y, _box(ctx), ctx.args.strength_budgets, ctx.args.strength_queries,
        ctx.args.strength_seed, ctx.args.strength_restart_steps, check_adversarial,
        lambda x_adv, labels: _accuracy(ctx, x_adv, labels))


@section("strength", "model accuracy against gradients per image (same model, images, eps; "
         "times include tracing)",
         [('contender', 'contender', '{}'),
          ('budget', 'budget', '{}'),
          ('runs', 'restarts x steps', '{}'),
          ('accuracy', 'accuracy', '{:.1%}'),
          ('gradients', 'grads spent', '{:.1f}'),
          ('seconds', 's', '{:.1f}'),
          ('read', 'read from', '{}'),
          ('reach_stage', 'reaches daa_blob after stage', '{}'),
          ('reach_seconds', 'reach s', '{:.1f}'),
          ('reach_vs_daa', 'reach x daa_blob s', '{:.2f}')],
         examples=lambda args: args.strength_examples, arguments=add_arguments, default=False)
def strength(ctx: Context) -> List[Row]:
    """A ``clean`` row (budget 0), then one row per contender of ``--strength-contenders`` and
    budget of ``--strength-budgets`` on the first ``--strength-examples`` images (see the
    module's doc for how each budget is read). ART's rows are skipped, with a line on stderr,
    when ``art`` is not importable. Reproduce: ``python -m benchmarks.run --model mnist
    --sections strength`` (``--model cifar10`` likewise; ``--json PATH`` keeps the rows)."""
    args = ctx.args
    _validate(args)
    n = min(args.strength_examples, len(ctx.x_all))
    x = np.asarray(ctx.x_all[:n], np.float32)
    y = np.asarray(ctx.y_all[:n], np.int32)
    rows: List[Row] = [dict(contender="clean", budget=0, runs="-", accuracy=_accuracy(ctx, x, y),
                            gradients=0.0, seconds=0.0, read="clean images", examples=n)]
    skipped = []
    for name in args.strength_contenders:
        made = _runner(ctx, name)(x, y)
        if made is None:
            skipped.append(name)
            continue
        rows += [dict(r, examples=n, seed=args.strength_seed) for r in made]
    if skipped:
        print(f"# strength: {', '.join(skipped)} skipped: art is not importable (pip install "
              "adversarial-robustness-toolbox; art_autoattack also needs multiprocess)",
              file=sys.stderr)
    _add_reach(rows)
    return rows

