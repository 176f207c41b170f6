"""Adversarial training inside ``model.fit``: :class:`AdversarialTrainer`, a ``keras.Model`` whose
training step replaces the batch (or its first ``fraction``) by adversarial examples of any
:mod:`daa_tf.attacks` attack, computed in the same compiled step (the attack's ``tf.while_loop``
runs inside Keras' train function: no host round trip).

Batch norm. By default the attack runs the classifier in inference mode (moving statistics, no
update of them) and the weight update in training mode (batch statistics), as the ``robustness``
library and TRADES do. MadryLab's CIFAR10 ``train.py`` differs: its only graph is built with
``mode='train'``, so its PGD runs on batch statistics and, with ``updates_collections=None``,
every attack step also moves the moving averages; ``attack_training=True`` reproduces that. The
DAA authors' Fashion-MNIST net calls ``tf.layers.batch_normalization`` with ``training=False``
everywhere (fixed statistics, trained scale and shift): ``update_training=False`` reproduces it.

Seeds. Step ``t`` (the optimizer's ``iterations`` before the update) on replica ``r`` draws its
random start from a stateless seed derived from ``(seed, r, t)`` alone, so a run resumed from a
checkpoint at step ``t`` redraws exactly what the uninterrupted run drew. :func:`training_batches`
does the same for the data order and the CIFAR10 augmentation.

DAA. When the inner attack is DAA-BLOB / DAA-DGF the attacked examples are DAA's particle sets:
consecutive groups of ``particles`` examples of the (per-replica) batch, the last one smaller when
the batch is not a multiple of ``particles``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from daa_tf import attacks, catalogue

TRAIN_TAG, EVAL_TAG, DATA_TAG, AUGMENT_TAG = 1, 2, 3, 4  # independent random streams of a seed


def derived_seed(seed: int, tag: int, *data: Any) -> tf.Tensor:
    """A stateless-RNG seed ``[2]`` int64, a function of ``(seed, tag, *data)`` only."""
    out = tf.constant([int(seed), int(tag)], tf.int64)
    for d in data:
        out = tf.random.experimental.stateless_fold_in(out, tf.cast(d, tf.int64))
    return out


def _replica_id() -> Any:
    """The id of the current replica (0 outside ``tf.distribute``), an int or int32 tensor."""
    ctx = tf.distribute.get_replica_context()
    return 0 if ctx is None else ctx.replica_id_in_sync_group


@keras.saving.register_keras_serializable(package="daa_tf")
class AdversarialTrainer(keras.Model):
    """Adversarial training of ``classifier`` (logits ``[N, C]``) with ``fit``/``evaluate``.

    ``attack``: a catalogue name (``pgd``, ``daa_blob``, ...); ``attack_settings``: that attack's
    keyword arguments (``eps``, ``step_size``, ``steps``, ``loss``, ``random_start``, ``clip_min``,
    ``clip_max``, ``c``, ``particles``, ...; pixel units), validated here. ``fraction`` in (0, 1]:
    the first ``round(fraction * N)`` examples of each batch (at least one) are replaced, the rest
    stay clean (the data pipeline shuffles). ``seed``: the attack's random starts (see the module
    docstring); ``attack_training`` / ``update_training``: batch norm modes (module docstring).
    ``natural_metrics``: also report ``nat_accuracy`` (one extra inference forward pass).

    Logs: ``loss`` (the compiled loss on the trained batch, with regularization), compiled
    metrics (on the trained batch), ``adv_accuracy`` (on the adversarial examples) and
    ``nat_accuracy`` (on the clean batch, before the update). ``evaluate`` attacks whole batches.
    ``compile`` defaults ``loss`` to sparse cross-entropy on logits.
    """

    def __init__(self, classifier: keras.Model, attack: str = "pgd", *, fraction: float = 1.0,
                 seed: Optional[int] = 0, attack_training: bool = False,
                 update_training: bool = True, natural_metrics: bool = True,
                 name: Optional[str] = None, **attack_settings: Any) -> None:
        super().__init__(name=name or f"adversarial_{classifier.name}")
        settings = catalogue.attack_settings(attack, **attack_settings)
        if settings.targeted:
            raise ValueError("adversarial training uses untargeted attacks (targeted=False)")
        if attack not in attacks.ATTACK_FUNCTIONS:
            raise ValueError(f"no attack function for {attack!r}")
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
        self.classifier = classifier
        self.attack = attack
        self.attack_settings = dict(attack_settings)
        self.settings = settings
        self.fraction = float(fraction)
        self.seed = int(seed)
        self.attack_training = bool(attack_training)
        self.update_training = bool(update_training)
        self.natural_metrics = bool(natural_metrics)
        self.adv_accuracy = keras.metrics.SparseCategoricalAccuracy(name="adv_accuracy")
        if self.natural_metrics:
            self.nat_accuracy = keras.metrics.SparseCategoricalAccuracy(name="nat_accuracy")
        # A stable callable for the attack's compiled-loop cache (keyed by the attacked model).
        self._attacked: Callable = (self._classifier_in_training_mode if self.attack_training
                                    else classifier)
        self._whole_batch_attacked = False  # set while tracing test_step (see compute_metrics)
        if classifier.built:
            self.built = True

    def _classifier_in_training_mode(self, x: tf.Tensor) -> tf.Tensor:
        return self.classifier(x, training=True)

    def call(self, x: Any, training: Optional[bool] = None) -> tf.Tensor:
        """The classifier's logits; with ``update_training=False`` always in inference mode."""
        return self.classifier(x, training=bool(training) and self.update_training)

    def compile(self, optimizer: Any = "adam", loss: Any = None, **kwargs: Any) -> None:
        """``keras.Model.compile``; ``loss`` defaults to sparse cross-entropy on logits."""
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def compile_from_config(self, config: dict) -> None:
        """Recompiles a model loaded from a ``.keras`` file (Keras skips overridden compiles)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # ----------------------------------------------------------------------- the inner attack

    def adversarial_count(self, n: Any) -> Any:
        """How many of a batch of ``n`` examples are attacked: ``max(1, round(fraction * n))``."""
        if self.fraction == 1.0:
            return n
        k = tf.cast(tf.round(self.fraction * tf.cast(n, tf.float32)), tf.int32)
        return tf.maximum(k, 1)

    def adversarial_examples(self, x: tf.Tensor, y: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """The attack's examples for ``x`` ``[N, ...]`` (float32, in the pixel box) and labels
        ``y`` ``[N]``, from the stateless ``seed`` ``[2]``; no gradient flows back through them."""
        attack = attacks.ATTACK_FUNCTIONS[self.attack]
        try:
            x_adv = attack(self._attacked, x, y, seed=seed, **self.attack_settings)
        except (NotImplementedError, TypeError) as err:
            if tf.executing_eagerly():
                raise
            raise ValueError(f"the {self.attack} attack cannot run inside a compiled training "
                             f"step ({type(err).__name__}: {err})") from err
        return tf.stop_gradient(x_adv)

    def step_seed(self, tag: int = TRAIN_TAG) -> tf.Tensor:
        """This step's attack seed ``[2]``: from ``(seed, tag, replica, optimizer iterations)``."""
        return derived_seed(self.seed, tag, _replica_id(), self.optimizer.iterations)

    def perturb(self, x: tf.Tensor, y: tf.Tensor, seed: tf.Tensor,
                whole_batch: bool = False) -> tf.Tensor:
        """``x`` with its first :meth:`adversarial_count` examples (all if ``whole_batch``)
        replaced by adversarial ones."""
        if whole_batch or self.fraction == 1.0:
            return self.adversarial_examples(x, y, seed)
        k = self.adversarial_count(tf.shape(x)[0])
        return tf.concat([self.adversarial_examples(x[:k], y[:k], seed), x[k:]], axis=0)

    # ------------------------------------------------------------------------- fit / evaluate

    def _prepare(self, data: Any) -> Tuple[tf.Tensor, Any, tf.Tensor, Any]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:
            raise ValueError("adversarial training needs labels: the data must give (x, y)")
        x = tf.cast(x, tf.float32)
        labels = tf.reshape(y, [-1])
        if self.natural_metrics:
            logits = self.classifier(x, training=False)
            self.nat_accuracy.update_state(labels, logits, sample_weight)
        return x, y, labels, sample_weight

    def train_step(self, data: Any) -> dict:
        x, y, labels, sample_weight = self._prepare(data)
        x_train = self.perturb(x, labels, self.step_seed(TRAIN_TAG))
        return super().train_step(keras.utils.pack_x_y_sample_weight(x_train, y, sample_weight))

    def test_step(self, data: Any) -> dict:
        x, y, labels, sample_weight = self._prepare(data)
        x_adv = self.perturb(x, labels, derived_seed(self.seed, EVAL_TAG, _replica_id()),
                             whole_batch=True)
        self._whole_batch_attacked = True
        try:
            return super().test_step(keras.utils.pack_x_y_sample_weight(x_adv, y, sample_weight))
        finally:
            self._whole_batch_attacked = False

    def compute_metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> dict:
        n = tf.shape(y_pred)[0]
        k = n if self._whole_batch_attacked else self.adversarial_count(n)
        weights = None if sample_weight is None else sample_weight[:k]
        self.adv_accuracy.update_state(tf.reshape(y, [-1])[:k], y_pred[:k], weights)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    # -------------------------------------------------------------------------- serialization

    def get_config(self) -> dict:
        return {"classifier": keras.saving.serialize_keras_object(self.classifier),
                "attack": self.attack, "fraction": self.fraction, "seed": self.seed,
                "attack_training": self.attack_training, "update_training": self.update_training,
                "natural_metrics": self.natural_metrics, "name": self.name,
                **self.attack_settings}

    @classmethod
    def from_config(cls, config: dict, custom_objects: Any = None) -> "AdversarialTrainer":
        config = dict(config)
        classifier = keras.saving.deserialize_keras_object(config.pop("classifier"),
                                                           custom_objects=custom_objects)
        return cls(classifier, **config)


