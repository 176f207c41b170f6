"""Speed benchmarks of the attacks: ``python -m benchmarks.run [--json PATH|-] [options]``.

Sections (``--sections``, default all):

- ``steps``: step time of the gradient floor (a ``tf.while_loop`` doing only the gradient of the
  summed loss and an add), PGD, momentum PGD, DAA-BLOB and DAA-DGF on one batch, as medians of
  interleaved repeats in one process; ratios to the floor and to PGD.
- ``driver``: ``daa_tf.run`` against calling ``daa_tf.attacks.run_steps`` on the same batches.
- ``compile``: first-call time (trace, graph optimisation or XLA compilation, and one step),
  compile time (that less one steady step), steady step time and tracing count, with XLA
  (``jit_compile=True``) and the plain graph.
- ``large``: DAA-BLOB with one group of ``--large-particles`` particles (the tiled kernel) against
  groups of ``--particles`` on the same images; peak resident memory of each.
- ``paper``: PGD and DAA-BLOB, 100 steps over 1000 MNIST images through ``daa_tf.run``, against
  the DAA authors' design re-created in :mod:`benchmarks.authors` (TF1 graph, a session run per
  step, the kernel on the host) and timed in the same invocation, alternated; also against the
  authors' code as timed once on the project's machine (``AUTHORS_SECONDS``).

The MadryLab models and data are read from the shared fixtures when present (``DAA_TF_SHARED``, or
``../shared`` beside the checkout); otherwise randomly initialised models of the same architectures
and random images stand in (timings do not depend on the weights). Peak memory is the process's
peak resident set (``VmHWM``, reset before each measurement where Linux allows it): TensorFlow's
CPU allocator reports no statistics.
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
STEP_ATTACKS = ("floor", "pgd", "momentum_pgd", "daa_blob", "daa_dgf")
SECTIONS = ("steps", "driver", "compile", "large", "paper")
# The DAA authors' released code, 100 steps over the first 1000 MNIST test images, timed on the
# project's reference machine (2-core CPU): seconds.
AUTHORS_SECONDS = {"pgd": 28.8, "daa_blob": 60.6}
SETTINGS = {  # eps and step size of the paper, pixel box
    "mnist": dict(eps=0.3, step_size=0.01, clip_min=0.0, clip_max=1.0),
    "cifar10": dict(eps=8.0, step_size=2.0, clip_min=0.0, clip_max=255.0),
}


# ------------------------------------------------------------------------------------ helpers

def shared_dir() -> Optional[Path]:
    """The shared fixtures folder, or None when absent."""
    folder = Path(os.environ.get("DAA_TF_SHARED", REPO.parent / "shared"))
    return folder if (folder / "models").is_dir() and (folder / "data").is_dir() else None


def _status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_memory() -> None:
    """Resets the peak resident set (Linux: ``echo 5 > /proc/self/clear_refs``); silently does
    nothing where that is not allowed (the peak then covers the whole process so far)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_mb() -> Optional[float]:
    """Peak resident set since the last reset, in MB (None where /proc is unavailable)."""
    kb = _status_kb("VmHWM")
    return None if kb is None else kb / 1024.0


def resident_mb() -> Optional[float]:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def interleaved(runs: Dict[str, Callable[[], Any]], repeats: int
                ) -> Tuple[Dict[str, float], Dict[str, List[float]], Dict[str, Optional[float]]]:
    """First-call seconds, the timed repeats (A B A B ...) and the peak memory of each run."""
    first, times, peaks = {}, {name: [] for name in runs}, {name: None for name in runs}
    for name, fn in runs.items():
        started = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - started
    for _ in range(repeats):
        for name, fn in runs.items():
            reset_peak_memory()
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
            peak = peak_memory_mb()
            if peak is not None:
                peaks[name] = max(peaks[name] or 0.0, peak)
    return first, times, peaks


# ------------------------------------------------------------------------------ model and data

