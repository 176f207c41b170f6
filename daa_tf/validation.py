"""Input and model-output checks that turn silent garbage into clear errors."""
import warnings
from typing import Any, Callable

import numpy as np
import tensorflow as tf

# Pixels may sit this far (as a fraction of the box) outside [clip_min, clip_max] before we refuse.
RANGE_TOLERANCE = 1e-4


def check_batch(x: np.ndarray, y: np.ndarray, clip_min: float, clip_max: float,
                name: str = "x") -> None:
    """Refuses NaN/inf, pixels outside the box, and labels that do not match the batch."""
    if x.ndim < 2:
        raise ValueError(f"{name} must be a batch [N, ...], got shape {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have shape [N] = [{x.shape[0]}] to match {name}, got "
                         f"{y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers (class indices), got dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise ValueError(f"labels must be >= 0, got {y.min()}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf values: {np.sum(~np.isfinite(x))} entries")
    tol = RANGE_TOLERANCE * (clip_max - clip_min)
    lo, hi = float(x.min()), float(x.max())
    if lo < clip_min - tol or hi > clip_max + tol:
        raise ValueError(
            f"{name} has values in [{lo:g}, {hi:g}], outside the pixel box [{clip_min:g}, "
            f"{clip_max:g}]: pass clip_min/clip_max matching your data (e.g. 0 and 255 for "
            f"the MadryLab CIFAR10 model) or rescale the images")


def check_model_output(model_fn: Callable[[tf.Tensor], tf.Tensor], x: np.ndarray,
                       y: np.ndarray, refuse_probabilities: bool = False) -> int:
    """Runs the model on a few examples; refuses outputs that are not ``[n, C]`` finite logits or
    labels ``>= C``; when rows look like probabilities (non-negative, summing to 1) warns, or with
    ``refuse_probabilities`` raises ValueError. Returns ``C``."""
    probe = np.asarray(model_fn(tf.constant(x)))
    if probe.ndim != 2 or probe.shape[0] != x.shape[0]:
        raise ValueError(f"the model must return logits of shape [N, num_classes]; for a batch of "
                         f"{x.shape[0]} it returned shape {probe.shape}")
    if not np.all(np.isfinite(probe)):
        raise ValueError("the model returned NaN or inf logits on clean inputs")
    num_classes = probe.shape[1]
    if y.size and y.max() >= num_classes:
        raise ValueError(f"label {int(y.max())} is out of range for a model with {num_classes} "
                         "outputs")
    if probe.min() >= 0 and np.allclose(probe.sum(axis=1), 1.0, atol=1e-4):
        message = ("the model's outputs are non-negative and sum to 1 per row: it looks like it "
                   "returns probabilities (softmax). The attacks expect logits; remove the final "
                   "softmax, or the loss gradients will be wrong or vanish.")
        if refuse_probabilities:
            raise ValueError(message)
        warnings.warn(message, stacklevel=3)
    return num_classes


def as_batch(value: Any, dtype: Any, name: str) -> np.ndarray:
    """Converts a tensor or array-like to NumPy with a clear error."""
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} cannot be converted to a {np.dtype(dtype).name} array: {err}")
