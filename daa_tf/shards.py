"""The adversarial examples of a streamed run (:mod:`daa_tf.stream`), written as they are made:
one pair of ``.npy`` files per data-set batch and a JSON index. NumPy only.

Layout of the folder::

    index.json      {"format": "daa_tf.shards/1", "complete": false, "examples": 2100,
                     "shards": [{"x": "x-00000.npy", "y": "y-00000.npy", "count": 1000,
                                 "shape": [1000, 28, 28, 1], "dtype": "float32",
                                 "correct": 912}, ...], ...}
    x-00000.npy     float32 [count, ...]: the batch's adversarial examples, in the data's order
    y-00000.npy     int64 [count]: their labels (targets for a targeted attack)

Every file is written atomically (:func:`daa_tf.files.atomic_write`), a shard before the index
that lists it: the index only ever lists whole shards, and ``complete`` is true only once the pass
has read the whole data set. ``correct`` counts the shard's examples the model still classifies
correctly. Read them back with :func:`read_index`, :func:`iterate` or :func:`load`.
"""
import json
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from daa_tf import files

INDEX = "index.json"
FORMAT = "daa_tf.shards/1"


def shard_names(index: int) -> Tuple[str, str]:
    """The file names of shard ``index``: ``(x-NNNNN.npy, y-NNNNN.npy)``."""
    return f"x-{index:05d}.npy", f"y-{index:05d}.npy"


def read_index(folder: str) -> Dict[str, Any]:
    """The index of ``folder`` (a dict; see the module docstring); ValueError if absent or not
    ours."""
    path = os.path.join(folder, INDEX)
    try:
        with open(path, encoding="utf-8") as fh:
            index = json.load(fh)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the shard index {path}: {err}") from err
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} index")
    return index


class ShardWriter:
    """Writes the shards and the index of one streamed run into ``folder``.

    ``shards``: the entries already written (a resumed run's, from its state); a fresh run
    (``shards`` empty) first replaces any earlier index in ``folder`` by an empty one and
    deletes the shard files it listed. ``meta``: extra JSON fields of the index (the settings).
    """

    def __init__(self, folder: str, shards: Sequence[Dict[str, Any]] = (),
                 meta: Optional[Dict[str, Any]] = None) -> None:
        self.folder = folder
        self.shards: List[Dict[str, Any]] = [dict(s) for s in shards]
        self.meta = dict(meta or {})
        os.makedirs(folder, exist_ok=True)
        if not self.shards:
            stale = self._listed()
            self.write_index(complete=False)
            for name in stale:
                path = os.path.join(folder, name)
                if os.path.exists(path):
                    os.remove(path)
        else:
            self.write_index(complete=False)

    def _listed(self) -> List[str]:
        """The shard files an earlier index in the folder lists (none if it has no index)."""
        try:
            index = read_index(self.folder)
        except ValueError:
            return []
        return [s[key] for s in index.get("shards", []) for key in ("x", "y")
                if isinstance(s.get(key), str) and os.path.basename(s[key]) == s[key]]

    def add(self, x_adv: np.ndarray, y: np.ndarray, correct: np.ndarray) -> Dict[str, Any]:
        """Writes the next shard: ``x_adv`` ``[n, ...]`` float32, labels ``y`` ``[n]`` and the
        per-example correctness ``correct`` ``[n]`` (counted in the entry). Returns its entry;
        the index is not rewritten (:meth:`write_index`)."""
        x_name, y_name = shard_names(len(self.shards))
        x_adv = np.ascontiguousarray(x_adv, np.float32)
        y = np.ascontiguousarray(y, np.int64)
        files.atomic_write(os.path.join(self.folder, x_name), lambda fh: np.save(fh, x_adv))
        files.atomic_write(os.path.join(self.folder, y_name), lambda fh: np.save(fh, y))
        entry = {"x": x_name, "y": y_name, "count": int(len(x_adv)),
                 "shape": [int(d) for d in x_adv.shape], "dtype": "float32",
                 "correct": int(np.sum(correct))}
        self.shards.append(entry)
        return entry

    def write_index(self, complete: bool, **fields: Any) -> None:
        """Writes the index atomically: the shards written so far, their total, ``complete``
        and ``fields`` (e.g. the accuracy once complete)."""
        index = {"format": FORMAT, **self.meta, **fields, "complete": bool(complete),
                 "examples": sum(s["count"] for s in self.shards), "shards": self.shards}
        text = json.dumps(index, indent=1, default=str) + "\n"
        files.atomic_write(os.path.join(self.folder, INDEX), lambda fh: fh.write(text),
                           binary=False)


def iterate(folder: str, require_complete: bool = True, mmap: bool = True
            ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """The shards of ``folder`` in order, as ``(x_adv [n, ...], y [n])`` (memory-mapped with
    ``mmap``). ValueError for an incomplete run unless ``require_complete`` is False."""
    index = read_index(folder)
    if require_complete and not index["complete"]:
        raise ValueError(f"the shards in {folder} are incomplete ({index['examples']} examples "
                         "so far): resume the run, or pass require_complete=False")
    for entry in index["shards"]:
        mode = "r" if mmap else None
        yield (np.load(os.path.join(folder, entry["x"]), mmap_mode=mode),
               np.load(os.path.join(folder, entry["y"]), mmap_mode=mode))


def load(folder: str, require_complete: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """All shards of ``folder`` as two arrays ``(x_adv [N, ...] float32, y [N] int64)`` (for
    sets that fit in memory; :func:`iterate` reads one shard at a time)."""
    parts = [(np.asarray(x), np.asarray(y)) for x, y in iterate(folder, require_complete)]
    if not parts:
        raise ValueError(f"no shards in {folder}")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
