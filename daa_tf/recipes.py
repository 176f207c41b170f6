"""The released models' training recipes, for :class:`daa_tf.training.AdversarialTrainer`:
MadryLab's MNIST and CIFAR10 ``config.json`` and the DAA authors' Fashion-MNIST one (the net and
its initialisation, the optimizer and learning rate, batch norm, augmentation, the inner attack).

- ``mnist``: MadryLab's net, Adam 1e-4, 100000 steps of batch 50, PGD 40 x 0.01 at eps 0.3;
- ``cifar10``: MadryLab's ResNet (weight decay 0.0002, batch-norm decay 0.9), TF1 momentum 0.9 on
  a learning rate of 0.1 / 0.01 / 0.001 from step 40000 / 60000, 80000 steps of batch 128 with
  ``cifar10_input.py``'s augmentation, PGD 10 x 2 at eps 8;
- ``fashion_mnist``: the DAA authors' net (batch norm on its fixed statistics), Adam 1e-4, 100000
  steps of batch 50, PGD 30 x 0.01 at eps 0.2.

All with MadryLab's initialisation (:func:`madry_initialise`) and a random start; pixel units.
Importing this module imports no TensorFlow (command lines read :data:`RECIPES` before parsing
their flags); the builders import Keras on use. ``python -m challenges.train`` is the command over this module.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

CIFAR10_FILTERS: Tuple[int, int, int, int] = (16, 160, 320, 640)  # MadryLab's wide release
CIFAR10_SCHEDULE = ((40000, 60000), (0.1, 0.01, 0.001))  # step boundaries, learning rates
CIFAR10_WEIGHT_DECAY = 0.0002  # on sum(w^2) / 2 of every DW kernel (tf.nn.l2_loss)
ADAM_LEARNING_RATE = 1e-4      # MNIST and Fashion-MNIST


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One release's training ``config.json`` (pixel units). ``layout``: the checkpoint layout
    (:data:`daa_tf.models.checkpoint_writer.LAYOUTS`); ``epsilon``, ``steps``, ``step_size``: the
    inner attack's; ``update_batch_norm``: whether the weight update runs batch norm in training
    mode (False: fixed statistics, the Fashion-MNIST net); ``augment``: CIFAR10's augmentation
    (:func:`daa_tf.training.augment_cifar10`)."""

    layout: str
    train_steps: int
    batch_size: int
    epsilon: float
    steps: int
    step_size: float
    output_steps: int = 100
    checkpoint_steps: int = 300
    update_batch_norm: bool = True
    augment: bool = False


RECIPES: Dict[str, Recipe] = {
    "mnist": Recipe("madry_mnist", 100000, 50, 0.3, 40, 0.01),
    "cifar10": Recipe("madry_cifar10", 80000, 128, 8.0, 10, 2.0, checkpoint_steps=10000,
                      augment=True),
    "fashion_mnist": Recipe("daa_fashion_mnist", 100000, 50, 0.2, 30, 0.01,
                            update_batch_norm=False),
}


def get_recipe(challenge: str) -> Recipe:
    """The recipe of ``challenge``; ValueError naming the choices otherwise."""
    try:
        return RECIPES[challenge]
    except KeyError:
        raise ValueError(f"no training recipe for {challenge!r}: use one of "
                         f"{', '.join(RECIPES)}") from None


def madry_initialise(model: Any, challenge: str, seed: int) -> None:
    """The releases' initialisers, in place: MNIST / Fashion-MNIST weights truncated normal (sd
    0.1), biases 0.1; CIFAR10 conv ``DW`` normal (sd ``sqrt(2 / (k*k*out))``), ``logit/DW``
    uniform unit scaling (``+-sqrt(3 / fan_in)``), biases 0; batch norm 1, 0 and statistics 0, 1.
    Layer ``i`` draws from ``seed + i``."""
    import keras
    import numpy as np

    for i, layer in enumerate(model.layers):
        init = None
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and challenge != "cifar10":
            init = keras.initializers.TruncatedNormal(stddev=0.1, seed=seed + i)
            layer.bias.assign(np.full(layer.bias.shape, 0.1, np.float32))
        elif isinstance(layer, keras.layers.Conv2D):
            k, _, _, out = layer.kernel.shape
            init = keras.initializers.RandomNormal(stddev=float(np.sqrt(2.0 / (k * k * out))),
                                                   seed=seed + i)
        elif isinstance(layer, keras.layers.Dense):
            limit = float(np.sqrt(3.0 / layer.kernel.shape[0]))
            init = keras.initializers.RandomUniform(-limit, limit, seed=seed + i)
            layer.bias.assign(np.zeros(layer.bias.shape, np.float32))
        if init is not None:
            layer.kernel.assign(init(layer.kernel.shape))