class TF1Momentum(keras.optimizers.Optimizer):
    """``tf.compat.v1.train.MomentumOptimizer`` (MadryLab's CIFAR10 optimizer) as a Keras
    optimizer: ``a <- momentum * a + g``; ``w <- w - lr * a``. Unlike ``keras.optimizers.SGD``,
    whose buffer holds ``lr``-scaled steps, ``a`` is in gradient units: a learning-rate drop takes
    effect at once, and ``a`` is the TF1 slot ``<variable>/Momentum`` of the released checkpoints.
    """

    def __init__(self, learning_rate: Any = 0.1, momentum: float = 0.9,
                 name: str = "tf1_momentum", **kwargs: Any) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = float(momentum)

    def build(self, var_list: list) -> None:
        if self.built:
            return
        super().build(var_list)
        self.accumulators = self.add_optimizer_variables(var_list, "accumulator")

    def slot(self, variable: Any) -> keras.Variable:
        """The accumulator ``a`` of trainable ``variable``."""
        return self.accumulators[self._get_variable_index(variable)]

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        lr = keras.ops.cast(learning_rate, variable.dtype)
        accumulator = self.slot(variable)
        self.assign(accumulator, keras.ops.add(keras.ops.multiply(accumulator, self.momentum),
                                               keras.ops.cast(gradient, variable.dtype)))
        self.assign_sub(variable, keras.ops.multiply(accumulator, lr))

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum}


