"""TF1 name-based checkpoints in the released layouts: writing them, and reading them to resume.

A checkpoint is ``checkpoint-<step>.index`` + ``checkpoint-<step>.data-00000-of-00001`` plus the
``checkpoint`` state file, with exactly the variable names of the released models
(``../shared/README.md``): MadryLab MNIST ``Variable`` .. ``Variable_7``; the DAA authors'
Fashion-MNIST ``Variable`` .. ``Variable_11`` and ``batch_normalization/*``; MadryLab CIFAR10
``input/init_conv/DW``, ``unit_1_0/shared_activation/BatchNorm/beta``, ..., ``logit/biases``; and
``global_step`` (int64). The names come from the model modules' own tables
(:data:`madry_mnist.WEIGHTS`, ...), so ``load_madry_mnist`` & co. and MadryLab's ``tf.train.Saver``
read these files. Optimizer state is written as TF1 wrote it: Adam's ``<name>/Adam``,
``<name>/Adam_1``, ``beta1_power``, ``beta2_power``; :class:`daa_tf.training.TF1Momentum`'s
``<name>/Momentum``. Loaders ignore it; :func:`restore_checkpoint` uses it to resume training.

Writes are atomic: the files are written in a hidden temporary folder beside the target, moved in
(data first, ``.index`` last: a checkpoint exists for readers only once complete), then the state
file is replaced in one rename (:func:`daa_tf.files.atomic_write`, the project's one atomic
writer).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from daa_tf import files
from daa_tf.models import daa_fashion_mnist, madry_cifar10, madry_mnist
from daa_tf.models.checkpoint import PathLike, is_intact, open_checkpoint

Named = List[Tuple[str, Any]]  # (TF1 name, Keras variable), in network order
STATE_FILE = "checkpoint"
_STEP = re.compile(r"^checkpoint-(\d+)\.index$")


def _table_variables(model: keras.Model, table: tuple) -> Named:
    out: Named = []
    for layer, w_name, b_name, _ in table:
        found = model.get_layer(layer)
        out += [(w_name, found.kernel), (b_name, found.bias)]
    return out


def madry_mnist_variables(model: keras.Model) -> Named:
    """MadryLab MNIST names of ``model``'s variables (:data:`madry_mnist.WEIGHTS`)."""
    return _table_variables(model, madry_mnist.WEIGHTS)


def daa_fashion_mnist_variables(model: keras.Model) -> Named:
    """The DAA authors' Fashion-MNIST names (:data:`daa_fashion_mnist.WEIGHTS` + batch norm)."""
    bn = model.get_layer("bn")
    return _table_variables(model, daa_fashion_mnist.WEIGHTS) + [
        (daa_fashion_mnist.BN_PREFIX + name, getattr(bn, name))
        for name in ("gamma", "beta", "moving_mean", "moving_variance")]


def madry_cifar10_variables(model: keras.Model) -> Named:
    """MadryLab CIFAR10 names: layer ``a.b.c`` holds scope ``a/b/c`` (``DW``, ``biases``, batch
    norm's ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``)."""
    out: Named = []
    for layer in model.layers:
        scope = layer.name.replace(".", "/")
        if isinstance(layer, keras.layers.Conv2D):
            out.append((f"{scope}/DW", layer.kernel))
        elif isinstance(layer, keras.layers.BatchNormalization):
            out += [(f"{scope}/{v}", getattr(layer, v)) for v in madry_cifar10.BN_VARIABLES]
        elif isinstance(layer, keras.layers.Dense):
            out += [(f"{scope}/DW", layer.kernel), (f"{scope}/biases", layer.bias)]
    return out


LAYOUTS: Dict[str, Callable[[keras.Model], Named]] = {
    "madry_mnist": madry_mnist_variables,
    "madry_cifar10": madry_cifar10_variables,
    "daa_fashion_mnist": daa_fashion_mnist_variables,
}