def _mnist_fallback():
    """The MadryLab MNIST net (same layers as ``daa_tf.models``), for a checkout without them."""
    import keras
    x_in = keras.Input(shape=(784,))
    h = keras.layers.Reshape((28, 28, 1))(x_in)
    h = keras.layers.Conv2D(32, 5, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D(2, 2, padding="same")(h)
    h = keras.layers.Conv2D(64, 5, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D(2, 2, padding="same")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(1024, activation="relu")(h)
    return keras.Model(x_in, keras.layers.Dense(10)(h))


def build_model(name: str, random_weights: bool):
    """``(model, description)``: the fixture's trained net, else a random one of its architecture."""
    shared = None if random_weights else shared_dir()
    if name == "mnist":
        try:
            from daa_tf.models.madry_mnist import build_madry_mnist, load_madry_mnist
        except ImportError:
            return _mnist_fallback(), "MadryLab MNIST net, random weights (benchmark's own copy)"
        folder = shared / "models" / "mnist" / "adv_trained" if shared else None
        if folder is not None and folder.is_dir():
            return load_madry_mnist(folder), "MadryLab MNIST net, adv_trained fixture"
        return build_madry_mnist(), "MadryLab MNIST net, random weights"
    from daa_tf.models.madry_cifar10 import ResNetConfig, build_madry_cifar10, load_madry_cifar10
    folder = shared / "models" / "cifar10" / "adv_trained_narrow" if shared else None
    if folder is not None and folder.is_dir():
        return (load_madry_cifar10(folder),
                "MadryLab CIFAR10 ResNet [16, 16, 32, 64], adv_trained_narrow fixture")
    return (build_madry_cifar10(ResNetConfig(filters=(16, 16, 32, 64))),
            "MadryLab CIFAR10 ResNet [16, 16, 32, 64], random weights")


def load_data(name: str, n: int, random_data: bool):
    """``(x float32, y int32, description)``: ``n`` test images (repeated if the fixture holds
    fewer), else random images and labels."""
    import numpy as np
    shared = None if random_data else shared_dir()
    x = y = None
    if shared is not None and name == "mnist" and (shared / "data" / "mnist").is_dir():
        from daa_tf.data import load_mnist
        x, y = load_mnist("test", data_dir=shared / "data" / "mnist")
        source = "MNIST test set (fixture)"
    elif shared is not None and name == "cifar10":
        path = shared / "data" / "cifar10" / "test_first1000.npz"
        if path.is_file():
            with np.load(path) as f:
                x, y = f["x"].astype(np.float32), f["y"]
            source = "CIFAR-10 test_first1000 (fixture)"
    if x is None:
        rng = np.random.default_rng(0)
        shape = (n, 784) if name == "mnist" else (n, 32, 32, 3)
        top = SETTINGS[name]["clip_max"]
        return (rng.uniform(0, top, shape).astype(np.float32),
                rng.integers(0, 10, n).astype(np.int32), "random images")
    reps = -(-n // len(x))
    x = np.concatenate([x] * reps)[:n]
    y = np.concatenate([y] * reps)[:n]
    return x.astype(np.float32), y.astype(np.int32), source + (" (repeated)" if reps > 1 else "")


# ------------------------------------------------------------------------------------ runners

def attack_runner(model, attack: str, x, y, steps: int, particles: int, jit: Optional[bool],
                  settings: Dict[str, float]):
    """``(run, compiled_fn, cfg)``: ``run()`` does ``steps`` steps of ``attack`` on the batch."""
    import tensorflow as tf
    from daa_tf import attacks, loop
    from daa_tf.losses import get_loss
    extra = {"particles": particles} if attack.startswith("daa") else {}
    cfg = attacks.make_config(attack, steps=steps, jit_compile=jit, **settings, **extra)
    x0, yt = tf.constant(x), tf.constant(y)
    start = attacks.start_points(cfg, x0, attacks.seed_tensor(0))
    fn = loop.compiled_loop(model, get_loss(cfg.loss), cfg.rule, cfg.targeted, cfg.jit_compile)

    def run(n_steps: int = steps):
        return attacks.run_steps(model, cfg, x0, yt, start, steps=n_steps).numpy()
    return run, fn, cfg


def floor_runner(model, x, y, steps: int, jit: bool):
    """The gradient floor: a compiled ``tf.while_loop`` doing only ``x += d/dx sum_i L_i``, with
    the gradient computed as the attacks' loop computes it (see ``daa_tf.loop``)."""
    import tensorflow as tf
    from daa_tf import loop
    from daa_tf.losses import get_loss
    loss_fn = get_loss("xent")

    def floor(x, y, steps):
        gradient = loop._gradient_function(model, loss_fn, y, False, jit)

        def body(i, x):
            return i + 1, x + gradient(x)
        return tf.while_loop(lambda i, x: i < steps, body, (tf.constant(0), x))[1]

    fn = tf.function(floor, jit_compile=jit)
    x0, yt = tf.constant(x), tf.constant(y)

    def run(n_steps: int = steps):
        return fn(x0, yt, tf.constant(n_steps)).numpy()
    return run, fn


def rule_runner(model, attack: str, x, y, steps: int, particles: int, jit: bool,
                settings: Dict[str, float]):
    """``steps`` steps of ``attack`` with a frozen gradient (computed once at the start): the cost
    of the step rule (direction, sign step, projection) without the model."""
    import tensorflow as tf
    from daa_tf import attacks, loop
    from daa_tf.losses import get_loss
    x0, yt = tf.constant(x), tf.constant(y)
    if attack == "floor":  # the floor's own update: an add
        def rule_loop(x, g, steps):
            return tf.while_loop(lambda i, x: i < steps, lambda i, x: (i + 1, x + g),
                                 (tf.constant(0), x))[1]
        params, cfg = {}, None
    else:
        extra = {"particles": particles} if attack.startswith("daa") else {}
        cfg = attacks.make_config(attack, steps=steps, jit_compile=jit, **settings, **extra)
        params = {k: tf.constant(v, tf.float32) for k, v in cfg.params.items()}
        eps, size = tf.constant(cfg.eps), tf.constant(cfg.step_size)
        low = tf.maximum(x0 - eps, cfg.clip_min)
        high = tf.minimum(x0 + eps, cfg.clip_max)

        def rule_loop(x, g, steps):
            def body(i, x, state):
                v, state = cfg.rule.direction(g, x, state, params)
                return i + 1, tf.clip_by_value(x + size * tf.sign(v), low, high), state
            return tf.while_loop(lambda i, x, s: i < steps, body,
                                 (tf.constant(0), x, cfg.rule.init_state(x, params)))[1]
    grad = loop.loss_gradient(model, get_loss("xent"), x0, yt, False)
    fn = tf.function(rule_loop, jit_compile=jit)
    n = tf.constant(steps)
    return (lambda: fn(x0, grad, n).numpy()), fn


def set_fast_input_gradient(model, choice: str) -> Optional[bool]:
    """Applies ``--fast-input-gradient`` to the model's :class:`InputConv2D` layers (before any
    tracing); returns whether the fast path is used (None: the model has no such layer)."""
    try:
        from daa_tf.models.layers import InputConv2D, default_fast_input_gradient
    except ImportError:
        return None
    layers = [layer for layer in model.layers if isinstance(layer, InputConv2D)]
    setting = {"auto": None, "on": True, "off": False}[choice]
    for layer in layers:
        layer.fast_input_gradient = setting
    if not layers:
        return None
    return default_fast_input_gradient() if setting is None else setting


# ----------------------------------------------------------------------------------- sections

def section_steps(args, model, x, y, settings, jit) -> List[Dict[str, Any]]:
    """Three modes. ``trajectory``: ``--steps`` steps per call from the random start. ``same
    point``: one step per call, every attack and the floor from the same points. ``rule only``:
    the step rule with a frozen gradient (no model), as a share of the same-point PGD step.

    The rule's own cost is what an attack adds to the gradient; the floor computes the gradient as
    the attacks' loop does (a function of its own: see ``daa_tf.loop._gradient_function``)."""
    import tensorflow as tf
    from daa_tf import attacks
    cfg = attacks.make_config("pgd", steps=1, **settings)
    start = attacks.start_points(cfg, tf.constant(x), attacks.seed_tensor(0)).numpy()
    rows = []
    for mode, steps, repeats in (("trajectory", args.steps, args.repeats),
                                 ("same point", 1, args.point_repeats),
                                 ("rule only", args.steps, args.repeats)):
        if repeats < 1:
            continue
        runs, fns = {}, {}
        for attack in args.attacks:
            if mode == "rule only":
                runs[attack], fns[attack] = rule_runner(model, attack, x, y, steps,
                                                        args.particles, jit, settings)
            elif attack == "floor":
                runs[attack], fns[attack] = floor_runner(model, start, y, steps, jit)
            else:
                run, fns[attack], _ = attack_runner(model, attack, x, y, steps, args.particles,
                                                    jit, settings)
                runs[attack] = lambda run=run, steps=steps: run(steps)
        first, times, peaks = interleaved(runs, repeats)
        step_ms = {name: 1000.0 * median(t) / steps for name, t in times.items()}
        if mode == "rule only":  # the rule's share of a PGD step (same-point gradient cost)
            pgd_step = [r for r in rows if r["mode"] == "same point" and r["attack"] == "pgd"]
            base = pgd_step[0]["ms_per_step"] if pgd_step else None
        for name in runs:
            rows.append(dict(
                mode=mode, attack=name, batch=len(x),
                particles=args.particles if name.startswith("daa") else None, jit=jit,
                steps=steps, repeats=repeats, ms_per_step=step_ms[name],
                image_steps_per_s=len(x) * 1000.0 / step_ms[name],
                vs_floor=(step_ms[name] / step_ms["floor"] if "floor" in step_ms
                          and mode != "rule only" else None),
                vs_pgd=(step_ms[name] / step_ms["pgd"] if "pgd" in step_ms
                        and mode != "rule only" else None),
                of_pgd_step=(step_ms[name] / base if mode == "rule only" and base else None),
                peak_mb=peaks[name], first_call_s=first[name],
                tracing_count=fns[name].experimental_get_tracing_count()))
    return rows


def section_driver(args, model, x, y, settings, jit) -> List[Dict[str, Any]]:
    import tensorflow as tf
    import daa_tf
    from daa_tf import attacks
    from daa_tf.driver import round_lengths
    n = min(args.driver_examples, len(x))
    xs, ys = x[:n], y[:n]
    rows = []
    for attack in ("pgd", "daa_blob"):
        extra = {"particles": args.particles} if attack.startswith("daa") else {}
        kw = dict(steps=args.driver_steps, jit_compile=jit, **settings, **extra)
        cfg = attacks.make_config(attack, **kw)
        batch = args.batch if not cfg.interacting else max(
            args.particles, args.batch // args.particles * args.particles)
        schedule = (round_lengths(cfg.steps, args.steps_per_round) if cfg.interacting
                    else [cfg.steps])
        start = attacks.start_points(cfg, tf.constant(xs), attacks.seed_tensor(0)).numpy()

        def bare():
            cur = start.copy()
            for length in schedule:
                for i in range(0, n, batch):
                    cur[i:i + batch] = attacks.run_steps(
                        model, cfg, tf.constant(xs[i:i + batch]), tf.constant(ys[i:i + batch]),
                        tf.constant(cur[i:i + batch]), steps=length).numpy()
            return cur

        def driver():
            return daa_tf.run(model, xs, ys, attack=attack, restarts=1,
                              steps_per_round=args.steps_per_round, batch_size=batch, seed=0,
                              verbose=0, **kw)

        _, times, _ = interleaved({"run_steps": bare, "daa_tf.run": driver},
                                  max(1, min(args.repeats, args.driver_repeats)))
        bare_s, driver_s = median(times["run_steps"]), median(times["daa_tf.run"])
        rows.append(dict(attack=attack, examples=n, batch=batch, steps=cfg.steps,
                         steps_per_round=args.steps_per_round, jit=cfg.jit_compile,
                         run_steps_s=bare_s, driver_s=driver_s,
                         overhead=driver_s / bare_s - 1.0, calls=len(schedule) * -(-n // batch)))
    return rows


def section_compile(args, model_name, x, y, settings, random_weights) -> List[Dict[str, Any]]:
    rows = []
    steps, repeats = args.compile_steps, args.compile_repeats
    for attack in args.compile_attacks:
        steady = {}
        for jit in (False, True):
            model, _ = build_model(model_name, random_weights)  # a fresh model: nothing cached
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


def kernel_runner(particles: int, dim: int, tiled: bool):
    """The DAA-BLOB direction alone on one group of ``particles`` random points ``[1, M, dim]``."""
    import numpy as np
    import tensorflow as tf
    from daa_tf import particles as kernel
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 1, (1, particles, dim)).astype(np.float32))
    g = tf.constant(rng.normal(0, 1e-3, (1, particles, dim)).astype(np.float32))
    mask, sizes = tf.ones([1, particles]), tf.fill([1], float(particles))
    saved = kernel.TILE_THRESHOLD
    kernel.TILE_THRESHOLD = particles - 1 if tiled else particles
    try:  # the path is chosen while tracing
        fn = tf.function(lambda g, x: kernel.blob_direction(g, x, mask, sizes, 1.1))
        fn.get_concrete_function(g, x)
    finally:
        kernel.TILE_THRESHOLD = saved
    return lambda: fn(g, x).numpy()


def section_large(args, model, x, y, settings, jit) -> List[Dict[str, Any]]:
    import numpy as np
    from daa_tf import particles as kernel
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


def authors_runs(args) -> Optional[List[Dict[str, Any]]]:
    """One subprocess run of :mod:`benchmarks.authors` (PGD then DAA-BLOB over the paper set);
    None, with the reason on stderr, when it cannot run here."""
    import subprocess
    command = [sys.executable, "-m", "benchmarks.authors", "--json", "-",
               "--examples", str(args.paper_examples), "--steps", str(args.paper_steps)]
    if args.random:
        command.append("--random")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        tail = done.stderr.strip().splitlines()[-3:]
        print("# the authors' loops could not run here (" + " / ".join(tail) + "): only the "
              "recorded figures are shown", file=sys.stderr)
        return None
    return json.loads(done.stdout)["runs"]


def section_paper(args, model, x, y, settings, jit) -> List[Dict[str, Any]]:
    """PGD and DAA-BLOB over the first ``--paper-examples`` images, one restart of ``daa_tf.run``
    (random start, rounds of ``--steps-per-round`` with reshuffles, groups of ``--particles``,
    the driver's default batch, final evaluation) against :mod:`benchmarks.authors` (their design:
    TF1 session run per step, host-side kernel, batches of 200), alternated ``--paper-repeats``
    times; medians. Also the ratio to the authors' figures recorded in ``AUTHORS_SECONDS``."""
    import daa_tf
    n = min(args.paper_examples, len(x))
    ours: Dict[str, List[float]] = {"pgd": [], "daa_blob": []}
    accuracy: Dict[str, float] = {}
    theirs: Dict[str, List[Dict[str, Any]]] = {"pgd": [], "daa_blob": []}
    for repeat in range(-1 if args.paper_warmup else 0, args.paper_repeats):
        if repeat >= 0 and args.paper_authors:
            for run in authors_runs(args) or []:
                theirs[run["attack"]].append(run)
        for attack in ("pgd", "daa_blob"):
            extra = {"particles": args.particles} if attack.startswith("daa") else {}
            started = time.perf_counter()
            result = daa_tf.run(model, x[:n], y[:n], attack=attack, steps=args.paper_steps,
                                steps_per_round=args.steps_per_round, seed=repeat + 1, verbose=0,
                                jit_compile=jit, **settings, **extra)
            if repeat >= 0:  # the warm-up call traces and optimises the graphs
                ours[attack].append(time.perf_counter() - started)
                accuracy[attack] = result.accuracy
    full = n == 1000 and args.paper_steps == 100
    rows = []
    for attack in ("pgd", "daa_blob"):
        seconds = median(ours[attack])
        their = median([r["seconds"] for r in theirs[attack]]) if theirs[attack] else None
        rows.append(dict(attack=attack, examples=n, steps=args.paper_steps, jit=jit,
                         seconds=seconds, accuracy=accuracy[attack], authors_measured_s=their,
                         authors_accuracy=theirs[attack][-1]["accuracy"] if their else None,
                         vs_authors_measured=seconds / their if their else None,
                         runs=len(ours[attack]), seconds_all=ours[attack],
                         authors_seconds_all=[r["seconds"] for r in theirs[attack]],
                         authors_s=AUTHORS_SECONDS[attack] if full else None,
                         vs_authors=seconds / AUTHORS_SECONDS[attack] if full else None))
    return rows


# -------------------------------------------------------------------------------------- output

COLUMNS = {
    "steps": [("mode", "mode", "{}"), ("attack", "attack", "{}"), ("batch", "batch", "{}"), ("particles", "particles", "{}"),
              ("jit", "jit", "{}"), ("image_steps_per_s", "img*steps/s", "{:.0f}"),
              ("ms_per_step", "ms/step", "{:.1f}"), ("vs_floor", "x floor", "{:.3f}"),
              ("vs_pgd", "x pgd", "{:.3f}"), ("of_pgd_step", "of pgd step", "{:.1%}"),
              ("peak_mb", "peak MB", "{:.0f}"),
              ("tracing_count", "traces", "{}")],
    "driver": [("attack", "attack", "{}"), ("examples", "examples", "{}"), ("batch", "batch", "{}"),
               ("steps", "steps", "{}"), ("calls", "calls", "{}"),
               ("run_steps_s", "run_steps s", "{:.2f}"), ("driver_s", "daa_tf.run s", "{:.2f}"),
               ("overhead", "overhead", "{:+.1%}")],
    "compile": [("attack", "attack", "{}"), ("batch", "batch", "{}"), ("jit", "jit", "{}"),
                ("first_call_s", "first call s", "{:.2f}"), ("compile_s", "compile s", "{:.2f}"),
                ("ms_per_step", "ms/step", "{:.1f}"), ("xla_vs_graph", "xla/graph", "{:.3f}"),
                ("tracing_count", "traces", "{}")],
    "large": [("what", "what", "{}"), ("batch", "batch", "{}"), ("particles", "particles", "{}"),
              ("kernel", "kernel", "{}"), ("jit", "jit", "{}"), ("s_per_step", "s/step", "{:.2f}"),
              ("vs_groups", "x groups", "{:.2f}"), ("tiled_vs_held", "x held", "{:.2f}"),
              ("rss_before_mb", "RSS before MB", "{:.0f}"), ("peak_mb", "peak MB", "{:.0f}"),
              ("peak_over_before_mb", "peak-before MB", "{:.0f}")],
    "paper": [("attack", "attack", "{}"), ("examples", "images", "{}"), ("steps", "steps", "{}"),
              ("jit", "jit", "{}"), ("runs", "runs", "{}"), ("seconds", "ours s", "{:.1f}"),
              ("accuracy", "ours acc", "{:.1%}"),
              ("authors_measured_s", "authors s (now)", "{:.1f}"),
              ("authors_accuracy", "authors acc", "{:.1%}"),
              ("vs_authors_measured", "x authors (now)", "{:.3f}"),
              ("authors_s", "authors s (recorded)", "{}"),
              ("vs_authors", "x recorded", "{:.3f}")],
}
TITLES = {"steps": "Step time (medians of interleaved repeats; floor = model input gradient only)",
          "driver": "Driver overhead (daa_tf.run vs attacks.run_steps on the same batches)",
          "compile": "Compilation and XLA (fresh model per row)",
          "large": "One DAA group of all images (tiled kernel) vs groups; peak resident memory",
          "paper": "the paper's run (1000 MNIST images, 100 steps) vs the authors' design, "
                   "alternated"}


def format_table(section: str, rows: List[Dict[str, Any]]) -> str:
    cols = COLUMNS[section]
    cells = [[h for _, h, _ in cols]]
    for row in rows:
        cells.append(["-" if row.get(k) is None else fmt.format(row[k]) for k, _, fmt in cols])
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return f"## {section}: {TITLES[section]}\n" + "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", choices=sorted(SETTINGS), default="mnist")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated, of {', '.join(SECTIONS)}")
    p.add_argument("--attacks", default=",".join(STEP_ATTACKS),
                   help=f"steps section, comma-separated, of {', '.join(STEP_ATTACKS)}")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--particles", type=int, default=200, help="DAA group size")
    p.add_argument("--steps", type=int, default=10, help="steps per timed call")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--point-repeats", type=int, default=15,
                   help="steps section: one-step calls from the same points (0: skip)")
    p.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                   help="auto: daa_tf's default for this device (XLA on GPU, graph on CPU)")
    p.add_argument("--driver-examples", type=int, default=2000)
    p.add_argument("--driver-steps", type=int, default=30)
    p.add_argument("--driver-repeats", type=int, default=4)
    p.add_argument("--steps-per-round", type=int, default=10)
    p.add_argument("--compile-attacks", default="floor,pgd,daa_blob")
    p.add_argument("--compile-steps", type=int, default=3)
    p.add_argument("--compile-repeats", type=int, default=2)
    p.add_argument("--large-particles", type=int, default=10000)
    p.add_argument("--large-steps", type=int, default=2)
    p.add_argument("--large-repeats", type=int, default=2)
    p.add_argument("--large-held", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the untiled kernel on the large group (its memory grows as M^2)")
    p.add_argument("--tile-threshold", type=int, default=None,
                   help="override daa_tf.particles.TILE_THRESHOLD (groups above it are tiled)")
    p.add_argument("--paper-examples", type=int, default=1000)
    p.add_argument("--paper-steps", type=int, default=100)
    p.add_argument("--paper-repeats", type=int, default=3,
                   help="alternated runs of ours and of the authors' loops (medians)")
    p.add_argument("--paper-authors", action=argparse.BooleanOptionalAction, default=True,
                   help="time the authors' loops (benchmarks.authors, a subprocess) alongside")
    p.add_argument("--paper-warmup", action=argparse.BooleanOptionalAction, default=True,
                   help="one untimed run of ours first (tracing, graph optimisation)")
    p.add_argument("--fast-input-gradient", choices=("auto", "on", "off"), default="auto",
                   help="the MNIST nets' first convolution (daa_tf.models.layers.InputConv2D): "
                        "auto = its default (on without a GPU/TPU); off = Conv2D's own gradient")
    p.add_argument("--random", action="store_true",
                   help="random weights and images even when the fixtures are present")
    p.add_argument("--intra-threads", type=int, default=0, help="0: TensorFlow's default")
    p.add_argument("--inter-threads", type=int, default=0, help="0: TensorFlow's default")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="also write the results as JSON to PATH ('-': stdout, tables to stderr)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.sections = [s for s in args.sections.split(",") if s]
    args.attacks = [a for a in args.attacks.split(",") if a]
    args.compile_attacks = [a for a in args.compile_attacks.split(",") if a]
    for name in args.sections:
        if name not in SECTIONS:
            p.error(f"unknown section {name!r}: use {', '.join(SECTIONS)}")
    for name in args.attacks + args.compile_attacks:
        if name not in STEP_ATTACKS:
            p.error(f"unknown attack {name!r}: use {', '.join(STEP_ATTACKS)}")
    if "paper" in args.sections and args.model != "mnist":
        args.sections.remove("paper")  # the authors' figures are MNIST ones
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    if args.intra_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_threads)
    if args.inter_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_threads)
    from daa_tf import particles as kernel
    saved_threshold = kernel.TILE_THRESHOLD
    if args.tile_threshold is not None:
        kernel.TILE_THRESHOLD = args.tile_threshold
    try:
        return _run(args, tf, kernel)
    finally:
        kernel.TILE_THRESHOLD = saved_threshold


def _run(args: argparse.Namespace, tf, kernel) -> Dict[str, Any]:
    from daa_tf import loop
    jit = {"auto": loop.default_jit_compile(), "on": True, "off": False}[args.jit]
    out = sys.stderr if args.json == "-" else sys.stdout
    settings = SETTINGS[args.model]

    model, model_desc = build_model(args.model, args.random)
    fast_conv = set_fast_input_gradient(model, args.fast_input_gradient)
    need = max([args.batch]
               + ([args.driver_examples] if "driver" in args.sections else [])
               + ([args.large_particles] if "large" in args.sections else [])
               + ([args.paper_examples] if "paper" in args.sections else []))
    x_all, y_all, data_desc = load_data(args.model, need, args.random)
    x, y = x_all[:args.batch], y_all[:args.batch]
    meta = dict(tensorflow=tf.__version__, python=platform.python_version(),
                machine=platform.machine(), cpus=os.cpu_count(),
                gpus=len(tf.config.list_logical_devices("GPU")), model=model_desc, data=data_desc,
                default_jit=loop.default_jit_compile(), jit=jit,
                intra_threads=tf.config.threading.get_intra_op_parallelism_threads(),
                inter_threads=tf.config.threading.get_inter_op_parallelism_threads(),
                tile_threshold=kernel.TILE_THRESHOLD, fast_input_gradient=fast_conv,
                load_average_before=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                command="python -m benchmarks.run " + " ".join(args.argv))
    print(f"# daa_tf benchmarks: TF {meta['tensorflow']}, {meta['cpus']} CPUs, {meta['gpus']} GPUs, "
          f"{model_desc}, {data_desc}; default jit_compile={meta['default_jit']}; "
          f"first convolution's fast input gradient: {fast_conv}", file=out)
    if meta["load_average_before"]:
        print(f"# load average before: {', '.join(f'{v:.2f}' for v in meta['load_average_before'])}",
              file=out)
    results: Dict[str, Any] = {"meta": meta}
    for section in args.sections:
        started = time.perf_counter()
        if section == "steps":
            rows = section_steps(args, model, x, y, settings, jit)
        elif section == "driver":
            rows = section_driver(args, model, x_all, y_all, settings, jit)
        elif section == "compile":
            rows = section_compile(args, args.model, x, y, settings, args.random)
        elif section == "large":
            rows = section_large(args, model, x_all, y_all, settings, jit)
        else:
            rows = section_paper(args, model, x_all, y_all, settings, jit)
        results[section] = rows
        print("\n" + format_table(section, rows), file=out)
        print(f"({time.perf_counter() - started:.0f} s)", file=out)
        out.flush()
    meta["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if args.json:
        text = json.dumps(results, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
