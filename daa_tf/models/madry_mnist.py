"""The MadryLab MNIST challenge network (``mnist_challenge/model.py``) as a Keras model.

conv5x5x32 SAME + ReLU, maxpool 2x2 SAME, conv5x5x64 SAME + ReLU, maxpool 2x2 SAME, flatten (NHWC
order, as TF1's ``tf.reshape(h, [-1, 7*7*64])``), fc1024 + ReLU, fc10.
"""
from __future__ import annotations

import keras

from daa_tf.models.checkpoint import PathLike, fetch_hint, open_checkpoint
from daa_tf.models.layers import InputConv2D

# (layer name, kernel checkpoint name, bias checkpoint name, kernel shape), in network order.
WEIGHTS = (
    ("conv1", "Variable", "Variable_1", (5, 5, 1, 32)),
    ("conv2", "Variable_2", "Variable_3", (5, 5, 32, 64)),
    ("fc1", "Variable_4", "Variable_5", (7 * 7 * 64, 1024)),
    ("logits", "Variable_6", "Variable_7", (1024, 10)),
)


def build_madry_mnist() -> keras.Model:
    """Untrained net: input ``[N, 784]`` float32 pixels in [0, 1], output logits ``[N, 10]``."""
    x_in = keras.Input(shape=(784,), dtype="float32", name="x")
    h = keras.layers.Reshape((28, 28, 1))(x_in)
    h = InputConv2D(32, 5, padding="same", activation="relu", name="conv1")(h)
    h = keras.layers.MaxPooling2D(2, 2, padding="same")(h)
    h = keras.layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.MaxPooling2D(2, 2, padding="same")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(1024, activation="relu", name="fc1")(h)
    logits = keras.layers.Dense(10, name="logits")(h)
    return keras.Model(x_in, logits, name="madry_mnist")


def load_madry_mnist(model_dir: PathLike) -> keras.Model:
    """MadryLab MNIST net with weights from the TF1 checkpoint in ``model_dir`` (folder or prefix).

    Input ``[N, 784]`` float32 in [0, 1]; output logits ``[N, 10]``.
    """
    ckpt = open_checkpoint(model_dir, fetch_hint("mnist"))
    model = build_madry_mnist()
    for layer, w_name, b_name, shape in WEIGHTS:
        model.get_layer(layer).set_weights([ckpt.get(w_name, shape), ckpt.get(b_name, shape[-1:])])
    return model
