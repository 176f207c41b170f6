"""MNIST, Fashion-MNIST and CIFAR-10 as NumPy arrays, in the official order.

Sources, in this order: ``data_dir`` holding the classic files (IDX ``*-ubyte[.gz]`` as MadryLab's
``MNIST_data/``; CIFAR-10 python pickle batches as MadryLab's ``cifar10_data/``; or an ``.npz`` with
``x`` and ``y``), else the original files fetched by tensorflow-datasets's download manager (the
URLs of its builders: the IDX ``.gz`` files, ``cifar-10-binary.tar.gz``), cached in
``<TFDS_DATA_DIR>/downloads`` and checksum-validated where tfds registers a checksum.

Order guarantee: examples come in the order of the files read (an ``.npz``: its own order), so
the classic files and the default download give the official order (MNIST test labels
``7 2 1 0 4 ...``, Fashion-MNIST ``9 2 1 1 6 ...``, CIFAR-10 ``3 8 8 0 6 ...``): ``num_examples=N``
is the first N official images and a MadryLab ``attack.npy`` lines up row by row with the
evaluator's ``x_nat``. tfds's prepared data sets (``tfds.load``) are never read: tfds shuffles
the examples when it prepares them.

Returned ranges: MNIST/Fashion-MNIST ``x`` float32 ``[N, 784]`` in [0, 1] (pixel / 255); CIFAR-10
``x`` float32 ``[N, 32, 32, 3]`` (NHWC) in [0, 255]; ``y`` int64 ``[N]``.

Modules: :mod:`~daa_tf.data.formats` (the files' formats), :mod:`~daa_tf.data.downloads` (the
default download, official order), :mod:`~daa_tf.data.tfds_sets` (any tensorflow-datasets data
set, tfds's own order, for the generic runner), :mod:`~daa_tf.data.nips17` (the NIPS 2017
ImageNet images).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from daa_tf.data import downloads
from daa_tf.data.formats import (CIFAR_BATCHES, IDX_PREFIX, SPLITS, Arrays, DataNotFoundError,
                                 PathLike, cifar_from_dir, finish_cifar, finish_mnist,
                                 idx_from_dir, npz_file, read_cifar10_bin, read_idx, read_npz)
from daa_tf.data.nips17 import Nips17, load_nips17
from daa_tf.data.tfds_sets import load_tfds

__all__ = ["load_mnist", "load_fashion_mnist", "load_cifar10", "load_dataset", "load_tfds",
           "load_nips17", "Nips17", "DataNotFoundError", "read_idx", "read_cifar10_bin",
           "LOADERS", "SPLITS"]


def _from_tfds(name: str, split: str, expected: str) -> Arrays:
    try:
        return downloads.download_original(name, split)
    except Exception as err:  # offline, not installed, bad checksum or cache: all end the same way
        raise DataNotFoundError(
            f"could not load {name!r} ({split}) from tensorflow-datasets ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200] if str(err) else ''}). Offline? Put {expected} in a "
            "folder and pass it as data_dir= (the challenge runners' --data_dir flag)") from err


def _check_args(split: str, num_examples: Optional[int]) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if num_examples is not None and num_examples <= 0:
        raise ValueError(f"num_examples must be positive, got {num_examples}")


def _take(x: np.ndarray, y: np.ndarray, num_examples: Optional[int], what: str) -> Arrays:
    if num_examples is not None:
        if num_examples > len(x):
            raise ValueError(f"num_examples={num_examples} but {what} holds only {len(x)} "
                             f"examples: pass at most {len(x)} (None: all of them)")
        x, y = x[:num_examples], y[:num_examples]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def _load(name: str, split: str, data_dir: Optional[PathLike], num_examples: Optional[int],
          expected: str, read_folder: Callable[[Path, str], Optional[Arrays]],
          finish: Callable[[np.ndarray, np.ndarray, str], Arrays]) -> Arrays:
    """``name``/``split`` from ``data_dir`` (``read_folder``'s files, else an ``.npz``) or, without
    it, from the original files downloaded through tensorflow-datasets; ``finish`` converts the
    pixels; the first ``num_examples`` kept. ``expected`` names the files in error messages."""
    _check_args(split, num_examples)
    if data_dir is None:
        (x, y), source = _from_tfds(name, split, expected), f"tfds {name}"
    else:
        folder = Path(data_dir)
        found = read_folder(folder, split) if folder.is_dir() else None
        source = str(folder)
        if found is None:
            npz = npz_file(folder, split)
            if npz is None:
                raise DataNotFoundError(f"no {name} {split} data in {folder}: expected "
                                        f"{expected} there")
            found, source = read_npz(npz), str(npz)
        x, y = found
    x, y = finish(x, y, source)
    return _take(x, y, num_examples, f"{name} {split} ({source})")


def _load_idx_dataset(name: str, split: str, data_dir: Optional[PathLike],
                      num_examples: Optional[int]) -> Arrays:
    expected = (f"{IDX_PREFIX[split]}-images-idx3-ubyte.gz and "
                f"{IDX_PREFIX[split]}-labels-idx1-ubyte.gz (or an .npz with 'x' and 'y')"
                if split in IDX_PREFIX else "")
    return _load(name, split, data_dir, num_examples, expected, idx_from_dir, finish_mnist)


def load_mnist(split: str = "test", data_dir: Optional[PathLike] = None,
               num_examples: Optional[int] = None) -> Arrays:
    """MNIST ``(x, y)``: x float32 ``[N, 784]`` in [0, 1], y int64 ``[N]``, official order.

    ``data_dir``: folder with the IDX files (``t10k-images-idx3-ubyte.gz``, ...; uncompressed also
    accepted) or an ``.npz`` (or a folder holding one) with ``x``, ``y``; None: the split's two IDX
    files from the URL of tensorflow-datasets's MNIST builder, downloaded once into
    ``<TFDS_DATA_DIR>/downloads`` (DataNotFoundError naming ``--data_dir`` when that fails).
    ``num_examples``: keep the first ones (ValueError if more than available).
    """
    return _load_idx_dataset("mnist", split, data_dir, num_examples)


def load_fashion_mnist(split: str = "test", data_dir: Optional[PathLike] = None,
                       num_examples: Optional[int] = None) -> Arrays:
    """Fashion-MNIST ``(x, y)``, same files, layout, ranges and order as :func:`load_mnist`.

    ``data_dir`` None: the IDX files from the URL of tensorflow-datasets's fashion_mnist builder.
    """
    return _load_idx_dataset("fashion_mnist", split, data_dir, num_examples)


def load_cifar10(split: str = "test", data_dir: Optional[PathLike] = None,
                 num_examples: Optional[int] = None) -> Arrays:
    """CIFAR-10 ``(x, y)``: x float32 ``[N, 32, 32, 3]`` in [0, 255], y int64 ``[N]``, file order.

    ``data_dir``: folder with the binary batches (``test_batch.bin``, ...; preferred) or the
    python batches (``test_batch``, ``data_batch_1..5``, read without running any code in them)
    directly or in ``cifar-10-batches-bin/`` / ``cifar-10-batches-py/``, or an ``.npz`` (or a
    folder holding one) with ``x`` uint8 NHWC and ``y``; None: ``cifar-10-binary.tar.gz`` (the
    URL of tensorflow-datasets's cifar10 builder), downloaded and extracted once under
    ``<TFDS_DATA_DIR>/downloads``, its ``test_batch.bin`` (or ``data_batch_1..5.bin``) read in
    order -- the same images and order as the python batches.
    """
    expected = (f"the CIFAR-10 python batches ({', '.join(CIFAR_BATCHES[split])}) or "
                "cifar-10-batches-py/ (or an .npz with 'x' [N, 32, 32, 3] and 'y')"
                if split in CIFAR_BATCHES else "")
    return _load("cifar10", split, data_dir, num_examples, expected, cifar_from_dir, finish_cifar)


LOADERS: dict = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10}


def load_dataset(name: str, split: str = "test", data_dir: Optional[PathLike] = None,
                 num_examples: Optional[int] = None) -> Arrays:
    """Dispatch by name: "mnist", "fashion_mnist" or "cifar10"."""
    loader: Optional[Callable[..., Arrays]] = LOADERS.get(name)
    if loader is None:
        raise ValueError(f"unknown data set {name!r}; known: {sorted(LOADERS)}")
    return loader(split, data_dir, num_examples)
