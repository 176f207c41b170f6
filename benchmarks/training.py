"""Adversarial-training step time and outcome: the ``training`` section of ``benchmarks.run``,
MNIST only and not run by default (it takes minutes):
``python -m benchmarks.run --sections training [--training-... options] [--json PATH|-]``.

Speed rows (``part`` ``speed``): seconds per training step (inner PGD, MadryLab's MNIST settings
by default: batch 50 (``--training-batch``), 40 steps (``--training-steps``) of 0.01 at eps 0.3
(the model's settings, or ``--training-step-size``/``--training-eps``), random start, Adam) of

- ``bare``: a plain ``tf.function`` step calling ``daa_tf.pgd`` then applying the gradients of the
  cross-entropy on the adversarial batch (no metrics), fed by the same ``tf.data`` pipeline;
- ``fit``: :class:`daa_tf.training.AdversarialTrainer` in ``model.fit`` (loss, adversarial and
  natural accuracy; the natural one costs an extra inference forward pass);
- ``fit_no_nat``: the same with ``natural_metrics=False``;
- ``art``: ART's ``AdversarialTrainerMadryPGD`` on the same net and batch, when ``art`` is
  importable (optional extra; the attack runs step by step from Python).

Each contender trains a fresh randomly initialised net of its own (the context's model is not
trained), in blocks of ``--training-block`` steps (a ``fit`` call per block for the wrapper),
timed by :func:`benchmarks.common.interleaved` as medians of ``--training-repeats`` interleaved
repeats (the order rotating) after one warm-up block, in wall time and in process CPU time (all
threads; steadier than wall time on a shared machine); ratios are to ``bare``. The training
images are MNIST's training set (the fixture's files), else (or with ``--random``) random ones.

Outcome row (``part`` ``outcome``): ``--training-outcome-steps`` steps of ``fit`` on MNIST's
training set (the fixture's files; no row without them or with ``--random``) with the same
settings and Adam at ``--training-lr``, then the natural and PGD (``--training-eval-steps`` of
the step size, random start) accuracy of the result on the first ``--training-eval-examples``
test images.
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from daa_tf import recipes

from benchmarks.common import (Context, Row, art_classifier, contender_list, import_art,
                               interleaved, median, section, shared_dir)

CONTENDERS = ("bare", "fit", "fit_no_nat", "art")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The section's ``--training-...`` arguments (its ``arguments`` hook)."""
    g = p.add_argument_group("training section")
    g.add_argument("--training-batch", type=int, default=50, help="training batch")
    g.add_argument("--training-steps", type=int, default=40, help="inner PGD steps")
    g.add_argument("--training-eps", type=float, default=None,
                   help="inner PGD eps; None: the model's (0.3 on MNIST)")
    g.add_argument("--training-step-size", type=float, default=None,
                   help="inner PGD step size; None: the model's (0.01 on MNIST)")
    g.add_argument("--training-lr", type=float, default=1e-4, help="Adam learning rate")
    g.add_argument("--training-block", type=int, default=10, help="training steps per timed block")
    g.add_argument("--training-repeats", type=int, default=5)
    g.add_argument("--training-contenders", type=contender_list(CONTENDERS),
                   default=list(CONTENDERS),
                   help=f"comma-separated, of {', '.join(CONTENDERS)}; empty: no speed rows")
    g.add_argument("--training-outcome-steps", type=int, default=300,
                   help="0: no outcome row")
    g.add_argument("--training-eval-examples", type=int, default=1000)
    g.add_argument("--training-eval-steps", type=int, default=40)


def _train_data(ctx: Context) -> Tuple[Any, Any, str]:
    """MNIST's training set (the fixture's files), else random images and labels."""
    import numpy as np

    from daa_tf import data
    shared = None if ctx.random else shared_dir()
    if shared is not None and (shared / "data" / "mnist").is_dir():
        x, y = data.load_mnist("train", shared / "data" / "mnist")
        return x, y, "MNIST train (fixture)"
    rng = np.random.default_rng(0)
    n = max(ctx.args.training_batch * 4, 200)
    return (rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n),
            "random images")


def _attack_settings(ctx: Context) -> Dict[str, Any]:
    """The inner PGD's settings: the ``--training-...`` ones, else the model's."""
    args = ctx.args
    eps = ctx.settings["eps"] if args.training_eps is None else args.training_eps
    step_size = (ctx.settings["step_size"] if args.training_step_size is None
                 else args.training_step_size)
    return dict(eps=eps, step_size=step_size, steps=args.training_steps, random_start=True)


