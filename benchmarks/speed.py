"""The speed sections: step time against the gradient floor, the driver's overhead, compilation
(plain graph vs XLA), and one DAA group of data-set size (the tiled kernel)."""
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

from benchmarks.common import (Context, Row, build_model, interleaved, median, reset_peak_memory,
                               resident_mb, section, set_fast_input_gradient)
from benchmarks.runners import (ART_INSTALL, art_pgd_runner, attack_runner, floor_runner,
                                kernel_runner, rule_runner)

# The steps section's names (``--attacks``): the floor, catalogue attacks, and peers (other
# libraries' attacks, timed in the trajectory mode only). APGD and MultiTargeted (one target run)
# are not in the default list: ``--attacks floor,pgd,apgd,multitargeted,art_pgd``.
PEER_ATTACKS = ("art_pgd",)
# Attacks returning their best iterate: a call ends with a forward pass judging its last point
# (about half a gradient; in the trajectory mode spread over --steps steps), so a one-step call
# is no step: no same-point row.
BEST_ITERATE_ATTACKS = ("apgd", "multitargeted")
DEFAULT_STEP_ATTACKS = ("floor", "pgd", "momentum_pgd", "daa_blob", "daa_dgf")
STEP_ATTACKS = DEFAULT_STEP_ATTACKS + BEST_ITERATE_ATTACKS + PEER_ATTACKS


@section("steps", 'Step time (medians of interleaved repeats; floor = model input gradient only)',
         [('mode', 'mode', '{}'),
          ('attack', 'attack', '{}'),
          ('batch', 'batch', '{}'),
          ('particles', 'particles', '{}'),
          ('jit', 'jit', '{}'),
          ('image_steps_per_s', 'img*steps/s', '{:.0f}'),
          ('ms_per_step', 'ms/step', '{:.1f}'),
          ('vs_floor', 'x floor', '{:.3f}'),
          ('vs_pgd', 'x pgd', '{:.3f}'),
          ('of_pgd_step', 'of pgd step', '{:.1%}'),
          ('peak_mb', 'peak MB', '{:.0f}'),
          ('tracing_count', 'traces', '{}')])
def steps(ctx: Context) -> List[Row]:
    """Three modes. ``trajectory``: ``--steps`` steps per call from the random start. ``same
    point``: one step per call, every attack and the floor from the same points. ``rule only``:
    the step rule with a frozen gradient (no model), as a share of the same-point PGD step.

    The rule's own cost is what an attack adds to the gradient; the floor computes the gradient as
    the attacks' loop does (a function of its own: see ``daa_tf.loop.gradient_function``).
    APGD and MultiTargeted (one run toward each example's most likely wrong class, margin loss)
    run their catalogue loop (APGD's schedule, loss values, best iterates); they have no same-point
    row (:data:`BEST_ITERATE_ATTACKS`) and their rule-only row adds the schedule and the
    best-iterate update. Peers
    (:data:`PEER_ATTACKS`: ART's PGD, ``generate`` with its own overheads) are timed in the
    trajectory mode only, and skipped with a line on stderr when not importable."""
    import tensorflow as tf
    from daa_tf import engine
    args, x, settings = ctx.args, ctx.x, ctx.settings
    cfg = engine.make_config("pgd", steps=1, **settings)
    start = engine.start_points(cfg, tf.constant(x), engine.seed_tensor(0)).numpy()
    rows: List[Row] = []
    for mode, steps, repeats in (("trajectory", args.steps, args.repeats),
                                 ("same point", 1, args.point_repeats),
                                 ("rule only", args.steps, args.repeats)):
        if repeats < 1:
            continue
        runs, fns = _step_runs(ctx, mode, steps, start)
        first, times, peaks = interleaved(runs, repeats)
        step_ms = {name: 1000.0 * median(t) / steps for name, t in times.items()}
        base = None
        if mode == "rule only":  # the rule's share of a PGD step (same-point gradient cost)
            pgd_step = [r for r in rows if r["mode"] == "same point" and r["attack"] == "pgd"]
            base = pgd_step[0]["ms_per_step"] if pgd_step else None
        for name in runs:
            rows.append(dict(
                mode=mode, attack=name, batch=len(x),
                particles=args.particles if name.startswith("daa") else None, jit=ctx.jit,
                steps=steps, repeats=repeats, ms_per_step=step_ms[name],
                image_steps_per_s=len(x) * 1000.0 / step_ms[name],
                vs_floor=(step_ms[name] / step_ms["floor"] if "floor" in step_ms
                          and mode != "rule only" else None),
                vs_pgd=(step_ms[name] / step_ms["pgd"] if "pgd" in step_ms
                        and mode != "rule only" else None),
                of_pgd_step=(step_ms[name] / base if mode == "rule only" and base else None),
                peak_mb=peaks[name], first_call_s=first[name],
                tracing_count=(None if fns[name] is None
                               else fns[name].experimental_get_tracing_count())))
    return rows


