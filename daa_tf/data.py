"""MNIST, Fashion-MNIST and CIFAR-10 as NumPy arrays, in the official order.

Sources, in this order: ``data_dir`` holding the classic files (IDX ``*-ubyte[.gz]`` as MadryLab's
``MNIST_data/``; CIFAR-10 python pickle batches as MadryLab's ``cifar10_data/``; or an ``.npz`` with
``x`` and ``y``), else tensorflow-datasets (which downloads when online).

Returned ranges: MNIST/Fashion-MNIST ``x`` float32 ``[N, 784]`` in [0, 1] (pixel / 255); CIFAR-10
``x`` float32 ``[N, 32, 32, 3]`` (NHWC) in [0, 255]; ``y`` int64 ``[N]``.
"""
from __future__ import annotations

import gzip
import os
import pickle
import zipfile
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import numpy as np

PathLike = Union[str, os.PathLike]
Arrays = Tuple[np.ndarray, np.ndarray]

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049
SPLITS = ("train", "test")
_IDX_PREFIX = {"train": "train", "test": "t10k"}
_CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


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


def _idx_names(split: str, kind: str) -> list:
    stem = f"{_IDX_PREFIX[split]}-{kind}-ubyte"
    dotted = f"{_IDX_PREFIX[split]}-{kind.replace('-', '.')}-ubyte"
    return [stem + ".gz", stem, dotted + ".gz", dotted]


def _idx_from_dir(folder: Path, split: str) -> Optional[Arrays]:
    images = _find(folder, _idx_names(split, "images-idx3"))
    labels = _find(folder, _idx_names(split, "labels-idx1"))
    if images is None or labels is None:
        return None
    x = read_idx(images, IDX_IMAGES_MAGIC)
    y = read_idx(labels, IDX_LABELS_MAGIC)
    if len(x) != len(y):
        raise ValueError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels")
    return x, y


# ------------------------------------------------------------------------------------- CIFAR-10


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({err})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: not a CIFAR-10 python batch (no dict inside)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _cifar_from_dir(folder: Path, split: str) -> Optional[Arrays]:
    for base in (folder, folder / "cifar-10-batches-py"):
        paths = [base / name for name in _CIFAR_BATCHES[split]]
        if not all(p.is_file() for p in paths):
            continue
        xs, ys = [], []
        for p in paths:
            batch = _unpickle(p)
            if "data" not in batch or "labels" not in batch:
                raise ValueError(f"{p}: CIFAR-10 batch without 'data' and 'labels'")
            data = np.asarray(batch["data"], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(batch["labels"]):
                raise ValueError(f"{p}: CIFAR-10 'data' has shape {data.shape}, expected [N, 3072] "
                                 f"with one label per row")
            xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # rows are C,H,W
            ys.append(np.asarray(batch["labels"]))
        return np.concatenate(xs), np.concatenate(ys)
    return None


# ------------------------------------------------------------------------------------------ npz


def _npz_file(data_dir: Path, split: str) -> Optional[Path]:
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


def _npz(path: Path) -> Arrays:
    try:
        f = np.load(path)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable npz file ({err})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not an npz archive of named arrays")
    with f:
        if "x" not in f.files or "y" not in f.files:
            raise ValueError(f"{path}: npz without arrays 'x' and 'y' (has {f.files})")
        return f["x"], f["y"]


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


def _finish_mnist(x: np.ndarray, y: np.ndarray, source: str) -> Arrays:
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != 784:
        raise ValueError(f"{source}: images of shape {list(x.shape)}, expected [N, 784] or "
                         "[N, 28, 28(, 1)]")
    x = _to_unit_range(x.reshape(len(x), 784), source, 1.0)
    return x, np.asarray(y).reshape(-1).astype(np.int64)


def _finish_cifar(x: np.ndarray, y: np.ndarray, source: str) -> Arrays:
    if tuple(x.shape[1:]) != (32, 32, 3):
        raise ValueError(f"{source}: images of shape {list(x.shape)}, expected [N, 32, 32, 3]")
    return _to_unit_range(x, source, 255.0), np.asarray(y).reshape(-1).astype(np.int64)


# --------------------------------------------------------------------------------------- tfds


def _tfds_load(name: str, split: str) -> Arrays:
    """``(images, labels)`` of ``name``/``split`` from tensorflow-datasets (may download)."""
    import tensorflow_datasets as tfds

    data = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1, shuffle_files=False))
    return data["image"], data["label"]


def _from_tfds(name: str, split: str, expected: str) -> Arrays:
    try:
        return _tfds_load(name, split)
    except Exception as err:  # offline, not installed, broken cache: all end the same way
        raise DataNotFoundError(
            f"could not load {name!r} ({split}) from tensorflow-datasets ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200] if str(err) else ''}). Offline? Put {expected} in a "
            "folder and pass it as data_dir= (the challenge runners' --data_dir flag)") from err


