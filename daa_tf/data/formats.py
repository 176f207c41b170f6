"""The data files' formats: MNIST IDX (``*-ubyte[.gz]``), CIFAR-10 python pickle batches (read
without running code) and binary batches, ``.npz`` archives with ``x`` and ``y`` (never
unpickled), and the conversion of pixels to the challenges' float32 ranges. Readers keep the
files' order.
"""
from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from daa_tf import validation
from daa_tf.data import safe_pickle

PathLike = Union[str, os.PathLike]
Arrays = Tuple[np.ndarray, np.ndarray]

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049
SPLITS = ("train", "test")
IDX_PREFIX = {"train": "train", "test": "t10k"}
CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_CIFAR_RECORD = 1 + 3 * 32 * 32  # binary CIFAR-10: 1 label byte, then the image as C, H, W


class DataNotFoundError(FileNotFoundError):
    """Neither ``data_dir`` nor tensorflow-datasets could provide the data set."""


# ----------------------------------------------------------------------------------------- IDX


def _read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as f:
                return f.read()
        except (EOFError, OSError, gzip.BadGzipFile) as err:
            raise ValueError(f"{path}: corrupt or truncated gzip file ({err})") from None
    return path.read_bytes()


def read_idx(path: PathLike, expected_magic: Optional[int] = None) -> np.ndarray:
    """The uint8 array in IDX file ``path`` (``.gz`` or raw).

    Checks the magic number (2051 images ``[N, rows, cols]``, 2049 labels ``[N]``; or
    ``expected_magic``) and that the payload size matches the header; ValueError naming the file.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 8:
        raise ValueError(f"{path}: truncated IDX file ({len(data)} bytes, no header)")
    magic = int.from_bytes(data[:4], "big")
    ndims = {IDX_IMAGES_MAGIC: 3, IDX_LABELS_MAGIC: 1}.get(magic)
    if ndims is None or (expected_magic is not None and magic != expected_magic):
        want = expected_magic if expected_magic is not None else "2051 or 2049"
        raise ValueError(f"{path}: bad IDX magic number {magic} (expected {want}); not an MNIST "
                         "IDX file")
    header = 4 + 4 * ndims
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndims)]
    payload = len(data) - header
    if payload != int(np.prod(dims)):
        raise ValueError(f"{path}: IDX header says {dims} = {int(np.prod(dims))} bytes of data but "
                         f"the file holds {payload}: truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find(folder: Path, names) -> Optional[Path]:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def idx_names(split: str, kind: str) -> list:
    """The file names an IDX ``kind`` (``images-idx3``, ``labels-idx1``) of ``split`` may have."""
    stem = f"{IDX_PREFIX[split]}-{kind}-ubyte"
    dotted = f"{IDX_PREFIX[split]}-{kind.replace('-', '.')}-ubyte"
    return [stem + ".gz", stem, dotted + ".gz", dotted]


def idx_from_dir(folder: Path, split: str) -> Optional[Arrays]:
    """uint8 images and labels of ``split`` from the IDX files in ``folder``, None if absent."""
    images = _find(folder, idx_names(split, "images-idx3"))
    labels = _find(folder, idx_names(split, "labels-idx1"))
    if images is None or labels is None:
        return None
    x = read_idx(images, IDX_IMAGES_MAGIC)
    y = read_idx(labels, IDX_LABELS_MAGIC)
    if len(x) != len(y):
        raise ValueError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels")
    return x, y


# ------------------------------------------------------------------------------------- CIFAR-10


def _python_batch(path: Path) -> Arrays:
    """uint8 NHWC images and labels of the CIFAR-10 python batch ``path``, read by
    :func:`daa_tf.data.safe_pickle.load_batch` (no code in the file runs)."""
    batch = safe_pickle.load_batch(path)
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path}: CIFAR-10 batch without 'data' and 'labels'")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if (data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072
            or labels.ndim != 1 or len(data) != len(labels)):
        raise ValueError(f"{path}: CIFAR-10 'data' is {data.dtype} of shape {list(data.shape)} "
                         f"with {labels.size} labels, expected uint8 [N, 3072] with one label "
                         "per row")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels  # rows are C, H, W


def cifar_from_dir(folder: Path, split: str) -> Optional[Arrays]:
    """uint8 NHWC images and labels of ``split`` from the CIFAR-10 batches in ``folder`` (or its
    ``cifar-10-batches-bin/`` or ``cifar-10-batches-py/``), None if absent. The binary batches
    (``test_batch.bin``, ...) are preferred where both kinds are present; python batches are read
    without running any code (:mod:`daa_tf.data.safe_pickle`)."""
    for base in (folder, folder / "cifar-10-batches-bin", folder / "cifar-10-batches-py"):
        for suffix, read in ((".bin", read_cifar10_bin), ("", _python_batch)):
            paths = [base / (name + suffix) for name in CIFAR_BATCHES[split]]
            if all(p.is_file() for p in paths):
                batches = [read(p) for p in paths]
                return (np.concatenate([b[0] for b in batches]),
                        np.concatenate([b[1] for b in batches]))
    return None


# ------------------------------------------------------------------------------------------ npz


def npz_file(data_dir: Path, split: str) -> Optional[Path]:
    """``data_dir`` itself if it is an ``.npz``, else the one ``.npz`` (or ``<split>*.npz``) in it."""
    if data_dir.is_file() and data_dir.suffix == ".npz":
        return data_dir
    if not data_dir.is_dir():
        return None
    files = sorted(data_dir.glob("*.npz"))
    if len(files) > 1:
        files = [f for f in files if f.name.startswith(split)]
        if len(files) > 1:
            names = [f.name for f in files]
            raise ValueError(f"several {split}*.npz files in {data_dir}: {names}; pass the one to "
                             "use as data_dir")
    return files[0] if files else None


def read_npz(path: PathLike) -> Arrays:
    """Arrays ``x`` ``[N, ...]`` and ``y`` ``[N]`` (or ``[N, 1]``) of the ``.npz`` archive ``path``.

    Never unpickles: an archive holding object arrays is refused. ValueError naming the file for
    an unreadable archive, missing arrays, object arrays, or ``x`` and ``y`` of different lengths
    (whatever part of them is used later).
    """
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable npz file ({err})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not an npz archive of named arrays")
    with f:
        if "x" not in f.files or "y" not in f.files:
            raise ValueError(f"{path}: npz without arrays 'x' and 'y' (has {f.files})")
        try:
            x, y = f["x"], f["y"]
        except ValueError as err:
            if "allow_pickle" not in str(err):
                raise ValueError(f"{path}: unreadable array in the npz ({err})") from None
            raise ValueError(f"{path}: refused, its x or y is an object array (pickled Python "
                             "objects, which are never loaded): save x and y as numeric arrays, "
                             "e.g. np.savez(path, x=x.astype(np.uint8), y=y.astype(np.int64))"
                             ) from None
        except (OSError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path}: truncated or corrupt npz ({err})") from None
    if x.ndim < 1 or y.ndim < 1 or len(x) != len(y):
        raise ValueError(f"{path}: x holds {len(x) if x.ndim else 0} images but y holds "
                         f"{len(y) if y.ndim else 0} labels: save one label per image")
    return x, y


# ------------------------------------------------------------------------------- normalisation


def _to_unit_range(x: np.ndarray, source: str, max_value: float) -> np.ndarray:
    """Integer pixels -> float32 in [0, max_value] (divided by 255 when max_value is 1)."""
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32)
        return x / 255.0 if max_value == 1.0 else x
    x = x.astype(np.float32)
    if x.size and (x.min() < 0 or x.max() > max_value):
        raise ValueError(f"{source}: float pixels outside [0, {max_value:g}] (range "
                         f"[{x.min():g}, {x.max():g}])")
    return x


def finish_mnist(x: np.ndarray, y: np.ndarray, source: str) -> Arrays:
    """MNIST-like images as float32 ``[N, 784]`` in [0, 1] and int64 labels ``[N]``."""
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != 784:
        raise ValueError(f"{source}: images of shape {list(x.shape)}, expected [N, 784] or "
                         "[N, 28, 28(, 1)]")
    x = _to_unit_range(x.reshape(len(x), 784), source, 1.0)
    return x, validation.labels(y, len(x), f"{source}: labels").astype(np.int64)


def finish_cifar(x: np.ndarray, y: np.ndarray, source: str) -> Arrays:
    """CIFAR-10 images as float32 ``[N, 32, 32, 3]`` in [0, 255] and int64 labels ``[N]``."""
    if tuple(x.shape[1:]) != (32, 32, 3):
        raise ValueError(f"{source}: images of shape {list(x.shape)}, expected [N, 32, 32, 3]")
    x = _to_unit_range(x, source, 255.0)
    return x, validation.labels(y, len(x), f"{source}: labels").astype(np.int64)


def read_cifar10_bin(path: PathLike) -> Arrays:
    """uint8 images ``[N, 32, 32, 3]`` (NHWC) and labels ``[N]`` of a binary CIFAR-10 batch.

    The format of ``cifar-10-binary.tar.gz`` (``test_batch.bin``, ``data_batch_1.bin``, ...):
    records of 1 label byte and 3072 image bytes (channels, rows, columns), in the file's order.
    ValueError naming the file for a size that is not a whole number of records or a label > 9.
    """
    path = Path(path)
    raw = path.read_bytes()
    if not raw or len(raw) % _CIFAR_RECORD:
        raise ValueError(f"{path}: {len(raw)} bytes is not a whole number of {_CIFAR_RECORD}-byte "
                         "CIFAR-10 records: truncated or not a binary CIFAR-10 batch")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0]
    if labels.max() > 9:
        raise ValueError(f"{path}: label {int(labels.max())} > 9; not a binary CIFAR-10 batch")
    return records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels
