"""Speed benchmarks of the attacks: ``python -m benchmarks.run [--json PATH|-] [options]``.

Sections (``--sections``, default all but ``training`` and ``strength``; each a function of one
:class:`benchmarks.common.Context` registered with :func:`benchmarks.common.section`):

- ``steps``: step time of the gradient floor (a ``tf.while_loop`` doing only the gradient of the
  summed loss and an add), PGD, momentum PGD, DAA-BLOB and DAA-DGF on one batch, as medians of
  interleaved repeats in one process; ratios to the floor and to PGD. Not by default (add them
  with ``--attacks``): ``apgd`` and ``multitargeted`` (one run toward the most likely wrong class;
  trajectory and rule-only modes) and ART's PGD ``art_pgd`` (trajectory mode; optional extra,
  ``pip install adversarial-robustness-toolbox``), e.g. ``--sections steps --attacks
  floor,pgd,apgd,multitargeted,art_pgd``.
- ``driver``: ``daa_tf.run`` against calling ``daa_tf.engine.run_loop`` on the same batches.
- ``compile``: first-call time (trace, graph optimisation or XLA compilation, and one step),
  compile time (that less one steady step), steady step time and tracing count, with XLA
  (``jit_compile=True``) and the plain graph.
- ``large``: DAA-BLOB with one group of ``--large-particles`` particles (the tiled kernel) against
  groups of ``--particles`` on the same images; peak resident memory of each.
- ``paper``: PGD and DAA-BLOB, 100 steps over 1000 MNIST images through ``daa_tf.run``, against
  the DAA authors' design re-created in :mod:`benchmarks.authors` (TF1 graph, a session run per
  step, the kernel on the host) and timed in the same invocation, alternated; also against the
  authors' code as timed once on the project's machine (``AUTHORS_SECONDS``).
- ``groups``: the DAA group size against the model's input gradient (:mod:`benchmarks.imagenet`;
  on ``--model imagenet`` the only section).
- ``training`` (MNIST; not run by default, it takes minutes): adversarial-training step time of
  :class:`daa_tf.training.AdversarialTrainer` against a bare ``tf.function`` step (and ART's
  trainer when importable), and the outcome of a short training run (:mod:`benchmarks.training`;
  its arguments are ``--training-...``): ``python -m benchmarks.run --sections training``.
- ``strength`` (not run by default, tens of minutes): model accuracy against gradients per image
  (budgets 100, 500, 1000) of PGD, DAA-BLOB, APGD, ODI, MultiTargeted, ``daa_tf.strongest`` (and
  ART's APGD when importable), with wall times (:mod:`benchmarks.strength`; its arguments are
  ``--strength-...``): ``python -m benchmarks.run --model mnist --sections strength``.

A section's own arguments are named after it (``--large-...``, ``--paper-...``, ``--training-...``,
``--strength-...``).

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
from typing import Any, Dict, List, Optional, Sequence, Tuple

from benchmarks import paper, speed  # noqa: F401 - importing them registers their sections
from benchmarks import imagenet  # noqa: F401 - registers the groups section
from benchmarks import training  # noqa: F401 - registers the training section (not by default)
from benchmarks import strength  # noqa: F401 - registers the strength section (not by default)
from benchmarks.common import (SECTIONS, SETTINGS, Context, build_model, default_sections,
                               format_table, load_data, set_fast_input_gradient)
from benchmarks.speed import DEFAULT_STEP_ATTACKS, PEER_ATTACKS, STEP_ATTACKS

# imported for their side effect: each registers its sections (named here for pyflakes)
SECTION_MODULES = (paper, speed, imagenet, training, strength)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The arguments; ``--sections`` and the attacks checked against the registries."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", choices=sorted(SETTINGS), default="mnist")
    p.add_argument("--sections", default=",".join(default_sections()),
                   help=f"comma-separated, of {', '.join(SECTIONS)}")
    p.add_argument("--attacks", default=",".join(DEFAULT_STEP_ATTACKS),
                   help=f"steps section, comma-separated, of {', '.join(STEP_ATTACKS)} "
                        f"({', '.join(PEER_ATTACKS)}: trajectory mode only)")
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
    p.add_argument("--compile-attacks", default="floor,pgd,daa_blob",
                   help="compile section, comma-separated, of the --attacks names but "
                        + ", ".join(PEER_ATTACKS))
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
    for registered in SECTIONS.values():  # the sections' own --<section>-... arguments
        if registered.arguments is not None:
            registered.arguments(p)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.sections = [s for s in args.sections.split(",") if s]
    args.attacks = [a for a in args.attacks.split(",") if a]
    args.compile_attacks = [a for a in args.compile_attacks.split(",") if a]
    for name in args.sections:
        if name not in SECTIONS:
            p.error(f"unknown section {name!r}: use {', '.join(SECTIONS)}")
    for name in args.attacks:
        if name not in STEP_ATTACKS:
            p.error(f"unknown attack {name!r}: use {', '.join(STEP_ATTACKS)}")
    compiled = [name for name in STEP_ATTACKS if name not in PEER_ATTACKS]
    for name in args.compile_attacks:
        if name not in compiled:
            p.error(f"unknown compile attack {name!r}: use {', '.join(compiled)}")
    # sections measured on other models only (the authors' figures are MNIST ones)
    args.sections = [s for s in args.sections if args.model in SECTIONS[s].models]
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Runs the sections asked for; prints their tables and returns (and with ``--json``
    writes) ``{"meta": ..., section: rows}``."""
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
        return _run(args)
    finally:
        kernel.TILE_THRESHOLD = saved_threshold