def variable_names(model: keras.Model, layout: str) -> Named:
    """``(TF1 name, variable)`` for every variable of ``model`` in ``layout`` (a key of
    :data:`LAYOUTS`, the name of the matching loader); ValueError when ``model`` does not fit it
    (a missing layer, or a variable the layout does not name)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown checkpoint layout {layout!r}; known: {sorted(LAYOUTS)}")
    try:
        named = LAYOUTS[layout](model)
    except (ValueError, AttributeError) as err:
        raise ValueError(f"model {model.name!r} does not have the {layout} layout: {err}") from None
    covered = {id(v) for _, v in named}
    missing = [v.path for v in model.weights if id(v) not in covered]
    if missing:
        raise ValueError(f"model {model.name!r}: the {layout} layout names no checkpoint variable "
                         f"for {missing[:5]}")
    return named


# ------------------------------------------------------------------------------ optimizer state


def _slot_tables(optimizer: Any) -> Tuple[List[Tuple[str, Callable[[Any], Any]]], Callable]:
    """Per-variable slots ``(suffix, variable -> slot)`` of ``optimizer`` and its scalars
    ``step -> {name: value}``, TF1-style; ValueError for optimizers TF1 had no layout for."""
    from daa_tf.training import TF1Momentum

    if isinstance(optimizer, TF1Momentum):
        return [("Momentum", optimizer.slot)], lambda step: {}
    if isinstance(optimizer, keras.optimizers.Adam) and not optimizer.amsgrad:
        index = optimizer._get_variable_index  # Keras keeps Adam's slots by variable index
        slots = [("Adam", lambda v: optimizer._momentums[index(v)]),
                 ("Adam_1", lambda v: optimizer._velocities[index(v)])]

        def powers(step: int) -> Dict[str, np.ndarray]:  # TF1 keeps beta^(t+1) after t steps
            return {"beta1_power": np.float32(float(optimizer.beta_1) ** (step + 1)),
                    "beta2_power": np.float32(float(optimizer.beta_2) ** (step + 1))}
        return slots, powers
    raise ValueError(f"no TF1 checkpoint layout for optimizer {type(optimizer).__name__}: use "
                     "keras.optimizers.Adam or daa_tf.training.TF1Momentum, or pass "
                     "optimizer=None (weights only)")


def _optimizer_variables(optimizer: Any, named: Named) -> Tuple[Named, Callable]:
    slots, scalars = _slot_tables(optimizer)
    out: Named = [(f"{name}/{suffix}", get(v)) for name, v in named if v.trainable
                  for suffix, get in slots]
    return out, scalars


# ---------------------------------------------------------------------------------- writing


def checkpoint_tensors(model: keras.Model, layout: str, step: int,
                       optimizer: Any = None) -> Dict[str, np.ndarray]:
    """The name -> value map written for ``model`` at ``step`` (``global_step``, int64), with
    ``optimizer``'s state when given (it must be built, i.e. have taken a step or been built)."""
    named = variable_names(model, layout)
    tensors = {name: np.asarray(v.numpy()) for name, v in named}
    if optimizer is not None:
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        slots, scalars = _optimizer_variables(optimizer, named)
        tensors.update({name: np.asarray(v.numpy()) for name, v in slots})
        tensors.update(scalars(int(step)))
    tensors["global_step"] = np.int64(step)
    return tensors


def checkpoint_steps(folder: PathLike) -> List[int]:
    """Steps of the complete ``checkpoint-<step>`` files in ``folder`` (ascending)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    steps = [int(m.group(1)) for m in map(_STEP.match, os.listdir(folder)) if m]
    return sorted(s for s in steps if list(folder.glob(f"checkpoint-{s}.data-*")))


def newest_intact_step(folder: PathLike, before: Optional[int] = None) -> Optional[int]:
    """The newest step (below ``before`` if given) whose checkpoint in ``folder`` reads entirely,
    or None: where training can resume when the newest checkpoint is damaged."""
    for step in reversed(checkpoint_steps(folder)):
        if (before is None or step < before) and is_intact(Path(folder) / f"checkpoint-{step}"):
            return step
    return None


def _remove(folder: Path, step: int) -> None:
    index = folder / f"checkpoint-{step}.index"
    if index.exists():
        index.unlink()  # first: the checkpoint stops existing for readers
    for f in folder.glob(f"checkpoint-{step}.data-*"):
        f.unlink()


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: :func:`daa_tf.files.atomic_write` (a
    temporary file beside it, flushed to disk, one rename; its folder created if needed)."""
    files.atomic_write(path, lambda f: f.write(text), binary=False)


def _write_state(folder: Path, latest: int, kept: List[int]) -> None:
    lines = [f'model_checkpoint_path: "checkpoint-{latest}"']
    lines += [f'all_model_checkpoint_paths: "checkpoint-{s}"' for s in kept]
    write_text_atomic(folder / STATE_FILE, "\n".join(lines) + "\n")


def save_checkpoint(model: keras.Model, layout: str, model_dir: PathLike, step: int,
                    optimizer: Any = None, max_to_keep: Optional[int] = 3) -> str:
    """Write ``model`` (and ``optimizer``'s state) as ``model_dir/checkpoint-<step>`` in the
    ``layout`` of :data:`LAYOUTS`, atomically; keep the newest ``max_to_keep`` checkpoints by
    step (None: all; the one just written is always kept). Returns the checkpoint prefix."""
    if int(step) < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    step = int(step)
    tensors = checkpoint_tensors(model, layout, step, optimizer)
    folder = Path(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"checkpoint-{step}"
    staging = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=folder))
    try:
        names = sorted(tensors)
        tf.raw_ops.SaveV2(prefix=str(staging / stem), tensor_names=names,
                          shape_and_slices=[""] * len(names),
                          tensors=[tf.constant(tensors[n]) for n in names])
        _remove(folder, step)  # an older file of the same step must never pair with the new ones
        try:
            for data in sorted(staging.glob(f"{stem}.data-*")):
                os.replace(data, folder / data.name)
            os.replace(staging / f"{stem}.index", folder / f"{stem}.index")
        except BaseException:
            _remove(folder, step)  # no orphan data file of an incomplete checkpoint
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    others = [s for s in checkpoint_steps(folder) if s != step]
    if max_to_keep is not None:
        keep = max(int(max_to_keep) - 1, 0)
        dropped, others = (others[:-keep], others[-keep:]) if keep else (others, [])
    else:
        dropped = []
    _write_state(folder, step, sorted(others + [step]))
    for s in dropped:
        _remove(folder, s)
    return str(folder / stem)


