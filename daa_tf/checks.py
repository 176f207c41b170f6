"""Sanity checks on a model before an evaluation and on its figures after one, as AutoAttack
runs them (docs/algorithms.md#autoattack-checks). Each finds a known way an evaluation goes
wrong and warns (:class:`EvaluationWarning`) with one sentence naming the problem and the fix;
none changes a result.

- :func:`check_logits`: the outputs look like probabilities (in ``[0, 1]``, rows summing to 1),
  so the losses see softmax twice and their gradients vanish.
- :func:`check_deterministic`: two calls on the same batch disagree: a randomized model, for
  which attacks need expectation over transformations.
- :func:`check_gradients`: examples whose loss gradient is exactly zero: gradient attacks cannot
  move them (gradient masking, or a saturated output).
- :func:`check_classes`: fewer classes than the targeted attacks need.
- :func:`check_square`: Square (gradient-free) got further than every gradient attack before it,
  the sign of gradient masking.
"""
import warnings
from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf

from daa_tf import loop
from daa_tf.losses import xent


class EvaluationWarning(UserWarning):
    """A robustness evaluation may be unreliable on this model."""


def _warn(message: str) -> None:
    warnings.warn(EvaluationWarning(message), stacklevel=3)


def check_logits(logits: np.ndarray, tolerance: float = 1e-5) -> Optional[str]:
    """Warns when ``logits`` ``[N, C]`` look like probabilities; returns the message or None."""
    z = np.asarray(logits, np.float64)
    if (z.max() < 1 + tolerance and z.min() > -tolerance
            and np.all(np.abs(z.sum(axis=-1) - 1) < tolerance)):
        message = ("the model's outputs look like probabilities (in [0, 1], each row summing to "
                   "1): pass a model returning logits (drop its final softmax)")
        _warn(message)
        return message
    return None


def check_deterministic(logits_fn: Callable[[tf.Tensor], tf.Tensor], x: np.ndarray,
                        y: np.ndarray, calls: int = 5, tolerance: float = 1e-4
                        ) -> Optional[str]:
    """Warns when ``calls`` calls of ``logits_fn`` on ``x`` give different predictions or
    outputs differing by more than ``tolerance`` (after scaling each row to unit L2 norm)."""
    outs = [np.asarray(logits_fn(tf.constant(x)), np.float64) for _ in range(calls)]
    unit = [o / (np.linalg.norm(o, axis=-1, keepdims=True) + 1e-10) for o in outs]
    spread = max(float(np.max(np.linalg.norm(a - b, axis=-1)))
                 for i, a in enumerate(unit) for b in unit[i + 1:])
    correct = {int(np.sum(o.argmax(-1) == y)) for o in outs}
    if len(correct) > 1 or spread > tolerance:
        message = (f"the model's outputs change between calls on the same images (spread "
                   f"{spread:.2g}): a randomized model needs attacks with expectation over "
                   "transformations; make it deterministic (inference mode, no dropout) or "
                   "evaluate it with an adaptive attack")
        _warn(message)
        return message
    return None


def check_gradients(model: loop.Model, x: np.ndarray, y: np.ndarray) -> Optional[str]:
    """Warns when some examples have an exactly zero cross-entropy gradient."""
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(xent(loop.call_model(model, xt), tf.constant(y, tf.int32)))
    grad = tape.gradient(loss, xt)
    if grad is None:
        zero = len(x)
    else:
        zero = int(np.sum(np.abs(grad.numpy().reshape(len(x), -1)).sum(axis=1) == 0))
    if zero:
        message = (f"{zero} of {len(x)} images have a zero loss gradient: gradient attacks "
                   "cannot move them (gradient masking or saturated outputs); trust the "
                   "gradient-free attack (square) more than the gradient ones on this model")
        _warn(message)
        return message
    return None


def check_classes(classes: int, targets: int) -> Optional[str]:
    """Warns when a model with ``classes`` outputs cannot give ``targets`` target classes or the
    targeted DLR loss (which needs 4 classes)."""
    problems = []
    if classes < 4:
        problems.append(f"the targeted DLR loss needs at least 4 classes, the model has {classes}")
    if targets > classes - 1:
        problems.append(f"{targets} target classes asked for, only {classes - 1} exist (each "
                        "targeted attack uses them all)")
    if problems:
        message = "; ".join(problems)
        _warn(message)
        return message
    return None


def check_square(accuracies: Dict[str, float], square: str = "square",
                 tolerance: float = 0.002) -> Optional[str]:
    """Warns when the robust accuracy after ``square`` (fractions, in attack order, the clean
    accuracy included) is more than ``tolerance`` below the lowest of the others."""
    if square not in accuracies or len(accuracies) <= 2:
        return None
    others = min(v for k, v in accuracies.items() if k != square)
    if accuracies[square] < others - tolerance:
        message = (f"Square lowered the robust accuracy by {100 * (others - accuracies[square]):.2f}"
                   " points below the gradient attacks: the gradients may be masked, so the "
                   "evaluation may be unreliable; run Square with more queries and restarts, or "
                   "an adaptive attack")
        _warn(message)
        return message
    return None
