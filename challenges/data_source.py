"""``--data`` of ``python -m challenges.attack``: which images and labels a spec names, loaded as
``x`` float32 ``[N, ...]`` and ``y`` int64 ``[N]``.

``--data=SPEC``:

- ``tfds:NAME[:SPLIT]``: the tensorflow-datasets set ``NAME`` (its ``image`` and ``label``
  features; ``SPLIT`` default ``test``, any tfds split such as ``test[:500]``), in tfds's order.
- a file ``*.npz`` holding ``x`` (``[N, ...]`` images) and ``y`` (``[N]`` or ``[N, 1]`` class
  indices, the library's one rule: :func:`daa_tf.validation.labels`); never unpickled.
- a folder that one of the challenges' loaders (:mod:`daa_tf.data`) reads, tried in the
  registry's order: MNIST-format IDX files (``t10k-images-idx3-ubyte.gz`` ...), CIFAR-10 python
  batches, or a folder holding one ``.npz``; the test split, scaled as that loader scales (MNIST
  [0, 1], CIFAR-10 [0, 255]), and that challenge's pixel box is the inferred one.

Scaling of ``tfds:`` and ``.npz`` images: integer pixels become float32, divided by 255 when the
box's ``clip_max`` is at most 1 (kept 0..255 otherwise); floating-point pixels are kept as they are.
Nothing here imports TensorFlow except the tfds path.
"""
from __future__ import annotations

import dataclasses
import os
from typing import List, Optional, Tuple

import numpy as np

from challenges import registry
from challenges.resolve import SetupError

TFDS_PREFIX = "tfds:"


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data``: ``kind`` is ``tfds``, ``npz`` or ``folder``; ``name``/``split`` the tfds
    set's; ``path`` the file or folder."""

    spec: str
    kind: str
    path: Optional[str] = None
    name: Optional[str] = None
    split: Optional[str] = None


@dataclasses.dataclass
class Data:
    """Loaded data: ``x`` float32 ``[N, ...]``, ``y`` int64 ``[N]``, a ``description``, and for a
    folder the ``challenge`` whose loader read it (its box is the data's scale)."""

    x: np.ndarray
    y: np.ndarray
    description: str
    challenge: Optional[registry.Challenge] = None


def parse(spec: str) -> DataSpec:
    """The data ``spec`` names (see the module docstring); SetupError otherwise."""
    if spec.startswith(TFDS_PREFIX):
        name, _, split = spec[len(TFDS_PREFIX):].partition(":")
        if not name:
            raise SetupError(f"--data={spec}: name the data set, tfds:NAME[:SPLIT]")
        return DataSpec(spec, "tfds", name=name, split=split or "test")
    if os.path.isdir(spec):
        return DataSpec(spec, "folder", path=spec)
    if os.path.isfile(spec):
        if spec.endswith(".npz"):
            return DataSpec(spec, "npz", path=spec)
        raise SetupError(f"--data={spec}: not an .npz file (expected tfds:NAME[:SPLIT], an .npz "
                         "with x and y, or a data folder)")
    raise SetupError(f"--data={spec}: no such file or folder (expected tfds:NAME[:SPLIT], an .npz "
                     "with x and y, or a data folder)")


def read_folder(spec: DataSpec, num_examples: Optional[int]) -> Data:
    """The test split of the folder ``spec`` by the first challenge loader that reads it."""
    from daa_tf.data import DataNotFoundError

    problems: List[str] = []
    for challenge in registry.CHALLENGES.values():
        try:
            x, y = challenge.load_data("test", spec.path, num_examples)
        except DataNotFoundError:
            continue
        except ValueError as err:
            problems.append(f"{challenge.name} loader: {err}")
            continue
        box = f"[{challenge.format.clip_min:g}, {challenge.format.clip_max:g}]"
        return Data(x, y, f"{spec.path} (test split, read by the {challenge.name} loader: "
                          f"pixels in {box})", challenge)
    if problems:
        raise SetupError(f"--data={spec.spec}: cannot read the folder:\n  " + "\n  ".join(problems))
    raise SetupError(f"--data={spec.spec}: no data the challenge loaders read (MNIST-format IDX "
                     "files such as t10k-images-idx3-ubyte.gz, CIFAR-10 python batches, or one "
                     ".npz with x and y)")


def _scaled(x: np.ndarray, clip_max: float) -> Tuple[np.ndarray, str]:
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        if clip_max <= 1:
            return x.astype(np.float32) / np.float32(255), f"{x.dtype} pixels / 255"
        return x.astype(np.float32), f"{x.dtype} pixels as they are"
    if not np.issubdtype(x.dtype, np.floating):
        raise SetupError(f"images of dtype {x.dtype}: expected integer or floating point pixels")
    return x.astype(np.float32), f"{x.dtype} pixels as they are"


def _labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    """The labels as int64 ``[n]`` by the library's one rule (:func:`daa_tf.validation.labels`:
    ``[n]``, or ``[n, 1]`` squeezed); SetupError otherwise."""
    from daa_tf import validation

    try:
        return validation.labels(y, n, f"{where}: labels").astype(np.int64)
    except ValueError as err:
        raise SetupError(str(err)) from None


def _first(x: np.ndarray, y: np.ndarray, num_examples: Optional[int], where: str
           ) -> Tuple[np.ndarray, np.ndarray]:
    """The first ``num_examples`` images and labels, once the whole set is checked: images
    ``[N, ...]`` with ``N > 0`` and one label per image (a file whose ``x`` and ``y`` differ in
    length is refused, whatever part of it is used)."""
    if x.ndim < 2 or len(x) == 0:
        raise SetupError(f"{where}: images of shape {list(x.shape)}, expected a batch [N, ...] of "
                         "at least one image")
    y = _labels(y, len(x), where)
    if num_examples is not None:
        if num_examples > len(x):
            raise SetupError(f"--num_examples={num_examples} but {where} holds only {len(x)} "
                             f"images: pass at most {len(x)}")
        x, y = x[:num_examples], y[:num_examples]
    return x, y


def _read_npz(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` of the ``.npz`` ``path`` (:func:`daa_tf.data.formats.read_npz`: never
    unpickled; object arrays and ``x``/``y`` of different lengths refused, naming the file)."""
    from daa_tf.data.formats import read_npz

    try:
        return read_npz(path)
    except ValueError as err:
        raise SetupError(f"--data={err}") from None


def _read_tfds(spec: DataSpec, num_examples: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    from daa_tf.data import tfds_sets

    split = spec.split
    try:
        return tfds_sets.load_tfds(spec.name, split, num_examples)  # reads only what is used
    except Exception as err:  # noqa: BLE001 - offline, unknown name, broken cache: one message
        text = str(err).splitlines()[0][:300] if str(err) else ""
        raise SetupError(f"--data={spec.spec}: could not load {spec.name!r} ({split}) from "
                         f"tensorflow-datasets ({type(err).__name__}: {text}). Offline? Pass an "
                         ".npz with x and y, or a data folder") from None


def load(spec: DataSpec, clip_max: float, num_examples: Optional[int]) -> Data:
    """The images and labels of a ``tfds`` or ``npz`` spec, scaled for a box ending at
    ``clip_max`` (see the module docstring)."""
    if spec.kind == "tfds":
        x, y = _read_tfds(spec, num_examples)
        where = f"tfds {spec.name} ({spec.split})"
    else:
        x, y = _read_npz(spec.path)
        where = spec.path
    x, y = _first(x, y, num_examples, where)
    x, scaling = _scaled(x, clip_max)
    return Data(np.ascontiguousarray(x), y, f"{where}, {scaling}")
