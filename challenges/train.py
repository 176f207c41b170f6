r"""Adversarial training of a challenge's model, as MadryLab's ``train.py``, in ``model.fit``.

    python -m challenges.train --challenge=mnist --model_dir=models/mine [--attack=pgd] \
        [--data_dir=MNIST_data] [--train_steps=...] [--batch_size=...] [--resume]

Defaults are the training ``config.json`` of each release (:mod:`daa_tf.recipes`): MNIST 100000
steps of batch 50, Adam 1e-4, PGD 40 x 0.01 at eps 0.3 with random start, MadryLab's initialisation;
CIFAR10 80000 steps of batch 128, TF1 momentum 0.9, learning rate 0.1 / 0.01 / 0.001 from step
40000 / 60000, weight decay 0.0002 on the ``DW`` kernels, batch-norm decay 0.9, PGD 10 x 2 at eps 8
with random start, ``cifar10_input.py``'s augmentation; Fashion-MNIST the DAA authors' net and
config (eps 0.2, 30 x 0.01, batch norm on its fixed statistics). Any catalogue attack can be the
inner one (``--attack=daa_blob``: the batch is the particle set, groups of ``--particles``
consecutive examples per device).

Checkpoints go to ``--model_dir`` every ``--checkpoint_steps`` steps and at the end, in the
released layout (``load_madry_mnist``, the runners and MadryLab's code read them), the newest 3
kept, with the optimizer state. Ctrl-C / SIGTERM saves a checkpoint and exits with status 130;
``--resume`` continues from the newest one exactly as if never interrupted. Progress: every
``--output_steps`` steps, the adversarial and natural accuracy and the adversarial loss of those
steps' training batches.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import time
from typing import Any, Dict, Optional, Tuple

from absl import flags, logging

from daa_tf import catalogue, recipes

from challenges import cli, options, registry, resolve

MODULE = "challenges.train"
CONFIG_FILE = "train_config.json"


def _recipe_help(field: str) -> str:
    return ", ".join(f"{name} {getattr(r, field):g}" for name, r in recipes.RECIPES.items())


def define_flags() -> None:
    """The trainer's flags: the shared groups (:mod:`challenges.options`) with their help and
    defaults tailored to training (defaults from :data:`daa_tf.recipes.RECIPES`), and the
    trainer's own."""
    options.define_challenge_flag(None)
    options.define_attack_choice_flags()
    options.define_step_flags(None)
    options.define_model_flags(None, choice=False)
    options.define_data_flags()
    options.define_run_flags("Continue from the newest checkpoint in --model_dir.")
    options.tailor(help_texts={
        "epsilon": f"L-inf radius of the inner attack (default: {_recipe_help('epsilon')}).",
        "step_size": f"Its step size (default: {_recipe_help('step_size')}).",
        "steps": f"Its steps (default: {_recipe_help('steps')}).",
        "random_start": "Start the attack at a random point of the ball (default: true).",
        "particles": "DAA: particles per group, consecutive examples of each device's batch "
                     "(default: the batch: one group).",
        "model_dir": "Output folder of the checkpoints (required).",
        "data_dir": "Training data: IDX files (MNIST, Fashion-MNIST), CIFAR-10 python batches, "
                    "or an .npz (default: the original files, through tensorflow-datasets).",
        "num_examples": "Use only the first N training images.",
        "batch_size": f"Training batch (all devices; default: {_recipe_help('batch_size')}).",
        "seed": "Seed of the initialisation, data order and attack starts.",
        "jit_compile": "XLA for the attack: auto (GPU/TPU only), true, false.",
        "distribute": "tf.distribute strategy (see the runners); --batch_size is global.",
    }, defaults={"attack": "pgd"})
    flags.mark_flag_as_required("model_dir")
    flags.DEFINE_float("fraction", 1.0, "Share of each batch replaced by adversarial examples.")
    flags.DEFINE_enum("attack_batch_norm", "inference", ["inference", "training"],
                      "Batch norm inside the attack (CIFAR10): moving statistics, or batch "
                      "statistics updating them at every attack step as MadryLab's train.py.")
    flags.DEFINE_integer("train_steps", None, "Training steps in all (default: "
                         f"{_recipe_help('train_steps')}).", lower_bound=1)
    flags.DEFINE_integer("output_steps", 100, "Log progress every N steps.", lower_bound=1)
    flags.DEFINE_integer("checkpoint_steps", None, "Checkpoint every N steps (default: "
                         f"{_recipe_help('checkpoint_steps')}).", lower_bound=1)
    flags.DEFINE_string("resnet_filters", "16,160,320,640", "CIFAR10 widths (MadryLab's wide "
                        "net; '16,16,32,64' is their narrow one).")
    flags.register_validator("fraction", lambda v: 0.0 < v <= 1.0,
                             message="--fraction must be in (0, 1]")
    options.define_tensorboard_flag()
    options.list_flags_in_help()


