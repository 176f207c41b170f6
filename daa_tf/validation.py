"""Input and model-output checks that turn silent garbage into clear errors (TensorFlow-free: the
data loaders and the command line use them too).

Labels, one rule everywhere (the attack functions, ``daa_tf.run``, the data loaders and the
command line): class indices of shape ``[N]``, or ``[N, 1]`` (one index per row, as
``keras.datasets`` gives them), which is read as ``[N]``; any other shape is refused (one-hot
labels: pass ``y.argmax(axis=1)``).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Mapping

import numpy as np

# Pixels may sit this far (as a fraction of the box) outside [clip_min, clip_max] before we refuse.
RANGE_TOLERANCE = 1e-4


def labels(y: Any, n: int, name: str = "labels") -> np.ndarray:
    """``y`` as class indices ``[n]`` (its own integer dtype): ``[n]`` as it is, ``[n, 1]``
    squeezed; ValueError for another shape, non-integer values or negative ones."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape [N] = [{n}] (or [{n}, 1]): one class index per "
                         f"image, got shape {list(y.shape)}; for one-hot labels pass "
                         "y.argmax(axis=1)")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must be integers (class indices), got dtype {y.dtype}: pass "
                         "y.astype(np.int64) if they are whole numbers")
    if y.size and y.min() < 0:
        raise ValueError(f"{name} must be class indices >= 0, got {int(y.min())}")
    return y


def check_batch(x: np.ndarray, y: Any, clip_min: float, clip_max: float,
                name: str = "x") -> np.ndarray:
    """Refuses an empty batch, NaN/inf, pixels outside the box and labels that do not match the
    batch (:func:`labels`); returns the labels as ``[N]`` (an ``[N, 1]`` array squeezed), which the
    caller must use in place of ``y``."""
    if x.ndim < 2:
        raise ValueError(f"{name} must be a batch [N, ...], got shape {list(x.shape)}: add a "
                         "batch axis, e.g. x[None] for one image")
    if x.shape[0] == 0:
        raise ValueError(f"{name} holds no images (shape {list(x.shape)}): pass a batch of at "
                         "least one")
    y = labels(y, x.shape[0])
    bad = int(np.sum(~np.isfinite(x)))
    if bad:
        raise ValueError(f"{name}: {bad} of its values are NaN or inf: pass finite pixels")
    tol = RANGE_TOLERANCE * (clip_max - clip_min)
    lo, hi = float(x.min()), float(x.max())
    if lo < clip_min - tol or hi > clip_max + tol:
        raise ValueError(
            f"{name}: its values lie in [{lo:g}, {hi:g}], outside the pixel box [{clip_min:g}, "
            f"{clip_max:g}]: pass clip_min/clip_max matching your data (e.g. 0 and 255 for "
            f"the MadryLab CIFAR10 model) or rescale the images")
    return y


def logits_array(out: Any, n: int) -> np.ndarray:
    """The model's output ``out`` on ``n`` examples as a NumPy array ``[n, C]``; ValueError for a
    dict or a list of outputs, or another shape."""
    if isinstance(out, Mapping):
        keys = sorted(map(str, out))
        raise ValueError(f"the model returns a dict (keys {keys}), not one logits tensor: pass a "
                         f"model or function returning logits [N, num_classes], e.g. "
                         f"lambda x: model(x)[{keys[0]!r}]" if keys else
                         "the model returns an empty dict: pass a model returning logits")
    if isinstance(out, (list, tuple)):
        raise ValueError(f"the model returns {len(out)} outputs (a {type(out).__name__}), not one "
                         "logits tensor: pass a model or function returning logits "
                         "[N, num_classes], e.g. lambda x: model(x)[0]")
    probe = np.asarray(out)
    if probe.ndim != 2 or probe.shape[0] != n:
        raise ValueError(f"the model must return logits of shape [N, num_classes]; for a batch of "
                         f"{n} it returned shape {list(probe.shape)}")
    return probe


def check_model_output(model_fn: Callable[[Any], Any], x: np.ndarray,
                       y: np.ndarray, refuse_probabilities: bool = False) -> int:
    """Runs the model on a few examples; refuses outputs that are not ``[n, C]`` finite logits
    (a dict or list of outputs included) or labels ``>= C``; when rows look like probabilities
    (non-negative, summing to 1) warns, or with ``refuse_probabilities`` raises ValueError.
    Returns ``C``."""
    import tensorflow as tf

    probe = logits_array(model_fn(tf.constant(x)), x.shape[0])
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
        raise ValueError(f"{name} cannot be converted to a {np.dtype(dtype).name} array: {err}"
                         ) from None