def _fit_runner(ctx: Context, x, y, natural_metrics: bool) -> Callable[[], None]:
    from daa_tf import training
    from daa_tf.models.madry_mnist import build_madry_mnist
    args = ctx.args
    trainer = training.AdversarialTrainer(build_madry_mnist(), "pgd", seed=0,
                                          natural_metrics=natural_metrics,
                                          **_attack_settings(ctx))
    trainer.compile(recipes.tf1_adam(args.training_lr))
    batches = training.training_batches(x, y, args.training_batch, seed=0)

    def run() -> None:
        trainer.fit(batches, steps_per_epoch=args.training_block, epochs=1, verbose=0,
                    shuffle=False)
    return run


def _bare_runner(ctx: Context, x, y) -> Callable[[], None]:
    import keras
    import tensorflow as tf

    import daa_tf
    from daa_tf import training
    from daa_tf.models.madry_mnist import build_madry_mnist
    args = ctx.args
    model = build_madry_mnist()
    optimizer = recipes.tf1_adam(args.training_lr)
    optimizer.build(model.trainable_variables)
    xent = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    settings = _attack_settings(ctx)

    @tf.function
    def step(xb, yb):
        seed = training.derived_seed(0, training.TRAIN_TAG, 0, optimizer.iterations)
        x_adv = daa_tf.pgd(model, xb, yb, seed=seed, **settings)
        with tf.GradientTape() as tape:
            loss = xent(yb, model(x_adv, training=True))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    iterator = iter(training.training_batches(x, y, args.training_batch, seed=0))

    def run() -> None:
        for _ in range(args.training_block):
            xb, yb = next(iterator)
            loss = step(xb, yb)
        loss.numpy()  # wait for the last step
    return run


def _art_runner(ctx: Context, x, y) -> Optional[Callable[[], None]]:
    trainer_class = import_art("art.defences.trainer.AdversarialTrainerMadryPGD")
    if trainer_class is None:
        return None
    from daa_tf.models.madry_mnist import build_madry_mnist
    args, settings = ctx.args, _attack_settings(ctx)
    model = build_madry_mnist()
    classifier = art_classifier(model, 10, (784,), (0.0, 1.0),
                                optimizer=recipes.tf1_adam(args.training_lr))
    trainer = trainer_class(classifier, nb_epochs=1, batch_size=args.training_batch,
                            eps=settings["eps"], eps_step=settings["step_size"],
                            max_iter=settings["steps"], num_random_init=1)
    block = (x[: args.training_batch * args.training_block],
             y[: args.training_batch * args.training_block])

    def run() -> None:
        trainer.fit(*block)
    return run


def _speed_rows(ctx: Context) -> List[Row]:
    """A row per contender: the medians of its interleaved blocks (wall and CPU) per step."""
    args = ctx.args
    if not args.training_contenders:
        return []
    x, y, source = _train_data(ctx)
    makers = {"bare": lambda: _bare_runner(ctx, x, y),
              "fit": lambda: _fit_runner(ctx, x, y, True),
              "fit_no_nat": lambda: _fit_runner(ctx, x, y, False),
              "art": lambda: _art_runner(ctx, x, y)}
    runs, skipped = {}, []
    for name in args.training_contenders:
        run = makers[name]()
        if run is None:
            skipped.append(name)
        else:
            runs[name] = run
    cpu: Dict[str, List[float]] = {}
    # CPU time (all threads) is what a step costs; wall time is what a shared machine adds to
    first, wall, peaks = interleaved(runs, args.training_repeats, rotate=True, cpu_times=cpu)
    block = args.training_block
    per_step = {name: median(t) / block for name, t in wall.items()}
    best = {name: min(t) / block for name, t in wall.items()}
    cpu_step = {name: median(t) / block for name, t in cpu.items()}
    base, cpu_base = per_step.get("bare"), cpu_step.get("bare")
    common = dict(part="speed", batch=args.training_batch, block=block,
                  repeats=args.training_repeats, data=source, **_attack_settings(ctx))
    rows = [{**common, "contender": name, "s_per_step": per_step[name],
             "cpu_s_per_step": cpu_step[name], "min_s_per_step": best[name],
             "first_block_s": first[name], "peak_mb": peaks[name],
             "repeats_s_per_step": [v / block for v in wall[name]],
             "vs_bare": None if base is None else per_step[name] / base,
             "cpu_vs_bare": None if cpu_base is None else cpu_step[name] / cpu_base,
             "min_vs_bare": None if base is None else best[name] / best["bare"]}
            for name in runs]
    rows += [{**common, "contender": name, "skipped": "art is not importable (optional extra)"}
             for name in skipped]
    return rows


