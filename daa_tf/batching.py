"""How the data set is cut into compiled calls: the batch-size policy and the padding of short
calls to a few bucketed shapes. NumPy only."""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from daa_tf.specs import CASCADES, DEFAULT_BATCH, DEFAULT_PARTICLES, get_spec


def multiple_error(attack: str, batch_size: Optional[int], multiple: Optional[int]
                   ) -> Optional[str]:
    """Why ``batch_size`` is not a positive multiple of ``multiple`` (DAA's group size; None:
    any size), or None. ``batch_size`` None (choose automatically) always suits."""
    if batch_size is None:
        return None
    if batch_size < 1:
        return f"batch_size must be positive, got {batch_size}"
    if multiple and batch_size % multiple:
        return (f"batch_size must be a positive multiple of particles ({multiple}) for "
                f"{attack}, got {batch_size}")
    return None


def batch_size_error(attack: str, batch_size: Optional[int], particles: Optional[int]
                     ) -> Optional[str]:
    """:func:`multiple_error` for an attack or cascade named ``attack`` (the command line's
    check, before settings exist): DAA takes whole groups of ``particles`` (default 200), and so
    does a cascade of the default sequence, which has DAA stages."""
    grouped = attack in CASCADES or get_spec(attack).interacting
    return multiple_error(attack, batch_size,
                          (particles or DEFAULT_PARTICLES) if grouped else None)


def default_batch_size(multiple: Optional[int], n: int) -> int:
    """About :data:`~daa_tf.specs.DEFAULT_BATCH` examples, a whole number of groups of
    ``multiple`` (DAA; None: any size), never more than ``n`` needs."""
    if multiple:
        groups = max(1, DEFAULT_BATCH // multiple)
        return min(groups, -(-n // multiple)) * multiple
    return min(DEFAULT_BATCH, n)


# Calls on fewer rows than a batch (the last batch, the examples early stop leaves) are padded to
# the next multiple of batch / buckets rows: at most that many shapes per compiled function (no
# retracing, or XLA recompiling, per subset size) and at most batch / buckets rows of waste.
# XLA compiles each shape anew (seconds to minutes): BUCKETS. A plain graph only retraces, in
# about a second (docs/performance.md#padding), while the padded rows cost as much as real ones
# (a cascade's later stages run on 90% of a batch): GRAPH_BUCKETS, a waste of at most 1/32.
BUCKETS = 8
GRAPH_BUCKETS = 32


def buckets_for(jit_compile: bool) -> int:
    """How many shapes a compiled loop's short calls are padded to: :data:`BUCKETS` under XLA,
    :data:`GRAPH_BUCKETS` for a plain graph."""
    return BUCKETS if jit_compile else GRAPH_BUCKETS


def bucket(n: int, batch: int, buckets: int = BUCKETS) -> int:
    """The rows a call on ``n <= batch`` rows is padded to: the next multiple of ``batch /
    buckets`` (at most ``batch``)."""
    step = max(1, -(-batch // buckets))
    return max(n, min(batch, -(-n // step) * step))


def padded(arrays: Sequence[np.ndarray], size: int) -> List[np.ndarray]:
    """``arrays`` (same leading length ``n <= size``) padded to ``size`` rows by repeating their
    last row; the caller keeps the first ``n`` rows of each result (rows are independent)."""
    n = len(arrays[0])
    return [a if n == size else np.concatenate([a, np.repeat(a[-1:], size - n, axis=0)])
            for a in arrays]


def batches(order: np.ndarray, batch_size: int) -> List[np.ndarray]:
    """``order`` cut into consecutive slices of ``batch_size`` (the last may be shorter)."""
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