def settings_from_flags(f: flags.FlagValues) -> Dict[str, Any]:
    """The run's settings: the recipe's, overridden by the flags given (JSON-serialisable)."""
    challenge, recipe = registry.get_challenge(f.challenge), recipes.RECIPES[f.challenge]

    def pick(name: str) -> Any:
        return getattr(recipe, name) if f[name].value is None else f[name].value

    spec = catalogue.get_spec(f.attack)
    steps = pick("steps")
    # --step_size, else catalogue.default_step_size's rule (None: the attack's own, from eps)
    step_size = (f.step_size if f.step_size is not None
                 else catalogue.default_step_size(f.attack, configured=recipe.step_size))
    if spec.one_step:  # FGSM: exactly one step
        if f.steps not in (None, 1):
            raise ValueError(f"--attack={f.attack} takes exactly one step: drop --steps")
        steps = 1
    attack = dict(eps=pick("epsilon"), step_size=step_size, steps=steps,
                  loss=f.loss or spec.default_loss,
                  random_start=f.random_start is not False, clip_min=challenge.format.clip_min,
                  clip_max=challenge.format.clip_max,
                  jit_compile=catalogue.JIT_CHOICES[f.jit_compile])
    if spec.interacting:
        attack.update(particles=f.particles or max(pick("batch_size"), 2), c=f.c)
    catalogue.attack_settings(f.attack, **attack)  # ValueError on a bad combination
    return {"challenge": f.challenge, "attack": f.attack, "attack_settings": attack,
            "fraction": f.fraction, "attack_batch_norm": f.attack_batch_norm,
            "train_steps": pick("train_steps"), "batch_size": pick("batch_size"),
            "checkpoint_steps": pick("checkpoint_steps"), "seed": f.seed,
            "resnet_filters": f.resnet_filters if f.challenge == "cifar10" else None}


# ----------------------------------------------------------------------------------- the run


def _write_config(model_dir: str, settings: Dict[str, Any]) -> None:
    from daa_tf.models.checkpoint_writer import write_text_atomic
    write_text_atomic(os.path.join(model_dir, CONFIG_FILE), json.dumps(settings, indent=2) + "\n")


def checkpoint_steps(model_dir: str) -> list:
    """Steps of the ``checkpoint-<step>.index`` files in ``model_dir`` (ascending), without
    importing TensorFlow (so that a refused rerun answers at once)."""
    if not os.path.isdir(model_dir):
        return []
    found = (re.match(r"^checkpoint-(\d+)\.index$", name) for name in os.listdir(model_dir))
    return sorted(int(m.group(1)) for m in found if m)


def _check_resume(f: flags.FlagValues, settings: Dict[str, Any], steps: list) -> None:
    if steps and not f.resume:
        raise resolve.SetupError(f"--model_dir={f.model_dir} holds checkpoints (newest: step "
                                 f"{steps[-1]}): pass --resume to continue from it, or choose "
                                 "another folder")
    saved_path = os.path.join(f.model_dir, CONFIG_FILE)
    if steps and os.path.exists(saved_path):
        with open(saved_path) as saved_file:
            saved = json.load(saved_file)
        changed = sorted(k for k in settings if k != "train_steps" and saved.get(k) != settings[k])
        if changed:
            logging.warning("resuming with other settings than the run so far (%s): the result "
                            "will differ from an uninterrupted run", ", ".join(changed))


