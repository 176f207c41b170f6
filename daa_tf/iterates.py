"""Best iterates: per example, the iterate to return instead of the last one
(docs/algorithms.md#best-iterates).

The rule: the *last* iterate that fooled the model (as AutoAttack's ``x_best_adv``); an example
never fooled gets its highest-objective iterate (the first one reaching it; the objective is the
loss the attack ascends, negated for targeted attacks). The iterates considered are the start
point and every point the loop steps to, judged from the logits and losses its gradient passes
compute anyway; the final point, which has no gradient pass, is judged by one forward pass after
the loop.

The state is ``(x_out, best, fooled)``: the chosen points, the best objective of an example not yet
fooled, and whether it was ever fooled. :func:`merge` combines the states of consecutive runs (the
driver's rounds), so a run cut into calls chooses as one uninterrupted run would.
"""
from typing import Tuple

import numpy as np
import tensorflow as tf

State = Tuple[tf.Tensor, tf.Tensor, tf.Tensor]


def _rows(mask: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    return tf.reshape(mask, [-1] + [1] * (len(like.shape) - 1))


def init(x: tf.Tensor) -> State:
    """The state before any iterate was judged: ``x`` itself, objective ``-inf``, not fooled."""
    n = tf.shape(x)[0]
    return x, tf.fill([n], tf.constant(-float("inf"), x.dtype)), tf.zeros([n], tf.bool)


def update(state: State, x: tf.Tensor, objective: tf.Tensor, fooled: tf.Tensor) -> State:
    """Judges the iterate ``x`` with its objective ``[N]`` and success ``[N]``."""
    x_out, best, ever = state
    higher = tf.logical_and(tf.logical_not(tf.logical_or(ever, fooled)), objective > best)
    take = tf.logical_or(fooled, higher)
    return (tf.where(_rows(take, x), x, x_out), tf.where(higher, objective, best),
            tf.logical_or(ever, fooled))


def merge(x_out: np.ndarray, best: np.ndarray, fooled: np.ndarray, x_new: np.ndarray,
          best_new: np.ndarray, fooled_new: np.ndarray) -> None:
    """Folds a later run's state (``*_new``) into an earlier one's, in place (NumPy): the later
    run's fooling point wins (the last fooling iterate), else the strictly higher objective."""
    higher = ~(fooled | fooled_new) & (best_new > best)
    take = fooled_new | higher
    x_out[take] = x_new[take]
    best[higher] = best_new[higher]
    fooled |= fooled_new