def _outcome_row(ctx: Context) -> Optional[Row]:
    """``--training-outcome-steps`` steps of ``fit`` on MNIST's training set, then the natural and
    PGD accuracy of the result (None without the fixture's data, with ``--random`` or 0 steps)."""
    args = ctx.args
    shared = None if ctx.random else shared_dir()
    if args.training_outcome_steps < 1 or shared is None:
        return None
    if not (shared / "data" / "mnist").is_dir():
        return None
    import keras
    import numpy as np
    import tensorflow as tf

    from daa_tf import attacks, data, training
    from daa_tf.models.madry_mnist import build_madry_mnist
    settings = _attack_settings(ctx)
    x, y = data.load_mnist("train", shared / "data" / "mnist")
    x_test, y_test = data.load_mnist("test", shared / "data" / "mnist",
                                     args.training_eval_examples)
    keras.utils.set_random_seed(0)
    model = build_madry_mnist()
    trainer = training.AdversarialTrainer(model, "pgd", seed=0, **settings)
    trainer.compile(recipes.tf1_adam(args.training_lr))
    started = time.perf_counter()
    history = trainer.fit(training.training_batches(x, y, args.training_batch, seed=0,
                                                    stop_step=args.training_outcome_steps),
                          verbose=0, shuffle=False).history
    seconds = time.perf_counter() - started
    logits = tf.function(lambda t: model(t, training=False))
    natural = float(np.mean(np.argmax(logits(x_test).numpy(), 1) == y_test))
    x_adv = attacks.pgd(model, x_test, y_test, eps=settings["eps"],
                        step_size=settings["step_size"], steps=args.training_eval_steps, seed=1)
    robust = float(np.mean(np.argmax(logits(x_adv).numpy(), 1) == y_test))
    return {"part": "outcome", "contender": "fit", "batch": args.training_batch,
            "eps": settings["eps"], "step_size": settings["step_size"],
            "steps": settings["steps"], "lr": args.training_lr,
            "train_steps": args.training_outcome_steps, "seconds": seconds,
            "train_adv_accuracy_last_epoch": float(history["adv_accuracy"][-1]),
            "test_examples": len(x_test), "natural_accuracy": natural,
            "eval_steps": args.training_eval_steps, "pgd_accuracy": robust}


@section("training", "adversarial training (MNIST): s per step of a bare tf.function step, "
         "AdversarialTrainer in fit (and ART) (medians of interleaved blocks, order rotating); "
         "a short run's outcome",
         [('part', 'part', '{}'),
          ('contender', 'contender', '{}'),
          ('batch', 'batch', '{}'),
          ('steps', 'pgd steps', '{}'),
          ('s_per_step', 's/step', '{:.4f}'),
          ('cpu_s_per_step', 'cpu s/step', '{:.4f}'),
          ('vs_bare', 'x bare', '{:.3f}'),
          ('cpu_vs_bare', 'cpu x bare', '{:.3f}'),
          ('min_vs_bare', 'fastest x bare', '{:.3f}'),
          ('first_block_s', 'first block s', '{:.2f}'),
          ('peak_mb', 'peak MB', '{:.0f}'),
          ('train_steps', 'train steps', '{}'),
          ('seconds', 'train s', '{:.1f}'),
          ('natural_accuracy', 'natural acc', '{:.1%}'),
          ('pgd_accuracy', 'pgd acc', '{:.1%}'),
          ('skipped', 'skipped', '{}')],
         examples=lambda args: 0, models=("mnist",), arguments=add_arguments, default=False)
def training_section(ctx: Context) -> List[Row]:
    """Speed rows (one per contender), then the outcome row when it runs (see the module's doc).
    The contenders train fresh nets of their own: the context's model and test batch are not
    used, only its settings and ``--random``."""
    rows = _speed_rows(ctx)
    outcome = _outcome_row(ctx)
    return rows + ([outcome] if outcome is not None else [])
