"""Any tensorflow-datasets data set as NumPy arrays, for attacks on users' own data (the generic
runner's ``--data=tfds:NAME[:SPLIT]``).

Unlike the challenges' loaders (:mod:`daa_tf.data.downloads`, the official order), this reads
tfds's prepared data set with ``tfds.load``: examples come in tfds's order (tfds shuffles them
once, deterministically, when it prepares the set), which is fine for measuring accuracy but is
not a leaderboard order.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from daa_tf.data.formats import Arrays

_CHUNK = 1000  # examples per batch read from tfds (its batch_size=-1 can abort under its mocks)


def load_tfds(name: str, split: str = "test", num_examples: Optional[int] = None) -> Arrays:
    """``(images, labels)`` of tfds data set ``name``, split ``split`` (tfds's split syntax, e.g.
    ``test[:500]``), as stored: images as tfds gives them (uint8 ``[N, H, W, C]`` for image data
    sets), labels int64 ``[N]``. ``num_examples``: read only the first ones (a ``[:N]`` slice
    when ``split`` has none). Errors are tfds's own (offline, unknown name, ...)."""
    import tensorflow_datasets as tfds

    if num_examples is not None and "[" not in split:
        split = f"{split}[:{int(num_examples)}]"
    dataset = tfds.load(name, split=split, as_supervised=True, shuffle_files=False)
    xs, ys = [], []
    for x, y in tfds.as_numpy(dataset.batch(_CHUNK)):
        xs.append(x)
        ys.append(y)
    if not xs:
        raise ValueError(f"tensorflow-datasets {name!r} ({split}) holds no examples")
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)
