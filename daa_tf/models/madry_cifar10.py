"""The MadryLab CIFAR10 challenge ResNet (``cifar10_challenge/model.py``) as a Keras model.

Per-image standardization, init conv 3x3x16, 3 stages of residual units (strides 1, 2, 2), leaky
ReLU 0.1, batch norm in inference mode (epsilon 1e-3, ``tf.contrib.layers.batch_norm`` defaults),
shortcut = average pool (window = stride) + zero channel padding when the width changes, final
batch norm + leaky ReLU + global average pool, fc10. All convolutions 'SAME' without bias.

Keras layers are named after the checkpoint scopes with '/' replaced by '.', e.g. the conv
``unit_1_0/sub1/conv1/DW`` is layer ``unit_1_0.sub1.conv1``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import keras
from keras import ops

from daa_tf.models.checkpoint import CheckpointReader, PathLike, fetch_hint, open_checkpoint

BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")  # keras set_weights order


@dataclass(frozen=True)
class ResNetConfig:
    """Widths ``filters`` = (init conv, stage 1, 2, 3); MadryLab's release: 16, 160, 320, 640."""

    filters: Tuple[int, int, int, int] = (16, 160, 320, 640)
    units_per_stage: int = 5
    strides: Tuple[int, int, int] = (1, 2, 2)
    leakiness: float = 0.1
    bn_epsilon: float = 1e-3

    def __post_init__(self) -> None:
        for a, b in zip(self.filters, self.filters[1:]):
            if b < a or (b - a) % 2:
                raise ValueError(f"filters {self.filters}: each stage must widen by an even "
                                 "number of channels (zero padding splits it in two halves)")


class PerImageStandardization(keras.layers.Layer):
    """``tf.image.per_image_standardization`` of each ``[H, W, C]`` image: (x - mean) / std.

    std is floored at 1/sqrt(H*W*C) (as TF does), written so that its gradient stays finite.
    """

    def call(self, x):
        n = math.prod(x.shape[1:])
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        var = ops.mean(ops.square(x - mean), axis=(1, 2, 3), keepdims=True)
        return (x - mean) / ops.sqrt(ops.maximum(var, 1.0 / n))


class ChannelPad(keras.layers.Layer):
    """Zero-pads the channel axis of NHWC tensors by ``pad`` on each side."""

    def __init__(self, pad: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pad = pad

    def call(self, x):
        return ops.pad(x, [[0, 0], [0, 0], [0, 0], [self.pad, self.pad]])

    def get_config(self) -> dict:
        return {**super().get_config(), "pad": self.pad}


def _bn(x, name: str, cfg: ResNetConfig):
    return keras.layers.BatchNormalization(epsilon=cfg.bn_epsilon, name=name)(x)


def _act(x, cfg: ResNetConfig):
    return keras.layers.LeakyReLU(negative_slope=cfg.leakiness)(x)


def _conv(x, name: str, filters: int, stride: int):
    return keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                               name=name)(x)


def _residual(x, scope: str, in_f: int, out_f: int, stride: int, activate_before: bool,
              cfg: ResNetConfig):
    if activate_before:
        x = _act(_bn(x, f"{scope}.shared_activation.BatchNorm", cfg), cfg)
        orig = x
    else:
        orig = x
        x = _act(_bn(x, f"{scope}.residual_only_activation.BatchNorm", cfg), cfg)
    x = _conv(x, f"{scope}.sub1.conv1", out_f, stride)
    x = _act(_bn(x, f"{scope}.sub2.BatchNorm", cfg), cfg)
    x = _conv(x, f"{scope}.sub2.conv2", out_f, 1)
    if in_f != out_f:
        if stride > 1:
            orig = keras.layers.AveragePooling2D(stride, stride, padding="valid")(orig)
        orig = ChannelPad((out_f - in_f) // 2)(orig)
    return keras.layers.Add()([x, orig])


def build_madry_cifar10(cfg: ResNetConfig = ResNetConfig()) -> keras.Model:
    """Untrained net: input ``[N, 32, 32, 3]`` float32 pixels in [0, 255], logits ``[N, 10]``."""
    x_in = keras.Input(shape=(32, 32, 3), dtype="float32", name="x")
    x = PerImageStandardization(name="input.standardize")(x_in)
    x = _conv(x, "input.init_conv", cfg.filters[0], 1)
    for stage in range(3):
        in_f, out_f = cfg.filters[stage], cfg.filters[stage + 1]
        for unit in range(cfg.units_per_stage):
            first = unit == 0
            x = _residual(x, f"unit_{stage + 1}_{unit}", in_f if first else out_f, out_f,
                          cfg.strides[stage] if first else 1, first and stage == 0, cfg)
    x = _act(_bn(x, "unit_last.BatchNorm", cfg), cfg)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(10, name="logit")(x)
    return keras.Model(x_in, logits, name="madry_cifar10")


def config_from_checkpoint(ckpt: CheckpointReader) -> ResNetConfig:
    """Widths and units per stage read from the checkpoint's variable shapes."""
    widths = [ckpt.shape("input/init_conv/DW")[-1]]
    widths += [ckpt.shape(f"unit_{s}_0/sub1/conv1/DW")[-1] for s in (1, 2, 3)]
    units = 1
    while f"unit_1_{units}/sub1/conv1/DW" in ckpt:
        units += 1
    return ResNetConfig(filters=tuple(widths), units_per_stage=units)


def load_madry_cifar10(model_dir: PathLike) -> keras.Model:
    """MadryLab CIFAR10 ResNet with weights from the TF1 checkpoint in ``model_dir``.

    Widths come from the checkpoint (released ``[16, 160, 320, 640]``, narrow ``[16, 16, 32, 64]``
    and others load alike). Input ``[N, 32, 32, 3]`` float32 in [0, 255] (per-image
    standardization is inside the model); output logits ``[N, 10]``. Batch norm always uses the
    stored statistics (call with ``training=False``, the default of ``model(x)``).
    """
    ckpt = open_checkpoint(model_dir, fetch_hint("cifar10"))
    model = build_madry_cifar10(config_from_checkpoint(ckpt))
    for layer in model.layers:
        scope = layer.name.replace(".", "/")
        if isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([ckpt.get(f"{scope}/DW", layer.kernel.shape)])
        elif isinstance(layer, keras.layers.BatchNormalization):
            width = (layer.gamma.shape[0],)
            layer.set_weights([ckpt.get(f"{scope}/{v}", width) for v in BN_VARIABLES])
        elif isinstance(layer, keras.layers.Dense):
            layer.set_weights([ckpt.get(f"{scope}/DW", layer.kernel.shape),
                               ckpt.get(f"{scope}/biases", layer.bias.shape)])
    return model