def _context(args: argparse.Namespace) -> Tuple[Context, Dict[str, Any]]:
    """The model, the data and the run's description (``meta``)."""
    import tensorflow as tf
    from daa_tf import device
    from daa_tf import particles as kernel

    jit = {"auto": device.default_jit_compile(), "on": True, "off": False}[args.jit]
    model, model_desc = build_model(args.model, args.random)
    fast_conv = set_fast_input_gradient(model, args.fast_input_gradient)
    need = max([args.batch] + [SECTIONS[s].examples(args) for s in args.sections])
    x_all, y_all, data_desc = load_data(args.model, need, args.random)
    ctx = Context(args=args, model=model, model_name=args.model, x=x_all[:args.batch],
                  y=y_all[:args.batch], x_all=x_all, y_all=y_all, settings=SETTINGS[args.model],
                  jit=jit)
    meta = dict(tensorflow=tf.__version__, python=platform.python_version(),
                machine=platform.machine(), cpus=os.cpu_count(),
                gpus=len(tf.config.list_logical_devices("GPU")), model=model_desc, data=data_desc,
                default_jit=device.default_jit_compile(), jit=jit,
                intra_threads=tf.config.threading.get_intra_op_parallelism_threads(),
                inter_threads=tf.config.threading.get_inter_op_parallelism_threads(),
                tile_threshold=kernel.TILE_THRESHOLD, fast_input_gradient=fast_conv,
                load_average_before=_load_average(),
                command="python -m benchmarks.run " + " ".join(args.argv))
    return ctx, meta


def _load_average() -> Optional[List[float]]:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _run(args: argparse.Namespace) -> Dict[str, Any]:
    out = sys.stderr if args.json == "-" else sys.stdout
    ctx, meta = _context(args)
    print(f"# daa_tf benchmarks: TF {meta['tensorflow']}, {meta['cpus']} CPUs, {meta['gpus']} "
          f"GPUs, {meta['model']}, {meta['data']}; default jit_compile={meta['default_jit']}; "
          f"first convolution's fast input gradient: {meta['fast_input_gradient']}", file=out)
    if meta["load_average_before"]:
        print("# load average before: "
              + ", ".join(f"{v:.2f}" for v in meta["load_average_before"]), file=out)
    results: Dict[str, Any] = {"meta": meta}
    for name in args.sections:
        started = time.perf_counter()
        results[name] = SECTIONS[name].run(ctx)
        print("\n" + format_table(name, results[name]), file=out)
        print(f"({time.perf_counter() - started:.0f} s)", file=out)
        out.flush()
    meta["load_average_after"] = _load_average()
    if args.json:
        text = json.dumps(results, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
