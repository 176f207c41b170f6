"""Read named tensors from a TF1 name-based checkpoint (the format of the MadryLab releases).

Only the tensors a loader asks for are read: extra variables (Adam slots such as ``Variable/Adam``,
``beta1_power``, ``global_step``) are ignored.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import tensorflow as tf

PathLike = Union[str, os.PathLike]
Shape = Sequence[Optional[int]]

_INDEX_STEP = re.compile(r"-(\d+)\.index$")
# What TensorFlow's checkpoint reader raises for a missing, truncated or corrupt file (a .data file
# cut short raises IndexError "Read less bytes than requested").
_READ_ERRORS = (tf.errors.OpError, ValueError, OSError, IndexError, RuntimeError)


class UnreadableCheckpoint(ValueError):
    """A file of the checkpoint ``prefix`` is missing, truncated or corrupt: ``problem`` says which,
    ``fix`` what to do; the message is ``"<problem>: <fix>"``."""

    def __init__(self, prefix: str, problem: str, fix: str) -> None:
        super().__init__(f"{problem}: {fix}")
        self.prefix, self.problem, self.fix = prefix, problem, fix


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def is_intact(prefix: PathLike) -> bool:
    """True when every variable of the checkpoint ``prefix`` can be read."""
    try:
        CheckpointReader(prefix).check_readable()
    except (ValueError, FileNotFoundError):
        return False
    return True


def fetch_hint(challenge: Optional[str], model: Optional[str] = None) -> str:
    """The sentence telling a user how to get a checkpoint for ``challenge`` (e.g. "mnist")."""
    if challenge in ("mnist", "cifar10"):
        return (f"download one with `python -m challenges.fetch_model --challenge={challenge} "
                f"--model={model or 'adv_trained'}` (or unzip MadryLab's release there by hand)")
    return "place the checkpoint files (checkpoint, *.index, *.data-*) there"


def _latest_index_prefix(folder: Path) -> Optional[str]:
    """Prefix of the ``*.index`` file with the highest step in ``folder``."""
    indexes = sorted(folder.glob("*.index"))
    if not indexes:
        return None

    def step(p: Path) -> int:
        m = _INDEX_STEP.search(p.name)
        return int(m.group(1)) if m else -1

    best = max(indexes, key=step)
    return str(best)[: -len(".index")]


def resolve_checkpoint(path: PathLike, hint: Optional[str] = None) -> str:
    """Checkpoint prefix for ``path``: a folder (its latest checkpoint), a prefix or its files.

    Raises FileNotFoundError (with ``hint`` on how to fetch one) when nothing is there.
    """
    hint = hint or fetch_hint(None)
    p = Path(path)
    if p.is_dir():
        prefix = tf.train.latest_checkpoint(str(p))
        if prefix is None or not Path(prefix + ".index").exists():
            prefix = _latest_index_prefix(p)
        if prefix is None:
            raise FileNotFoundError(f"no TF checkpoint in folder {p} (no readable 'checkpoint' "
                                    f"file pointing to one, no *.index file): {hint}")
        return prefix
    name = p.name
    if name.endswith(".index"):
        return str(p)[: -len(".index")]
    m = re.search(r"\.data-\d+-of-\d+$", name)
    if m:
        return str(p)[: len(str(p)) - len(m.group(0))]
    if Path(str(p) + ".index").exists():
        return str(p)
    if p.exists():
        return str(p)  # a file of some other kind: load_checkpoint will say it is not a checkpoint
    raise FileNotFoundError(f"no TF checkpoint at {p} (neither a folder nor a checkpoint prefix): "
                            f"{hint}")


class CheckpointReader:
    """Named float32 tensors of one TF1 checkpoint, with shape checks.

    ``path`` is a folder (its latest checkpoint is used), a prefix such as ``.../checkpoint-99900``
    or the prefix's ``.index`` file. ``hint`` says how to obtain a checkpoint (used in errors).
    """

    def __init__(self, path: PathLike, hint: Optional[str] = None) -> None:
        self.prefix = resolve_checkpoint(path, hint)
        self.hint = hint or fetch_hint(None)
        try:
            self._reader = tf.train.load_checkpoint(self.prefix)
            self.shapes = {k: tuple(v) for k, v in self._reader.get_variable_to_shape_map().items()}
        except _READ_ERRORS as err:
            raise UnreadableCheckpoint(
                self.prefix,
                f"{self.prefix} is not a readable TF checkpoint (its .index file is missing, "
                f"truncated or corrupt: {_reason(err)})",
                f"copy or download the checkpoint again; {self.hint}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.shapes

    def shape(self, name: str) -> tuple:
        """Stored shape of ``name``; ValueError when absent."""
        if name not in self.shapes:
            raise ValueError(f"checkpoint {self.prefix} has no variable {name!r}; it holds "
                             f"{len(self.shapes)} variables, e.g. {sorted(self.shapes)[:6]}")
        return self.shapes[name]

    def get(self, name: str, shape: Optional[Shape] = None) -> np.ndarray:
        """Tensor ``name`` as float32; ``shape`` (None matches any size) is checked if given."""
        found = self.shape(name)
        if shape is not None:
            ok = len(found) == len(shape) and all(e is None or e == f for e, f in zip(shape, found))
            if not ok:
                expected = tuple("?" if e is None else e for e in shape)
                raise ValueError(f"checkpoint {self.prefix}: variable {name!r} has shape "
                                 f"{list(found)}, expected {list(expected)}")
        try:
            value = self._reader.get_tensor(name)
        except _READ_ERRORS as err:
            raise UnreadableCheckpoint(
                self.prefix,
                f"checkpoint {self.prefix}: cannot read variable {name!r}, its .data file is "
                f"truncated or corrupt ({_reason(err)})",
                f"copy or download the checkpoint again; {self.hint}") from None
        return np.asarray(value, dtype=np.float32)

    def check_readable(self) -> None:
        """Reads every variable once; ValueError (as :meth:`get`) for one that cannot be read."""
        for name in self.shapes:
            try:
                self._reader.get_tensor(name)
            except _READ_ERRORS as err:
                raise UnreadableCheckpoint(
                    self.prefix,
                    f"checkpoint {self.prefix}: cannot read variable {name!r} ({_reason(err)})",
                    f"copy or download the checkpoint again; {self.hint}") from None


def open_checkpoint(path: PathLike, hint: Optional[str] = None) -> CheckpointReader:
    """Open the TF1 checkpoint at ``path`` (folder, prefix or .index file); see CheckpointReader."""
    return CheckpointReader(path, hint)
