"""Per-example attack losses: ``loss(logits [N, C], labels [N] int) -> [N] float32``
(docs/algorithms.md#losses).

The attack ascends the summed loss (or descends it for targeted attacks).

Every named loss also has a form *toward a target class*
(docs/algorithms.md#losses-toward-a-target), used by MultiTargeted:
``loss(logits [N, C], pairs [N, 2] int) -> [N]`` with ``pairs[:, 0]`` the true class ``y`` and
``pairs[:, 1]`` the target ``t``; it is ascended, and the attack succeeds when the prediction
leaves ``y`` (for any class). :func:`target_form` maps a name to it.
"""
from typing import Callable, Dict, Union

import tensorflow as tf

from daa_tf import catalogue

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


def _sorted_top(logits: tf.Tensor, k: int) -> tf.Tensor:
    """The ``k`` largest logits of each row, descending, ``[N, k]``."""
    return tf.math.top_k(logits, k=k, sorted=True).values


def _true_and_best_wrong(logits: tf.Tensor, labels: tf.Tensor):
    """``(z_y, max_{j != y} z_j)``, ``[N]`` each; the true class is masked with ``-inf``."""
    onehot = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(logits)[-1], on_value=True,
                        off_value=False)
    correct = tf.reduce_sum(tf.where(onehot, logits, tf.zeros_like(logits)), axis=-1)
    wrong = tf.reduce_max(tf.where(onehot, tf.fill(tf.shape(logits),
                                                   tf.constant(-float("inf"), logits.dtype)),
                                   logits), axis=-1)
    return correct, wrong


def _class_logit(logits: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """``z_{i, classes_i}``, ``[N]``."""
    return tf.gather(logits, tf.cast(classes, tf.int32), axis=1, batch_dims=1)


def dlr(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Difference of logits ratio (Croce & Hein 2020), ``[N]``:
    ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 + 1e-12)``, ``z_pi`` the logits sorted in
    descending order. Needs at least 3 classes (docs/algorithms.md#dlr)."""
    correct, wrong = _true_and_best_wrong(logits, labels)
    top = _sorted_top(logits, 3)
    return -(correct - wrong) / (top[:, 0] - top[:, 2] + 1e-12)


def margin(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Logit margin ``max_{j != y} z_j - z_y``, ``[N]`` (positive once misclassified;
    docs/algorithms.md#margin)."""
    correct, wrong = _true_and_best_wrong(logits, labels)
    return wrong - correct


def _pairs(pairs: tf.Tensor):
    pairs = tf.cast(pairs, tf.int32)
    return pairs[:, 0], pairs[:, 1]


def dlr_targeted(logits: tf.Tensor, pairs: tf.Tensor) -> tf.Tensor:
    """Targeted DLR as AutoAttack's APGD-T computes it, ``[N]``:
    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)``; ``pairs`` ``[N, 2]`` = ``(y, t)``.
    Needs at least 4 classes (docs/algorithms.md#losses-toward-a-target)."""
    y, t = _pairs(pairs)
    top = _sorted_top(logits, 4)
    return -(_class_logit(logits, y) - _class_logit(logits, t)) / (
        top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def margin_targeted(logits: tf.Tensor, pairs: tf.Tensor) -> tf.Tensor:
    """Margin toward the target, ``z_t - z_y``, ``[N]``; ``pairs`` ``[N, 2]`` = ``(y, t)``
    (MultiTargeted's loss, Gowal et al. 2019)."""
    y, t = _pairs(pairs)
    return _class_logit(logits, t) - _class_logit(logits, y)


def xent_targeted(logits: tf.Tensor, pairs: tf.Tensor) -> tf.Tensor:
    """``-xent(z, t)``: ascending it descends the cross-entropy toward ``t``."""
    return -xent(logits, _pairs(pairs)[1])


def cw_targeted(logits: tf.Tensor, pairs: tf.Tensor) -> tf.Tensor:
    """``-cw(z, t) = relu(z_t - max_{j != t} z_j + 50)``: ascending it pushes ``z_t`` on top."""
    return -cw(logits, _pairs(pairs)[1])


def odi(logits: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """Output diversification (Tashiro et al. 2020), ``[N]``: ``w_i . z_i``, with ``w`` ``[N, C]``
    the random direction (docs/algorithms.md#odi). Not a catalogue name: the ODI start uses it."""
    return tf.reduce_sum(tf.cast(w, logits.dtype) * logits, axis=-1)


def predicted(logits: tf.Tensor) -> tf.Tensor:
    """``argmax`` of each row, int32 ``[N]``."""
    return tf.argmax(logits, axis=-1, output_type=tf.int32)


def fooled(logits: tf.Tensor, labels: tf.Tensor, targeted: bool) -> tf.Tensor:
    """Success of each example, bool ``[N]``: the prediction left the true class (labels ``[N]``,
    or ``[N, 2]`` pairs whose first column is the true class), or, for targeted attacks, equals
    the target."""
    pred = predicted(logits)
    labels = tf.cast(labels, tf.int32)
    if labels.shape.rank == 2:
        return tf.not_equal(pred, labels[:, 0])
    if targeted:
        return tf.equal(pred, labels)
    return tf.not_equal(pred, labels)


# The functions behind the catalogue's loss names (daa_tf.catalogue.LOSSES).
LOSS_FUNCTIONS: Dict[str, LossFn] = {"xent": xent, "cw": cw, "dlr": dlr, "margin": margin}
# Their forms toward a target class (labels [N, 2] = (true class, target)).
TARGET_FORMS: Dict[str, LossFn] = {"xent": xent_targeted, "cw": cw_targeted,
                                   "dlr": dlr_targeted, "margin": margin_targeted}
if set(LOSS_FUNCTIONS) != set(catalogue.LOSSES):  # a name added to one place only
    raise ImportError(f"daa_tf.losses implements {sorted(LOSS_FUNCTIONS)}, the catalogue names "
                      f"{sorted(catalogue.LOSSES)}")


def target_form(loss: Union[str, LossFn]) -> LossFn:
    """The form toward a target class of the loss named ``loss`` (labels ``[N, 2]`` = ``(y, t)``;
    docs/algorithms.md#losses-toward-a-target). A callable is returned unchanged: it must take
    such pairs."""
    catalogue.check_loss(loss)
    return loss if callable(loss) else TARGET_FORMS[loss]


def get_loss(loss: Union[str, LossFn]) -> LossFn:
    """Resolves a loss name of :data:`daa_tf.catalogue.LOSSES` or returns a callable unchanged."""
    catalogue.check_loss(loss)
    return loss if callable(loss) else LOSS_FUNCTIONS[loss]