def _step_runs(ctx: Context, mode: str, steps: int, start: Any
               ) -> Tuple[Dict[str, Callable[[], Any]], Dict[str, Any]]:
    """The timed callables of ``mode`` by attack name (``--attacks`` order) and their compiled
    functions (None for peers). Peers run in the trajectory mode only (one not importable is
    left out with a line on stderr); :data:`BEST_ITERATE_ATTACKS` not in the same-point mode."""
    args, model, x, y, settings, jit = ctx.args, ctx.model, ctx.x, ctx.y, ctx.settings, ctx.jit
    runs: Dict[str, Callable[[], Any]] = {}
    fns: Dict[str, Any] = {}
    for attack in args.attacks:
        if mode == "same point" and attack in BEST_ITERATE_ATTACKS:
            continue
        if attack in PEER_ATTACKS:
            if mode != "trajectory":
                continue
            run = art_pgd_runner(model, x, y, steps, settings)
            if run is None:
                print(f"steps: {attack} skipped: art is not importable ({ART_INSTALL})",
                      file=sys.stderr)
                continue
            runs[attack], fns[attack] = run, None
        elif mode == "rule only":
            runs[attack], fns[attack] = rule_runner(model, attack, x, y, steps, args.particles,
                                                    jit, settings)
        elif attack == "floor":
            runs[attack], fns[attack] = floor_runner(model, start, y, steps, jit)
        else:
            run, fns[attack], _ = attack_runner(model, attack, x, y, steps, args.particles, jit,
                                                settings)
            runs[attack] = lambda run=run, steps=steps: run(steps)
    return runs, fns


@section("driver", 'Driver overhead (daa_tf.run vs engine.run_loop on the same batches)',
         [('attack', 'attack', '{}'),
          ('examples', 'examples', '{}'),
          ('batch', 'batch', '{}'),
          ('steps', 'steps', '{}'),
          ('calls', 'calls', '{}'),
          ('run_steps_s', 'run_steps s', '{:.2f}'),
          ('driver_s', 'daa_tf.run s', '{:.2f}'),
          ('overhead', 'overhead', '{:+.1%}')],
         examples=lambda args: max(args.batch, args.driver_examples))