def save_madry_mnist(model: keras.Model, model_dir: PathLike, step: int,
                     optimizer: Any = None, max_to_keep: Optional[int] = 3) -> str:
    """:func:`save_checkpoint` in MadryLab's MNIST layout (read by ``load_madry_mnist``)."""
    return save_checkpoint(model, "madry_mnist", model_dir, step, optimizer, max_to_keep)


def save_madry_cifar10(model: keras.Model, model_dir: PathLike, step: int,
                       optimizer: Any = None, max_to_keep: Optional[int] = 3) -> str:
    """:func:`save_checkpoint` in MadryLab's CIFAR10 layout (read by ``load_madry_cifar10``)."""
    return save_checkpoint(model, "madry_cifar10", model_dir, step, optimizer, max_to_keep)


def save_daa_fashion_mnist(model: keras.Model, model_dir: PathLike, step: int,
                           optimizer: Any = None, max_to_keep: Optional[int] = 3) -> str:
    """:func:`save_checkpoint` in the DAA authors' layout (read by ``load_daa_fashion_mnist``)."""
    return save_checkpoint(model, "daa_fashion_mnist", model_dir, step, optimizer, max_to_keep)


# ---------------------------------------------------------------------------------- reading


def restore_checkpoint(model: keras.Model, layout: str, path: PathLike,
                       optimizer: Any = None) -> int:
    """Assign the checkpoint at ``path`` (folder: its latest; or a prefix) to ``model``'s
    variables and, when ``optimizer`` is given, its slots and ``iterations`` (= ``global_step``);
    returns ``global_step`` (0 when absent). ValueError when names or shapes do not match, or
    when ``optimizer`` is given and the checkpoint holds no state for it."""
    ckpt = open_checkpoint(path)
    named = variable_names(model, layout)
    values = [(v, ckpt.get(name, tuple(v.shape))) for name, v in named]
    slot_values = []
    if optimizer is not None:
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        slots, _ = _optimizer_variables(optimizer, named)
        absent = [name for name, _ in slots if name not in ckpt]
        if absent:
            raise ValueError(f"checkpoint {ckpt.prefix} holds no {type(optimizer).__name__} state "
                             f"(e.g. {absent[0]!r}); restore with optimizer=None to start the "
                             "optimizer afresh from its weights")
        slot_values = [(v, ckpt.get(name, tuple(v.shape))) for name, v in slots]
    step = int(tf.train.load_checkpoint(ckpt.prefix).get_tensor("global_step")) \
        if "global_step" in ckpt else 0
    for v, value in values + slot_values:
        v.assign(value)
    if optimizer is not None:
        optimizer.iterations.assign(step)
    return step


class CheckpointEvery(keras.callbacks.Callback):
    """Saves ``classifier`` (and the fitted model's optimizer state) with :func:`save_checkpoint`
    whenever the optimizer's ``iterations`` reaches a multiple of ``every`` steps, and at the end
    of training. ``on_save(prefix, step)`` is called after each save (e.g. to log it)."""

    def __init__(self, classifier: keras.Model, layout: str, model_dir: PathLike, every: int,
                 max_to_keep: Optional[int] = 3, include_optimizer: bool = True,
                 on_save: Optional[Callable[[str, int], None]] = None) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        variable_names(classifier, layout)  # fail now, not after the first `every` steps
        self.classifier, self.layout, self.model_dir = classifier, layout, model_dir
        self.every, self.max_to_keep = int(every), max_to_keep
        self.include_optimizer, self.on_save = include_optimizer, on_save
        self.last_saved: Optional[int] = None

    def save(self) -> str:
        """Write the checkpoint of the current step now; returns its prefix."""
        optimizer = self.model.optimizer
        step = int(optimizer.iterations.numpy())
        prefix = save_checkpoint(self.classifier, self.layout, self.model_dir, step,
                                 optimizer if self.include_optimizer else None, self.max_to_keep)
        self.last_saved = step
        if self.on_save is not None:
            self.on_save(prefix, step)
        return prefix

    def on_train_batch_end(self, batch: int, logs: Optional[dict] = None) -> None:
        if int(self.model.optimizer.iterations.numpy()) % self.every == 0:
            self.save()

    def on_train_end(self, logs: Optional[dict] = None) -> None:
        if self.last_saved != int(self.model.optimizer.iterations.numpy()):
            self.save()
