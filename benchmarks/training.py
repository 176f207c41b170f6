"""Adversarial-training step time: ``python -m benchmarks.training [--json PATH|-] [options]``.

``speed``: seconds per training step (inner PGD, MadryLab's MNIST settings by default: batch 50,
40 steps of 0.01 at eps 0.3, random start, Adam) of

- ``bare``: a plain ``tf.function`` step calling ``daa_tf.pgd`` then applying the gradients of the
  cross-entropy on the adversarial batch (no metrics), fed by the same ``tf.data`` pipeline;
- ``fit``: :class:`daa_tf.training.AdversarialTrainer` in ``model.fit`` (loss, adversarial and
  natural accuracy; the natural one costs an extra inference forward pass);
- ``fit_no_nat``: the same with ``natural_metrics=False``;
- ``art``: ART's ``AdversarialTrainerMadryPGD`` on the same net and batch, when ``art`` is
  importable (optional extra; the attack runs step by step from Python).

Each contender runs blocks of ``--block`` steps (a ``fit`` call per block for the wrapper), timed
as medians of ``--repeats`` interleaved repeats (the order rotating) after one warm-up block, in
wall time and in process CPU time (all threads; steadier than wall time on a shared machine);
ratios are to ``bare``.

``outcome``: ``--outcome-steps`` steps of ``fit`` on MNIST's training set (the fixture's files;
skipped without them) with the same settings and Adam at ``--lr``, then the natural and PGD-40
(0.01, random start) accuracy of the result on the first ``--eval-examples`` test images.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from benchmarks.common import median, shared_dir


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.training",
                                description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--steps", type=int, default=40, help="inner PGD steps")
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--step-size", type=float, default=0.01)
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    p.add_argument("--block", type=int, default=10, help="training steps per timed block")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--contenders", default="bare,fit,fit_no_nat,art",
                   help="comma-separated; empty: skip the speed section")
    p.add_argument("--outcome-steps", type=int, default=300, help="0: skip the outcome run")
    p.add_argument("--eval-examples", type=int, default=1000)
    p.add_argument("--eval-steps", type=int, default=40)
    p.add_argument("--random", action="store_true", help="random images even with the fixtures")
    p.add_argument("--json", metavar="PATH", default=None, help="write the results ('-': stdout)")
    return p.parse_args(argv)


def _train_data(args: argparse.Namespace):
    import numpy as np

    from daa_tf import data
    shared = None if args.random else shared_dir()
    if shared is not None and (shared / "data" / "mnist").is_dir():
        x, y = data.load_mnist("train", shared / "data" / "mnist")
        return x, y, "MNIST train (fixture)"
    rng = np.random.default_rng(0)
    n = max(args.batch * 4, 200)
    return (rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n),
            "random images")


def _attack_settings(args: argparse.Namespace) -> Dict[str, Any]:
    return dict(eps=args.eps, step_size=args.step_size, steps=args.steps, random_start=True)


def _fit_runner(args, x, y, natural_metrics: bool) -> Callable[[], None]:
    import keras

    from daa_tf import training
    from daa_tf.models.madry_mnist import build_madry_mnist
    trainer = training.AdversarialTrainer(build_madry_mnist(), "pgd", seed=0,
                                          natural_metrics=natural_metrics,
                                          **_attack_settings(args))
    trainer.compile(keras.optimizers.Adam(args.lr, epsilon=1e-8))
    batches = training.training_batches(x, y, args.batch, seed=0)

    def run() -> None:
        trainer.fit(batches, steps_per_epoch=args.block, epochs=1, verbose=0, shuffle=False)
    return run


def _bare_runner(args, x, y) -> Callable[[], None]:
    import keras
    import tensorflow as tf

    import daa_tf
    from daa_tf import training
    from daa_tf.models.madry_mnist import build_madry_mnist
    model = build_madry_mnist()
    optimizer = keras.optimizers.Adam(args.lr, epsilon=1e-8)
    optimizer.build(model.trainable_variables)
    xent = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    settings = _attack_settings(args)

    @tf.function
    def step(xb, yb):
        seed = training.derived_seed(0, training.TRAIN_TAG, 0, optimizer.iterations)
        x_adv = daa_tf.pgd(model, xb, yb, seed=seed, **settings)
        with tf.GradientTape() as tape:
            loss = xent(yb, model(x_adv, training=True))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    iterator = iter(training.training_batches(x, y, args.batch, seed=0))

    def run() -> None:
        for _ in range(args.block):
            xb, yb = next(iterator)
            loss = step(xb, yb)
        loss.numpy()  # wait for the last step
    return run


def _art_runner(args, x, y) -> Optional[Callable[[], None]]:
    os.environ.setdefault("TQDM_DISABLE", "1")  # ART's progress bars
    try:
        from art.defences.trainer import AdversarialTrainerMadryPGD
        from art.estimators.classification import TensorFlowV2Classifier
    except ImportError:
        return None
    import keras
    import tensorflow as tf

    from daa_tf.models.madry_mnist import build_madry_mnist
    model = build_madry_mnist()
    optimizer = keras.optimizers.Adam(args.lr, epsilon=1e-8)
    classifier = TensorFlowV2Classifier(
        model, nb_classes=10, input_shape=(784,), optimizer=optimizer,
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0))
    trainer = AdversarialTrainerMadryPGD(classifier, nb_epochs=1, batch_size=args.batch,
                                         eps=args.eps, eps_step=args.step_size,
                                         max_iter=args.steps, num_random_init=1)
    block = x[: args.batch * args.block], y[: args.batch * args.block]

    def run() -> None:
        trainer.fit(*block)
    return run


def _interleaved(runs: Dict[str, Callable[[], None]], repeats: int):
    """One warm-up call of each run (its seconds), then ``repeats`` rounds A B C ..., the order
    rotating every round; each call's wall and process CPU seconds (all threads: the CPU time
    is what the step costs, the wall time what other processes on a shared machine add to)."""
    names = list(runs)
    first, wall, cpu = {}, {n: [] for n in names}, {n: [] for n in names}
    for name in names:
        started = time.perf_counter()
        runs[name]()
        first[name] = time.perf_counter() - started
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            started, cpu_started = time.perf_counter(), time.process_time()
            runs[name]()
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - cpu_started)
    return first, wall, cpu


def speed(args: argparse.Namespace, x, y) -> List[Dict[str, Any]]:
    makers = {"bare": lambda: _bare_runner(args, x, y),
              "fit": lambda: _fit_runner(args, x, y, True),
              "fit_no_nat": lambda: _fit_runner(args, x, y, False),
              "art": lambda: _art_runner(args, x, y)}
    wanted = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = set(wanted) - set(makers)
    if unknown:
        raise SystemExit(f"unknown contenders {sorted(unknown)}; known: {sorted(makers)}")
    runs, skipped = {}, []
    for name in wanted:
        run = makers[name]()
        if run is None:
            skipped.append(name)
        else:
            runs[name] = run
    first, wall, cpu = _interleaved(runs, args.repeats)
    per_step = {name: median(t) / args.block for name, t in wall.items()}
    best = {name: min(t) / args.block for name, t in wall.items()}
    cpu_step = {name: median(t) / args.block for name, t in cpu.items()}
    base, cpu_base = per_step.get("bare"), cpu_step.get("bare")
    rows = [{"contender": name, "s_per_step": per_step[name], "cpu_s_per_step": cpu_step[name],
             "min_s_per_step": best[name], "first_block_s": first[name],
             "repeats_s_per_step": [v / args.block for v in wall[name]],
             "vs_bare": None if base is None else per_step[name] / base,
             "cpu_vs_bare": None if cpu_base is None else cpu_step[name] / cpu_base,
             "min_vs_bare": None if base is None else best[name] / best["bare"]}
            for name in runs]
    rows += [{"contender": name, "skipped": "art is not importable (optional extra)"}
             for name in skipped]
    return rows


def outcome(args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    shared = None if args.random else shared_dir()
    if args.outcome_steps < 1 or shared is None:
        return None
    import keras
    import numpy as np
    import tensorflow as tf

    from daa_tf import attacks, data, training
    from daa_tf.models.madry_mnist import build_madry_mnist
    x, y = data.load_mnist("train", shared / "data" / "mnist")
    x_test, y_test = data.load_mnist("test", shared / "data" / "mnist", args.eval_examples)
    keras.utils.set_random_seed(0)
    model = build_madry_mnist()
    trainer = training.AdversarialTrainer(model, "pgd", seed=0, **_attack_settings(args))
    trainer.compile(keras.optimizers.Adam(args.lr, epsilon=1e-8))
    started = time.perf_counter()
    history = trainer.fit(training.training_batches(x, y, args.batch, seed=0,
                                                    stop_step=args.outcome_steps),
                          verbose=0, shuffle=False).history
    seconds = time.perf_counter() - started
    logits = tf.function(lambda t: model(t, training=False))
    natural = float(np.mean(np.argmax(logits(x_test).numpy(), 1) == y_test))
    x_adv = attacks.pgd(model, x_test, y_test, eps=args.eps, step_size=args.step_size,
                        steps=args.eval_steps, seed=1)
    robust = float(np.mean(np.argmax(logits(x_adv).numpy(), 1) == y_test))
    return {"steps": args.outcome_steps, "batch": args.batch, "lr": args.lr, "seconds": seconds,
            "train_adv_accuracy_last_epoch": history["adv_accuracy"][-1],
            "test_examples": len(x_test), "natural_accuracy": natural,
            f"pgd{args.eval_steps}_accuracy": robust}


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Runs both sections; prints a summary and returns (with ``--json`` also writes) them."""
    args = parse_args(argv)
    import tensorflow as tf
    out = sys.stderr if args.json == "-" else sys.stdout
    x, y, source = _train_data(args)
    results: Dict[str, Any] = {"meta": {
        "command": "python -m benchmarks.training " + " ".join(argv or sys.argv[1:]),
        "tensorflow": tf.__version__, "machine": platform.machine(), "data": source,
        "settings": {**_attack_settings(args), "batch": args.batch, "block": args.block,
                     "repeats": args.repeats}}}
    results["speed"] = speed(args, x, y) if args.contenders.strip() else []
    if results["speed"]:
        print("## speed: seconds per adversarial training step (median of interleaved repeats)",
              file=out)
    for row in results["speed"]:
        if "skipped" in row:
            print(f"  {row['contender']:>11}: skipped ({row['skipped']})", file=out)
        else:
            ratio = "" if row["vs_bare"] is None else (
                f"  x bare {row['vs_bare']:.3f} (CPU time x {row['cpu_vs_bare']:.3f}, fastest "
                f"repeat x {row['min_vs_bare']:.3f})")
            print(f"  {row['contender']:>11}: {row['s_per_step'] * 1000:8.1f} ms/step, CPU "
                  f"{row['cpu_s_per_step'] * 1000:8.1f} ms/step{ratio}", file=out)
    results["outcome"] = outcome(args)
    if results["outcome"] is not None:
        print("## outcome: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in results["outcome"].items()), file=out)
    if args.json:
        text = json.dumps(results, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
