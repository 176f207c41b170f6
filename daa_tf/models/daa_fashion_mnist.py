"""The DAA paper's Fashion-MNIST network (the authors' ``fashion-mnist-master/model.py``).

conv5x5x32 + ReLU, conv5x5x32 + ReLU, maxpool 2x2, conv3x3x64 + ReLU, conv3x3x64 + ReLU, maxpool 2x2
(all SAME), flatten (NHWC order), fc1024 + ReLU, batch norm (after the ReLU, inference mode with
the stored moving statistics, epsilon 1e-3: ``tf.layers.batch_normalization`` defaults), fc10.
"""
from __future__ import annotations

import keras

from daa_tf.models.checkpoint import PathLike, fetch_hint, open_checkpoint
from daa_tf.models.layers import InputConv2D

BN_EPSILON = 1e-3
BN_PREFIX = "batch_normalization/"

# (layer name, kernel checkpoint name, bias checkpoint name, kernel shape), in network order.
WEIGHTS = (
    ("conv1", "Variable", "Variable_1", (5, 5, 1, 32)),
    ("conv2", "Variable_2", "Variable_3", (5, 5, 32, 32)),
    ("conv3", "Variable_4", "Variable_5", (3, 3, 32, 64)),
    ("conv4", "Variable_6", "Variable_7", (3, 3, 64, 64)),
    ("fc1", "Variable_8", "Variable_9", (7 * 7 * 64, 1024)),
    ("logits", "Variable_10", "Variable_11", (1024, 10)),
)


def build_daa_fashion_mnist() -> keras.Model:
    """Untrained net: input ``[N, 784]`` float32 pixels in [0, 1], output logits ``[N, 10]``."""
    x_in = keras.Input(shape=(784,), dtype="float32", name="x")
    h = keras.layers.Reshape((28, 28, 1))(x_in)
    h = InputConv2D(32, 5, padding="same", activation="relu", name="conv1")(h)
    h = keras.layers.Conv2D(32, 5, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.MaxPooling2D(2, 2, padding="same")(h)
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(h)
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv4")(h)
    h = keras.layers.MaxPooling2D(2, 2, padding="same")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(1024, activation="relu", name="fc1")(h)
    h = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="bn")(h)
    logits = keras.layers.Dense(10, name="logits")(h)
    return keras.Model(x_in, logits, name="daa_fashion_mnist")


def load_daa_fashion_mnist(model_dir: PathLike) -> keras.Model:
    """DAA Fashion-MNIST net with weights from the TF1 checkpoint in ``model_dir``.

    Input ``[N, 784]`` float32 in [0, 1]; output logits ``[N, 10]``. Batch norm always uses the
    stored statistics (call the model with ``training=False``, the default of ``model(x)``).
    """
    ckpt = open_checkpoint(model_dir, fetch_hint(None))
    model = build_daa_fashion_mnist()
    for layer, w_name, b_name, shape in WEIGHTS:
        model.get_layer(layer).set_weights([ckpt.get(w_name, shape), ckpt.get(b_name, shape[-1:])])
    bn = [ckpt.get(BN_PREFIX + name, (1024,))
          for name in ("gamma", "beta", "moving_mean", "moving_variance")]
    model.get_layer("bn").set_weights(bn)
    return model