# ------------------------------------------------------------------------------ data pipeline


def _storable(x: np.ndarray) -> np.ndarray:
    """``x`` as uint8 when that is lossless (CIFAR10's 0..255 floats), else float32."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    if x.size and x.min() >= 0 and x.max() <= 255 and np.array_equal(x, np.round(x)):
        return x.astype(np.uint8)
    return x.astype(np.float32)


def augment_cifar10(x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """MadryLab's ``cifar10_input.py`` augmentation of ``x`` ``[N, 32, 32, 3]``, per image:
    zero-pad to 36x36 (2 pixels a side, ``resize_image_with_crop_or_pad``), random 32x32 crop,
    random left-right flip. Stateless: ``seed`` ``[2]`` fixes the draw."""
    n = tf.shape(x)[0]
    padded = tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]])
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    offsets = tf.random.stateless_uniform([n, 2], crop_seed, 0, 5, dtype=tf.int32)
    flips = tf.random.stateless_uniform([n], flip_seed, 0, 2, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(32)[None]
    cols = offsets[:, 1:] + tf.range(32)[None]
    cropped = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    return tf.where(tf.reshape(flips > 0, [-1, 1, 1, 1]), tf.reverse(cropped, [2]), cropped)


def training_batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int,
                     start_step: int = 0, stop_step: Optional[int] = None,
                     augment: Optional[Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = None
                     ) -> tf.data.Dataset:
    """The batches of steps ``start_step .. stop_step - 1`` (endless if None) as a
    ``tf.data.Dataset`` of ``(x [B, ...] float32, y [B] int64)``.

    Step ``t`` takes position ``t mod E`` of epoch ``t div E`` (``E = len(x) div batch_size``;
    the remainder of each epoch is skipped, as MadryLab's ``get_next_batch``), each epoch a
    stateless permutation of the data from ``(seed, epoch)``; ``augment(x_batch, seed [2])``
    gets a seed from ``(seed, t)``. So the batch of a step depends on ``(seed, t)`` only and a
    resumed run sees the same batches as an uninterrupted one.
    """
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x holds {n} examples but y holds {len(y)}")
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}] (the data size), got {batch_size}")
    per_epoch = n // batch_size
    images = tf.constant(_storable(x))
    labels = tf.constant(np.asarray(y).astype(np.int64))

    def batch(step: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        epoch, position = step // per_epoch, step % per_epoch
        slots = position * batch_size + tf.range(batch_size, dtype=tf.int64)
        order = tf.random.experimental.index_shuffle(
            slots, seed=derived_seed(seed, DATA_TAG, epoch), max_index=tf.constant(n - 1,
                                                                                   tf.int64))
        xb = tf.cast(tf.gather(images, order), tf.float32)
        if augment is not None:
            xb = augment(xb, derived_seed(seed, AUGMENT_TAG, step))
        return xb, tf.gather(labels, order)

    stop = np.iinfo(np.int64).max if stop_step is None else int(stop_step)
    steps = tf.data.Dataset.range(int(start_step), stop)
    return steps.map(batch, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True).prefetch(tf.data.AUTOTUNE)