def driver(ctx: Context) -> List[Row]:
    """``daa_tf.run`` against ``engine.run_loop`` on the same batches (the driver's cost)."""
    import tensorflow as tf
    import daa_tf
    from daa_tf import engine
    from daa_tf.driver import round_lengths
    args, model, x, y, settings, jit = (ctx.args, ctx.model, ctx.x_all, ctx.y_all, ctx.settings,
                                        ctx.jit)
    n = min(args.driver_examples, len(x))
    xs, ys = x[:n], y[:n]
    rows = []
    for attack in ("pgd", "daa_blob"):
        kw = dict(steps=args.driver_steps, jit_compile=jit, particles=args.particles, **settings)
        cfg = engine.make_config(attack, **kw)
        batch = args.batch if not cfg.interacting else max(
            args.particles, args.batch // args.particles * args.particles)
        schedule = (round_lengths(cfg.settings.steps, args.steps_per_round) if cfg.interacting
                    else [cfg.settings.steps])
        start = engine.start_points(cfg, tf.constant(xs), engine.seed_tensor(0)).numpy()

        def bare():
            cur = start.copy()
            for length in schedule:
                for i in range(0, n, batch):
                    cur[i:i + batch] = engine.points(cfg, engine.run_loop(
                        model, cfg, tf.constant(xs[i:i + batch]), tf.constant(ys[i:i + batch]),
                        tf.constant(cur[i:i + batch]), steps=length)).numpy()
            return cur

        def driver():
            return daa_tf.run(model, xs, ys, attack=attack, restarts=1,
                              steps_per_round=args.steps_per_round, batch_size=batch, seed=0,
                              verbose=0, **kw)

        _, times, _ = interleaved({"run_steps": bare, "daa_tf.run": driver},
                                  max(1, min(args.repeats, args.driver_repeats)))
        bare_s, driver_s = median(times["run_steps"]), median(times["daa_tf.run"])
        rows.append(dict(attack=attack, examples=n, batch=batch, steps=cfg.settings.steps,
                         steps_per_round=args.steps_per_round, jit=cfg.jit_compile,
                         run_steps_s=bare_s, driver_s=driver_s,
                         overhead=driver_s / bare_s - 1.0, calls=len(schedule) * -(-n // batch)))
    return rows


@section("compile", 'Compilation and XLA (fresh model per row)',
         [('attack', 'attack', '{}'),
          ('batch', 'batch', '{}'),
          ('jit', 'jit', '{}'),
          ('first_call_s', 'first call s', '{:.2f}'),
          ('compile_s', 'compile s', '{:.2f}'),
          ('ms_per_step', 'ms/step', '{:.1f}'),
          ('xla_vs_graph', 'xla/graph', '{:.3f}'),
          ('tracing_count', 'traces', '{}')])
def compile(ctx: Context) -> List[Row]:  # noqa: A001 - the section's name
    """First call (trace and compile) and steady step, plain graph and XLA, on fresh models."""
    args, x, y, settings = ctx.args, ctx.x, ctx.y, ctx.settings
    rows = []
    steps, repeats = args.compile_steps, args.compile_repeats
    for attack in args.compile_attacks:
        steady = {}
        for jit in (False, True):
            model, _ = build_model(ctx.model_name, ctx.random)  # a fresh model: nothing cached
            set_fast_input_gradient(model, args.fast_input_gradient)
            if attack == "floor":
                run, fn = floor_runner(model, x, y, steps, jit)
            else:
                run, fn, _ = attack_runner(model, attack, x, y, steps, args.particles, jit,
                                           settings)
            started = time.perf_counter()
            run(1)  # the first call: trace, optimise or compile, and one step
            first_s = time.perf_counter() - started
            _, times, _ = interleaved({"run": run}, repeats)
            run(steps + 1)  # another step count: must not retrace
            steady[jit] = median(times["run"]) / steps
            rows.append(dict(attack=attack, batch=len(x), jit=jit, first_call_s=first_s,
                             compile_s=first_s - steady[jit],
                             ms_per_step=1000.0 * steady[jit],
                             tracing_count=fn.experimental_get_tracing_count()))
        rows[-1]["xla_vs_graph"] = steady[True] / steady[False]
        rows[-2]["xla_vs_graph"] = steady[True] / steady[False]
    return rows


@section("large", 'One DAA group of all images (tiled kernel) vs groups; peak resident memory',
         [('what', 'what', '{}'),
          ('batch', 'batch', '{}'),
          ('particles', 'particles', '{}'),
          ('kernel', 'kernel', '{}'),
          ('jit', 'jit', '{}'),
          ('s_per_step', 's/step', '{:.2f}'),
          ('vs_groups', 'x groups', '{:.2f}'),
          ('tiled_vs_held', 'x held', '{:.2f}'),
          ('rss_before_mb', 'RSS before MB', '{:.0f}'),
          ('peak_mb', 'peak MB', '{:.0f}'),
          ('peak_over_before_mb', 'peak-before MB', '{:.0f}')],
         examples=lambda args: max(args.batch, args.large_particles))
def large(ctx: Context) -> List[Row]:
    """One DAA group of all images (the tiled kernel) against groups; peak memory."""
    import numpy as np
    from daa_tf import particles as kernel
    args, model, x, y, settings, jit = (ctx.args, ctx.model, ctx.x_all, ctx.y_all, ctx.settings,
                                        ctx.jit)
    n = min(args.large_particles, len(x))
    xs, ys = x[:n], y[:n]
    rows = []
    for particles in (args.particles, n):
        run, fn, _ = attack_runner(model, "daa_blob", xs, ys, args.large_steps, particles, jit,
                                   settings)
        reset_peak_memory()
        base = resident_mb()
        first, times, peaks = interleaved({"run": run}, args.large_repeats)
        step_s = median(times["run"]) / args.large_steps
        rows.append(dict(what="attack step", attack="daa_blob", batch=n, particles=particles,
                         jit=jit, kernel="tiled" if particles > kernel.TILE_THRESHOLD else "held",
                         steps=args.large_steps, s_per_step=step_s, first_call_s=first["run"],
                         peak_mb=peaks["run"], rss_before_mb=base,
                         tracing_count=fn.experimental_get_tracing_count()))
    rows[1]["vs_groups"] = rows[1]["s_per_step"] / rows[0]["s_per_step"]
    # the particle kernel alone, one group of n: tiled first (the held one's peak is larger)
    dim = int(np.prod(x.shape[1:]))
    for tiled in (True, False):
        if not tiled and not args.large_held:
            continue
        run = kernel_runner(n, dim, tiled)
        reset_peak_memory()
        base = resident_mb()
        first, times, peaks = interleaved({"run": run}, args.large_repeats)
        rows.append(dict(what="kernel only", attack="daa_blob", batch=n, particles=n, jit=False,
                         kernel="tiled" if tiled else "held", s_per_step=median(times["run"]),
                         first_call_s=first["run"], peak_mb=peaks["run"], rss_before_mb=base,
                         peak_over_before_mb=(None if peaks["run"] is None or base is None
                                              else peaks["run"] - base)))
    if len(rows) == 4:
        rows[3]["vs_groups"] = None
        rows[2]["tiled_vs_held"] = rows[2]["s_per_step"] / rows[3]["s_per_step"]
    return rows
