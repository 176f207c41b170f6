"""MultiTargeted's target classes (Gowal et al. 2019; docs/algorithms.md#multitargeted).

Any attack with ``targets = k > 0`` is MultiTargeted over it: for each example, its ``k`` most
likely wrong classes by the clean logits (:func:`target_classes`), each attacked in turn by the
attack ascending the loss's form toward that class, with labels ``[N, 2]`` = (true class, target)
(:func:`target_pairs`, :func:`daa_tf.losses.target_form`). The driver runs the target runs (one
per column, inside each restart) and keeps the worst case (:class:`daa_tf.results.Merged`): an
example keeps the point of the first target run that fooled it; an example never fooled keeps
the point with the highest (untargeted) loss over the runs; for the margin loss that is the
highest margin ``max_{j != y} z_j - z_y``, the choice of deepmind's ``MultiTargetedPGDAttack``.
NumPy only.
"""
from typing import Any

import numpy as np


def target_classes(logits: Any, labels: Any, k: int) -> np.ndarray:
    """The ``k`` most likely wrong classes of each example, most likely first, int32
    ``[N, min(k, C - 1)]`` (ties: the lower class index first; a model with fewer than ``k + 1``
    classes gets all its wrong classes). ``logits`` ``[N, C]`` of the clean inputs, ``labels``
    ``[N]``."""
    z = np.array(logits, np.float64, copy=True)
    labels = np.asarray(labels).astype(np.int64)
    if k < 1 or z.shape[1] < 2:
        raise ValueError(f"targets must be at least 1 and the model needs 2 classes or more, "
                         f"got {k} targets and {z.shape[1]} classes")
    k = min(k, z.shape[1] - 1)
    z[np.arange(len(z)), labels] = -np.inf
    return np.argsort(-z, axis=1, kind="stable")[:, :k].astype(np.int32)


def target_pairs(labels: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """The labels of the ``k``-th target run: ``[N, 2]`` int32 (true class, target)."""
    return np.stack([np.asarray(labels, np.int32), targets[:, k]], axis=1)
