"""The Wong & Kolter (2018) provably robust MNIST network, from its PyTorch state dict saved as npz.

conv4x4/2 pad 1 (16) + ReLU, conv4x4/2 pad 1 (32) + ReLU, flatten in C,H,W order (PyTorch's),
fc100 + ReLU, fc10. PyTorch kernels are OIHW (converted to HWIO), linear weights ``[out, in]``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import keras
import numpy as np

PathLike = Union[str, os.PathLike]

# (layer name, state-dict key prefix, PyTorch weight shape), in network order.
WEIGHTS = (
    ("conv1", "0", (16, 1, 4, 4)),
    ("conv2", "2", (32, 16, 4, 4)),
    ("fc1", "5", (100, 32 * 7 * 7)),
    ("logits", "7", (10, 100)),
)


def build_wong_kolter_mnist() -> keras.Model:
    """Untrained net: input ``[N, 784]`` float32 pixels in [0, 1], output logits ``[N, 10]``."""
    x_in = keras.Input(shape=(784,), dtype="float32", name="x")
    h = keras.layers.Reshape((28, 28, 1))(x_in)
    h = keras.layers.ZeroPadding2D(1)(h)
    h = keras.layers.Conv2D(16, 4, strides=2, padding="valid", activation="relu", name="conv1")(h)
    h = keras.layers.ZeroPadding2D(1)(h)
    h = keras.layers.Conv2D(32, 4, strides=2, padding="valid", activation="relu", name="conv2")(h)
    h = keras.layers.Permute((3, 1, 2))(h)  # NHWC -> NCHW so that flatten matches PyTorch
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(100, activation="relu", name="fc1")(h)
    logits = keras.layers.Dense(10, name="logits")(h)
    return keras.Model(x_in, logits, name="wong_kolter_mnist")


def _tensor(state: dict, key: str, shape: tuple, source: Path) -> np.ndarray:
    if key not in state:
        raise ValueError(f"{source}: no array {key!r} (expected shape {list(shape)}); it holds "
                         f"{sorted(state)}")
    value = np.asarray(state[key], dtype=np.float32)
    if value.shape != tuple(shape):
        raise ValueError(f"{source}: array {key!r} has shape {list(value.shape)}, expected "
                         f"{list(shape)}")
    return value


def load_wong_kolter_mnist(npz_path: PathLike) -> keras.Model:
    """Wong-Kolter MNIST net from ``npz_path`` (state dict as arrays ``0.weight``, ``0.bias``, ...).

    Input ``[N, 784]`` float32 in [0, 1]; output logits ``[N, 10]``.
    """
    source = Path(npz_path)
    if not source.is_file():
        raise FileNotFoundError(f"no Wong-Kolter npz at {source}: save the PyTorch state dict's "
                                "tensors there with numpy.savez (keys '0.weight', '0.bias', ...)")
    try:
        f = np.load(source)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{source} is not a readable npz file ({err})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{source} is not an npz archive of named arrays")
    with f:
        state = {k: f[k] for k in f.files}
    model = build_wong_kolter_mnist()
    for layer, key, shape in WEIGHTS:
        w = _tensor(state, f"{key}.weight", shape, source)
        b = _tensor(state, f"{key}.bias", shape[:1], source)
        w = w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T  # OIHW -> HWIO, [out,in] -> [in,out]
        model.get_layer(layer).set_weights([w, b])
    return model