def build_classifier(challenge: str, seed: int,
                     resnet_filters: Sequence[int] = CIFAR10_FILTERS) -> Any:
    """The challenge's untrained Keras net (logits ``[N, 10]``) with MadryLab's initialisation
    (:func:`madry_initialise`); for CIFAR10 the widths ``resnet_filters`` (4 of them), batch-norm
    decay 0.9 and the weight decay as L2 regularizers on the kernels."""
    import keras

    from daa_tf.models import daa_fashion_mnist, madry_cifar10, madry_mnist
    get_recipe(challenge)
    if challenge == "mnist":
        model = madry_mnist.build_madry_mnist()
    elif challenge == "fashion_mnist":
        model = daa_fashion_mnist.build_daa_fashion_mnist()
    else:
        config = madry_cifar10.ResNetConfig(filters=tuple(resnet_filters))
        model = madry_cifar10.build_madry_cifar10(config)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
            elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
                layer.kernel.regularizer = keras.regularizers.L2(CIFAR10_WEIGHT_DECAY / 2)
    madry_initialise(model, challenge, seed)
    return model


def tf1_adam(learning_rate: float = ADAM_LEARNING_RATE) -> Any:
    """Keras Adam with TF1's ``epsilon`` (1e-8; Keras' default is 1e-7)."""
    import keras

    return keras.optimizers.Adam(learning_rate, epsilon=1e-8)


def make_optimizer(challenge: str) -> Any:
    """Adam 1e-4 (:func:`tf1_adam`) for MNIST and Fashion-MNIST; for CIFAR10, TF1 momentum 0.9
    (:class:`daa_tf.training.TF1Momentum`) on MadryLab's piecewise-constant learning rate
    (:data:`CIFAR10_SCHEDULE`)."""
    import keras

    from daa_tf.training import TF1Momentum
    get_recipe(challenge)
    if challenge == "cifar10":
        boundaries, values = CIFAR10_SCHEDULE
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(list(boundaries),
                                                                     list(values))
        return TF1Momentum(schedule, momentum=0.9)
    return tf1_adam()


def make_trainer(challenge: str, attack: str, attack_settings: Mapping[str, Any], *, seed: int,
                 fraction: float = 1.0, attack_training: bool = False,
                 resnet_filters: Sequence[int] = CIFAR10_FILTERS) -> Tuple[Any, Any]:
    """``(classifier, trainer)``: :func:`build_classifier` and an
    :class:`~daa_tf.training.AdversarialTrainer` of it with ``attack`` (its keyword arguments
    ``attack_settings``; pixel units), ``fraction``, ``seed``, ``attack_training`` and the
    recipe's batch-norm mode, compiled with :func:`make_optimizer`. Build it under a
    ``tf.distribute`` strategy's scope to train on its devices."""
    from daa_tf import training

    recipe = get_recipe(challenge)
    classifier = build_classifier(challenge, seed, resnet_filters)
    trainer = training.AdversarialTrainer(
        classifier, attack, fraction=fraction, seed=seed, attack_training=attack_training,
        update_training=recipe.update_batch_norm, **attack_settings)
    trainer.compile(make_optimizer(challenge))
    return classifier, trainer


def training_batches(challenge: str, x: Any, y: Any, batch_size: int, *, seed: int,
                     start_step: int = 0, stop_step: Optional[int] = None) -> Any:
    """:func:`daa_tf.training.training_batches` of ``(x, y)`` with the recipe's augmentation
    (CIFAR10's; none for the others)."""
    from daa_tf import training

    augment = training.augment_cifar10 if get_recipe(challenge).augment else None
    return training.training_batches(x, y, batch_size, seed=seed, start_step=start_step,
                                     stop_step=stop_step, augment=augment)
