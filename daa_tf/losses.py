"""Per-example attack losses: ``loss(logits [N, C], labels [N] int) -> [N] float32``.

The attack ascends the summed loss (or descends it for targeted attacks).
"""
from typing import Callable, Union

import tensorflow as tf

LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]

CW_MARGIN = 50.0
_MASK_VALUE = 1e4


def xent(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy of each example, ``[N]``."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=logits)


def cw(logits: tf.Tensor, labels: tf.Tensor, margin: float = CW_MARGIN) -> tf.Tensor:
    """CW-L-inf margin loss of the MadryLab leaderboards, ``[N]``.

    ``-relu(z_y - max_{j != y} z_j + margin)``; the true class is masked to ``-1e4`` before the max,
    exactly as MadryLab's ``pgd_attack.py`` does.
    """
    onehot = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(logits)[-1], dtype=logits.dtype)
    correct = tf.reduce_sum(onehot * logits, axis=-1)
    wrong = tf.reduce_max((1.0 - onehot) * logits - _MASK_VALUE * onehot, axis=-1)
    return -tf.nn.relu(correct - wrong + margin)


LOSSES = {"xent": xent, "cw": cw}


def get_loss(loss: Union[str, LossFn]) -> LossFn:
    """Resolves a loss name (``"xent"``, ``"cw"``) or returns a callable unchanged."""
    if callable(loss):
        return loss
    try:
        return LOSSES[loss]
    except KeyError:
        raise ValueError(f"unknown loss {loss!r}: use one of {sorted(LOSSES)} or a callable "
                         "(logits [N, C], labels [N]) -> per-example loss [N]") from None
