"""The default data path: the ORIGINAL data files fetched with tensorflow-datasets's download
manager and parsed by :mod:`daa_tf.data.formats`, in the files' (official) order.

``tfds.load`` is not used here: tfds shuffles the examples when
it prepares a data set (by a hash of their key), so its MNIST test split starts 2, 0, 4, 8, 7
instead of the official 7, 2, 1, 0, 4 -- and a MadryLab leaderboard file (attack.npy) must be
in the official order, and --num_examples=N must mean the first N official images.
"""
from __future__ import annotations

import contextlib
import threading
import urllib.parse
from pathlib import Path

import numpy as np

from daa_tf.data.formats import (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, Arrays, idx_names,
                                 read_cifar10_bin, read_idx)

_TFDS_RETRIES = 2  # HTTP retries per file here (tfds's default, 10 with backoff, takes minutes)
_RETRIES_LOCK = threading.Lock()


@contextlib.contextmanager
def _few_retries():
    """tfds's HTTP retries lowered to ``_TFDS_RETRIES`` (a module global of tfds), then restored."""
    from tensorflow_datasets.core.download import downloader

    with _RETRIES_LOCK:
        saved = downloader.MAX_RETRIES
        downloader.MAX_RETRIES = min(saved, _TFDS_RETRIES)
        try:
            yield
        finally:
            downloader.MAX_RETRIES = saved


def _download_manager(tfds, builder_cls):
    """tfds's DownloadManager for ``builder_cls``, as its builder makes it.

    Downloads are cached in ``<TFDS data dir>/downloads`` (``TFDS_DATA_DIR``, default
    ``~/tensorflow_datasets``), shared with tfds's own builders. ``url_infos`` are the checksums
    tfds registers for the builder's URLs: those files are validated; other URLs (a mirror, a
    local test server) are not.
    """
    from tensorflow_datasets.core import constants

    return tfds.download.DownloadManager(
        download_dir=Path(constants.DATA_DIR).expanduser() / "downloads",
        url_infos=builder_cls.url_infos, dataset_name=builder_cls.name)


def download_original(name: str, split: str) -> Arrays:
    """``(images, labels)`` of ``name``/``split`` from the original files, via tensorflow-datasets.

    The URLs are those of tfds's builder ``name``: MNIST / Fashion-MNIST ``<builder.URL>`` +
    ``t10k-images-idx3-ubyte.gz`` etc., read with :func:`read_idx`; CIFAR-10 the binary tarball of
    the builder's ``_cifar_info`` (``cifar-10-binary.tar.gz``), extracted once, its
    ``cifar-10-batches-bin/test_batch.bin`` (or the 5 train batches) read with
    :func:`read_cifar10_bin`. uint8 images, labels in the files' order (the official one).
    """
    import tensorflow_datasets as tfds

    builder_cls = tfds.builder_cls(name)
    manager = _download_manager(tfds, builder_cls)
    if name == "cifar10":
        info = builder_cls._cifar_info  # a property of the builder (url, prefix, file names)
        info = info.fget(builder_cls) if isinstance(info, property) else info
        files = info.train_files if split == "train" else info.test_files
        with _few_retries():
            folder = Path(manager.download_and_extract(info.url)) / info.prefix
        batches = [read_cifar10_bin(folder / f) for f in files]
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    urls = {kind: urllib.parse.urljoin(builder_cls.URL, idx_names(split, kind)[0])
            for kind in ("images-idx3", "labels-idx1")}
    with _few_retries():
        paths = manager.download(urls)
    x = read_idx(paths["images-idx3"], IDX_IMAGES_MAGIC)
    y = read_idx(paths["labels-idx1"], IDX_LABELS_MAGIC)
    if len(x) != len(y):
        raise ValueError(f"{urls['images-idx3']} holds {len(x)} images but "
                         f"{urls['labels-idx1']} holds {len(y)} labels")
    return x, y