def _load_training_data(settings: Dict[str, Any], data_dir: Optional[str],
                        num_examples: Optional[int]) -> Tuple[Any, Any]:
    from daa_tf.data import DataNotFoundError

    challenge = registry.get_challenge(settings["challenge"])
    try:
        return challenge.load_data("train", data_dir, num_examples)
    except DataNotFoundError as err:
        raise resolve.SetupError(f"no {challenge.title} training data: {err}") from None
    except ValueError as err:
        raise resolve.SetupError(f"cannot use the {challenge.title} training data: {err}"
                                 ) from None


def _progress(every: int, total: int, batch_size: int, board: Any = None) -> Any:
    """The progress callback; with ``board`` (:class:`daa_tf.summaries.RunSummaries`) it also
    writes its figures to TensorBoard."""
    import keras

    class Progress(keras.callbacks.Callback):
        """Logs the accuracies of the last ``every`` steps' batches, then resets the metrics."""

        def on_train_begin(self, logs: Optional[dict] = None) -> None:
            self.started = time.perf_counter()
            self.since = int(self.model.optimizer.iterations.numpy())

        def on_train_batch_end(self, batch: int, logs: Optional[dict] = None) -> None:
            step = int(self.model.optimizer.iterations.numpy())
            if step % every and step != total:
                return
            seconds = time.perf_counter() - self.started
            logs = logs or {}
            speed = (step - self.since) * batch_size / max(seconds, 1e-9)
            logging.info("step %d/%d: adv accuracy %.2f%%, nat accuracy %.2f%%, adv loss %.4f "
                         "(%.1f examples/s)", step, total, 100 * float(logs["adv_accuracy"]),
                         100 * float(logs["nat_accuracy"]), float(logs["loss"]), speed)
            if board is not None:
                board.scalars(step, {"adv_accuracy": logs["adv_accuracy"],
                                     "nat_accuracy": logs["nat_accuracy"],
                                     "loss": logs["loss"], "examples_per_second": speed})
            self.started, self.since = time.perf_counter(), step
            self.model.reset_metrics()

    return Progress()


def _resnet_filters(settings: Dict[str, Any]) -> Tuple[int, ...]:
    """``--resnet_filters`` as widths (CIFAR10; the recipe's default for the other nets)."""
    if settings["resnet_filters"] is None:
        return recipes.CIFAR10_FILTERS
    widths = tuple(int(w) for w in settings["resnet_filters"].split(","))
    if len(widths) != 4:
        raise ValueError(f"--resnet_filters needs 4 widths, got {settings['resnet_filters']}")
    return widths


def _trainer(settings: Dict[str, Any], strategy: Any) -> Tuple[Any, Any]:
    """``(classifier, compiled AdversarialTrainer)`` of the recipe, built under ``strategy``'s
    scope."""
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        return recipes.make_trainer(
            settings["challenge"], settings["attack"], settings["attack_settings"],
            seed=settings["seed"], fraction=settings["fraction"],
            attack_training=settings["attack_batch_norm"] == "training",
            resnet_filters=_resnet_filters(settings))


def _restore(classifier: Any, layout: str, model_dir: str, optimizer: Any) -> int:
    """The newest checkpoint in ``model_dir`` restored; its step. SetupError naming a damaged one
    and the newest intact checkpoint to resume from instead (train keeps several)."""
    from daa_tf.models import checkpoint_writer as writer
    from daa_tf.models.checkpoint import UnreadableCheckpoint

    try:
        return writer.restore_checkpoint(classifier, layout, model_dir, optimizer)
    except UnreadableCheckpoint as err:
        match = re.search(r"checkpoint-(\d+)$", err.prefix)
        damaged = int(match.group(1)) if match else None
        intact = writer.newest_intact_step(model_dir, before=damaged)
        if damaged is None or intact is None:
            raise resolve.SetupError(f"cannot resume: {err.problem}, and {model_dir} keeps no "
                                     "older intact checkpoint: train afresh in another "
                                     "--model_dir") from None
        raise resolve.SetupError(
            f"cannot resume: {err.problem}: delete checkpoint-{damaged}.index and "
            f"checkpoint-{damaged}.data-* in {model_dir} and rerun with --resume to continue from "
            f"checkpoint-{intact}, the newest intact one") from None