# ------------------------------------------------------------------------------------- public


def _check_args(split: str, num_examples: Optional[int]) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if num_examples is not None and num_examples <= 0:
        raise ValueError(f"num_examples must be positive, got {num_examples}")


def _take(x: np.ndarray, y: np.ndarray, num_examples: Optional[int], what: str) -> Arrays:
    if num_examples is not None:
        if num_examples > len(x):
            raise ValueError(f"num_examples={num_examples} but {what} holds only {len(x)} examples")
        x, y = x[:num_examples], y[:num_examples]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def _load_idx_dataset(tfds_name: str, split: str, data_dir: Optional[PathLike],
                      num_examples: Optional[int]) -> Arrays:
    _check_args(split, num_examples)
    expected = (f"{_IDX_PREFIX[split]}-images-idx3-ubyte.gz and "
                f"{_IDX_PREFIX[split]}-labels-idx1-ubyte.gz (or an .npz with 'x' and 'y')")
    if data_dir is None:
        x, y = _from_tfds(tfds_name, split, expected)
        source = f"tfds {tfds_name}"
    else:
        folder = Path(data_dir)
        found = _idx_from_dir(folder, split) if folder.is_dir() else None
        source = str(folder)
        if found is None:
            npz = _npz_file(folder, split)
            if npz is None:
                raise DataNotFoundError(f"no {tfds_name} {split} data in {folder}: expected "
                                        f"{expected} there")
            found, source = _npz(npz), str(npz)
        x, y = found
    x, y = _finish_mnist(x, y, source)
    return _take(x, y, num_examples, f"{tfds_name} {split} ({source})")


def load_mnist(split: str = "test", data_dir: Optional[PathLike] = None,
               num_examples: Optional[int] = None) -> Arrays:
    """MNIST ``(x, y)``: x float32 ``[N, 784]`` in [0, 1], y int64 ``[N]``, official order.

    ``data_dir``: folder with the IDX files (``t10k-images-idx3-ubyte.gz``, ...; uncompressed also
    accepted) or an ``.npz`` (or a folder holding one) with ``x``, ``y``; None: tfds.
    ``num_examples``: keep the first ones (ValueError if more than available).
    """
    return _load_idx_dataset("mnist", split, data_dir, num_examples)


def load_fashion_mnist(split: str = "test", data_dir: Optional[PathLike] = None,
                       num_examples: Optional[int] = None) -> Arrays:
    """Fashion-MNIST ``(x, y)``, same files, layout and ranges as :func:`load_mnist`."""
    return _load_idx_dataset("fashion_mnist", split, data_dir, num_examples)


def load_cifar10(split: str = "test", data_dir: Optional[PathLike] = None,
                 num_examples: Optional[int] = None) -> Arrays:
    """CIFAR-10 ``(x, y)``: x float32 ``[N, 32, 32, 3]`` in [0, 255], y int64 ``[N]``, test order.

    ``data_dir``: folder with the python batches (``test_batch``, ``data_batch_1..5``) directly or
    in ``cifar-10-batches-py/``, or an ``.npz`` (or a folder holding one) with ``x`` uint8 NHWC and
    ``y``; None = tensorflow-datasets.
    """
    _check_args(split, num_examples)
    expected = (f"the CIFAR-10 python batches ({', '.join(_CIFAR_BATCHES[split])}) or "
                "cifar-10-batches-py/ (or an .npz with 'x' [N, 32, 32, 3] and 'y')")
    if data_dir is None:
        x, y = _from_tfds("cifar10", split, expected)
        source = "tfds cifar10"
    else:
        folder = Path(data_dir)
        found = _cifar_from_dir(folder, split) if folder.is_dir() else None
        source = str(folder)
        if found is None:
            npz = _npz_file(folder, split)
            if npz is None:
                raise DataNotFoundError(f"no cifar10 {split} data in {folder}: expected {expected} "
                                        "there")
            found, source = _npz(npz), str(npz)
        x, y = found
    x, y = _finish_cifar(x, y, source)
    return _take(x, y, num_examples, f"cifar10 {split} ({source})")


LOADERS: dict = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10}


def load_dataset(name: str, split: str = "test", data_dir: Optional[PathLike] = None,
                 num_examples: Optional[int] = None) -> Arrays:
    """Dispatch by name: "mnist", "fashion_mnist" or "cifar10"."""
    loader: Optional[Callable[..., Arrays]] = LOADERS.get(name)
    if loader is None:
        raise ValueError(f"unknown data set {name!r}; known: {sorted(LOADERS)}")
    return loader(split, data_dir, num_examples)
