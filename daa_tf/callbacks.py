"""Keras callbacks: :class:`RobustAccuracy`, the robust accuracy of a validation set as an epoch
figure that ``EarlyStopping``, ``ModelCheckpoint(monitor=...)``, ``CSVLogger`` and
``TensorBoard`` read like any other."""
from typing import Any, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from daa_tf import dispatch, stream
from daa_tf.specs import DEFAULT_SEED


def fit_strategy(model: Any) -> Optional[tf.distribute.Strategy]:
    """The ``tf.distribute`` strategy ``model`` was built under, or None for the default one."""
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None or type(strategy).__name__ == "_DefaultDistributionStrategy":
        return None
    return strategy


class RobustAccuracy(keras.callbacks.Callback):
    """Attacks ``data`` at the end of an epoch and puts the robust accuracy (fraction) in the
    epoch's ``logs`` as ``name``.

    ``data``: ``(x [N, ...], y [N])`` arrays or a ``tf.data.Dataset`` of ``(x, y)`` batches
    (streamed: :mod:`daa_tf.stream`). ``attack``: any ``daa_tf.run`` attack or cascade, with
    ``settings`` its settings (``eps``, ``steps``, ...) and ``restarts``, ``batch_size``,
    ``seed`` (fixed: every epoch draws the same starts, so epochs are compared on the same
    attack), ``verbose`` as ``daa_tf.run`` takes them. ``every``: attack after epochs 1,
    ``1 + every``, ``1 + 2 every``, ... (1-based) and after the last one; on the other epochs
    the figure is absent (``EarlyStopping`` then warns and counts only the attacked epochs).

    The model attacked is the one being fitted, in inference mode: a plain classifier or
    :class:`daa_tf.training.AdversarialTrainer` (whose inference is its classifier's). A model
    built under a ``tf.distribute`` strategy (``MirroredStrategy``) is attacked on its replicas
    (``batch_size`` is then per replica). List the callback before the callbacks that read its
    figure: Keras calls them in order with the same ``logs``. ``history``: ``(epoch,
    accuracy)`` of every attacked epoch.
    """

    def __init__(self, data: Any, attack: Any = "pgd", every: int = 1,
                 name: str = "val_robust_accuracy", *, restarts: int = 1,
                 batch_size: Optional[int] = None, seed: int = DEFAULT_SEED, verbose: int = 0,
                 **settings: Any) -> None:
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive whole number of epochs, got {every!r}")
        if not name or not isinstance(name, str):
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.settings = stream.resolve_settings(attack, settings)  # ValueError now, not later
        if stream.is_dataset(data):
            stream.check_dataset(data)
            self.data: Any = data
        else:
            if not isinstance(data, (tuple, list)) or len(data) != 2:
                raise ValueError("data must be (x, y) arrays or a tf.data.Dataset of (x, y) "
                                 "batches")
            self.data = (np.asarray(data[0], np.float32), np.asarray(data[1]))
        self.every, self.name = every, name
        self.run_kwargs = dict(restarts=restarts, batch_size=batch_size, seed=seed,
                               verbose=verbose)
        self.history: List[Tuple[int, float]] = []

    def due(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) is attacked."""
        last = (self.params or {}).get("epochs")
        return epoch % self.every == 0 or (last is not None and epoch + 1 == last)

    def robust_accuracy(self) -> float:
        """The attack on the current model now: the robust accuracy (fraction)."""
        strategy = fit_strategy(self.model)
        extra = {"strategy": strategy} if strategy is not None else {}
        if stream.is_dataset(self.data):
            result = dispatch.run(self.model, self.data, attack=self.settings,
                                  **self.run_kwargs, **extra)
        else:
            result = dispatch.run(self.model, self.data[0], self.data[1], self.settings,
                                  **self.run_kwargs, **extra)
        return float(result.accuracy)

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        if not self.due(epoch):
            return
        accuracy = self.robust_accuracy()
        self.history.append((epoch, accuracy))
        if logs is not None:
            logs[self.name] = accuracy