def _fit(f: flags.FlagValues, settings: Dict[str, Any]) -> int:
    layout, total = recipes.RECIPES[f.challenge].layout, settings["train_steps"]
    found = checkpoint_steps(f.model_dir)
    _check_resume(f, settings, found)
    from daa_tf.distribute import is_chief
    from daa_tf.models import checkpoint_writer as writer
    strategy = resolve.distribution_strategy()
    x, y = _load_training_data(settings, f.data_dir, f.num_examples)
    classifier, trainer = _trainer(settings, strategy)
    start = _restore(classifier, layout, f.model_dir, trainer.optimizer) if found else 0
    chief = is_chief(strategy)  # multi-worker runs: every worker trains, the chief writes
    if chief:
        os.makedirs(f.model_dir, exist_ok=True)
        _write_config(f.model_dir, settings)
    logging.info("%s: %s, fraction %g, batch %d, steps %d..%d, seed %d; %d training images; "
                 "checkpoints every %d steps in %s", registry.get_challenge(f.challenge).title,
                 catalogue.describe(trainer.settings), settings["fraction"],
                 settings["batch_size"], start, total, settings["seed"], len(x),
                 settings["checkpoint_steps"], f.model_dir)
    if start >= total:
        logging.info("nothing to do: the newest checkpoint is at step %d", start)
        return 0
    batches = recipes.training_batches(f.challenge, x, y, settings["batch_size"],
                                       seed=settings["seed"], start_step=start, stop_step=total)
    saver = writer.CheckpointEvery(classifier, layout, f.model_dir, settings["checkpoint_steps"],
                                   on_save=lambda prefix, _: logging.info("saved %s", prefix))
    saver.set_model(trainer)
    board = None
    if chief and f.tensorboard_dir:
        from daa_tf.summaries import RunSummaries
        board = RunSummaries(f.tensorboard_dir, prefix="train")
    callbacks = [_progress(f.output_steps, total, settings["batch_size"], board)]
    try:
        trainer.fit(batches, epochs=1, verbose=0, shuffle=False,
                    callbacks=callbacks + ([saver] if chief else []))
    except KeyboardInterrupt:
        step = int(trainer.optimizer.iterations.numpy())
        if chief and saver.last_saved != step:
            saver.save()
        logging.error("interrupted at step %d (checkpoint saved). Resume with:\n  %s", step,
                      cli.command(MODULE, resume=True))
        return cli.INTERRUPTED
    if board is not None:
        _summary_images(board, trainer, x, y, total)
    logging.info("done: %d steps; checkpoint %s", total,
                 os.path.join(f.model_dir, f"checkpoint-{total}"))
    return 0


def _summary_images(board: Any, trainer: Any, x: Any, y: Any, step: int) -> None:
    """The first training images, the trained model's adversarial examples of them (the inner
    attack, its evaluation seed) and the perturbation, as TensorBoard images."""
    import numpy as np
    import tensorflow as tf

    from daa_tf import training

    shown = np.asarray(x[:board.max_images], np.float32)
    adv = trainer.adversarial_examples(tf.constant(shown),
                                       tf.constant(np.asarray(y[:len(shown)], np.int32)),
                                       training.derived_seed(trainer.seed, training.EVAL_TAG))
    s = trainer.settings
    board.images(step, shown, np.asarray(adv), s.clip_min, s.clip_max, s.eps)
    board.close()


def train(f: flags.FlagValues) -> int:
    """The trainer: setup, resume, ``fit`` with progress and checkpoints. Returns the exit
    status (0, 1 on a setup error, 130 when interrupted)."""
    try:
        settings = settings_from_flags(f)
        if f.data_dir is not None and not os.path.exists(f.data_dir):
            raise resolve.SetupError(f"--data_dir={f.data_dir} does not exist")
        return _fit(f, settings)
    except KeyboardInterrupt:
        logging.error("interrupted before training started: nothing was saved")
        return cli.INTERRUPTED
    except (resolve.SetupError, ValueError) as err:
        logging.error("%s", err)
        return 1


if __name__ == "__main__":
    cli.main(define_flags, train)
