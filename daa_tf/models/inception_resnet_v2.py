"""TF-slim's Inception-ResNet-v2 (``research/slim/nets/inception_resnet_v2.py``) as a Keras model.

The weights are the ensemble-adversarially-trained release of Tramer et al. (2018),
``ens_adv_inception_resnet_v2.ckpt`` (a TF1 name-based checkpoint, 1001 classes, class 0 =
background). Every conv is followed by batch norm (stored statistics, epsilon 0.001, no gamma) and
ReLU, except the residual branches' ``Conv2d_1x1`` (bias, no norm, no activation). Residual scales:
block35 0.17, block17 0.10, block8 0.20; the last ``Block8`` has scale 1 and no ReLU. Dropout is
omitted (inactive in inference).

Each Keras layer is named after its slim scope without the ``InceptionResnetV2/`` prefix, with '/'
replaced by '.': the conv ``InceptionResnetV2/Repeat/block35_3/Branch_2/Conv2d_0a_1x1/weights`` is
layer ``Repeat.block35_3.Branch_2.Conv2d_0a_1x1``, its batch norm ``...Conv2d_0a_1x1.BatchNorm``.
:func:`slim_variables` derives every checkpoint name from these layer names, so the weights are
mapped by name, never by order.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple, Union

import keras

from daa_tf.models.checkpoint import CheckpointReader, PathLike, open_checkpoint

SCOPE = "InceptionResnetV2"
IMAGE_SIZE = 299
NUM_CLASSES = 1001
BN_EPSILON = 1e-3
FETCH_HINT = ("download it with `python -m challenges.fetch_model --challenge=imagenet "
              "--model=ens_adv_inception_resnet_v2` (or unpack "
              "ens_adv_inception_resnet_v2_2017_08_18.tar.gz there by hand)")

Kernel = Union[int, Tuple[int, int]]
# (slim scope, filters, kernel) of each branch's convs, in order; all stride 1, 'SAME'.
Branches = Sequence[Sequence[Tuple[str, int, Kernel]]]
BLOCK35: Branches = ([("Conv2d_1x1", 32, 1)],
                     [("Conv2d_0a_1x1", 32, 1), ("Conv2d_0b_3x3", 32, 3)],
                     [("Conv2d_0a_1x1", 32, 1), ("Conv2d_0b_3x3", 48, 3), ("Conv2d_0c_3x3", 64, 3)])
BLOCK17: Branches = ([("Conv2d_1x1", 192, 1)],
                     [("Conv2d_0a_1x1", 128, 1), ("Conv2d_0b_1x7", 160, (1, 7)),
                      ("Conv2d_0c_7x1", 192, (7, 1))])
BLOCK8: Branches = ([("Conv2d_1x1", 192, 1)],
                    [("Conv2d_0a_1x1", 192, 1), ("Conv2d_0b_1x3", 224, (1, 3)),
                     ("Conv2d_0c_3x1", 256, (3, 1))])


@keras.saving.register_keras_serializable(package="daa_tf")
class ScaledResidual(keras.layers.Layer):
    """``net + scale * up`` for inputs ``[net, up]`` of one shape (slim's ``net += scale * up``)."""

    def __init__(self, scale: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        net, up = inputs
        return net + self.scale * up

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}


def _name(scope: str) -> str:
    return scope.replace("/", ".")


def _conv_bn(x, scope: str, filters: int, kernel: Kernel, strides: int = 1,
             padding: str = "same"):
    """slim.conv2d with the arg scope's batch norm (no bias, no gamma) and ReLU."""
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                            name=_name(scope))(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, scale=False,
                                        name=_name(f"{scope}/BatchNorm"))(x)
    return keras.layers.ReLU(name=_name(f"{scope}/Relu"))(x)


def _concat(tensors: List, scope: str):
    return keras.layers.Concatenate(axis=-1, name=_name(f"{scope}/concat"))(tensors)


def _residual_block(net, scope: str, branches: Branches, scale: float, activate: bool = True):
    """block35 / block17 / block8: branches, concat, 1x1 conv with bias, ``net + scale * up``."""
    outs = []
    for b, convs in enumerate(branches):
        x = net
        for conv, filters, kernel in convs:
            x = _conv_bn(x, f"{scope}/Branch_{b}/{conv}", filters, kernel)
        outs.append(x)
    up = keras.layers.Conv2D(net.shape[-1], 1, padding="same", use_bias=True,
                             name=_name(f"{scope}/Conv2d_1x1"))(_concat(outs, scope))
    net = ScaledResidual(scale, name=_name(f"{scope}/residual"))([net, up])
    return keras.layers.ReLU(name=_name(f"{scope}/Relu"))(net) if activate else net


def _stem(x):
    """Conv2d_1a_3x3 .. Mixed_5b: ``[N, 299, 299, 3]`` in [-1, 1] -> ``[N, 35, 35, 320]``."""
    x = _conv_bn(x, "Conv2d_1a_3x3", 32, 3, strides=2, padding="valid")
    x = _conv_bn(x, "Conv2d_2a_3x3", 32, 3, padding="valid")
    x = _conv_bn(x, "Conv2d_2b_3x3", 64, 3)
    x = keras.layers.MaxPooling2D(3, 2, padding="valid", name="MaxPool_3a_3x3")(x)
    x = _conv_bn(x, "Conv2d_3b_1x1", 80, 1, padding="valid")
    x = _conv_bn(x, "Conv2d_4a_3x3", 192, 3, padding="valid")
    x = keras.layers.MaxPooling2D(3, 2, padding="valid", name="MaxPool_5a_3x3")(x)
    b0 = _conv_bn(x, "Mixed_5b/Branch_0/Conv2d_1x1", 96, 1)
    b1 = _conv_bn(x, "Mixed_5b/Branch_1/Conv2d_0a_1x1", 48, 1)
    b1 = _conv_bn(b1, "Mixed_5b/Branch_1/Conv2d_0b_5x5", 64, 5)
    b2 = _conv_bn(x, "Mixed_5b/Branch_2/Conv2d_0a_1x1", 64, 1)
    b2 = _conv_bn(b2, "Mixed_5b/Branch_2/Conv2d_0b_3x3", 96, 3)
    b2 = _conv_bn(b2, "Mixed_5b/Branch_2/Conv2d_0c_3x3", 96, 3)
    # TF's 'SAME' average pooling divides by the number of valid (unpadded) cells, as slim's does.
    b3 = keras.layers.AveragePooling2D(3, 1, padding="same",
                                       name="Mixed_5b.Branch_3.AvgPool_0a_3x3")(x)
    b3 = _conv_bn(b3, "Mixed_5b/Branch_3/Conv2d_0b_1x1", 64, 1)
    return _concat([b0, b1, b2, b3], "Mixed_5b")


def _mixed_6a(x):
    """35x35x320 -> 17x17x1088."""
    b0 = _conv_bn(x, "Mixed_6a/Branch_0/Conv2d_1a_3x3", 384, 3, strides=2, padding="valid")
    b1 = _conv_bn(x, "Mixed_6a/Branch_1/Conv2d_0a_1x1", 256, 1)
    b1 = _conv_bn(b1, "Mixed_6a/Branch_1/Conv2d_0b_3x3", 256, 3)
    b1 = _conv_bn(b1, "Mixed_6a/Branch_1/Conv2d_1a_3x3", 384, 3, strides=2, padding="valid")
    b2 = keras.layers.MaxPooling2D(3, 2, padding="valid",
                                   name="Mixed_6a.Branch_2.MaxPool_1a_3x3")(x)
    return _concat([b0, b1, b2], "Mixed_6a")


def _mixed_7a(x):
    """17x17x1088 -> 8x8x2080."""
    b0 = _conv_bn(x, "Mixed_7a/Branch_0/Conv2d_0a_1x1", 256, 1)
    b0 = _conv_bn(b0, "Mixed_7a/Branch_0/Conv2d_1a_3x3", 384, 3, strides=2, padding="valid")
    b1 = _conv_bn(x, "Mixed_7a/Branch_1/Conv2d_0a_1x1", 256, 1)
    b1 = _conv_bn(b1, "Mixed_7a/Branch_1/Conv2d_1a_3x3", 288, 3, strides=2, padding="valid")
    b2 = _conv_bn(x, "Mixed_7a/Branch_2/Conv2d_0a_1x1", 256, 1)
    b2 = _conv_bn(b2, "Mixed_7a/Branch_2/Conv2d_0b_3x3", 288, 3)
    b2 = _conv_bn(b2, "Mixed_7a/Branch_2/Conv2d_1a_3x3", 320, 3, strides=2, padding="valid")
    b3 = keras.layers.MaxPooling2D(3, 2, padding="valid",
                                   name="Mixed_7a.Branch_3.MaxPool_1a_3x3")(x)
    return _concat([b0, b1, b2, b3], "Mixed_7a")


def _aux_head(x, num_classes: int):
    """slim's AuxLogits on PreAuxLogits (17x17x1088, after the 20 block17): ``[N, num_classes]``."""
    x = keras.layers.AveragePooling2D(5, 3, padding="valid", name="AuxLogits.Conv2d_1a_3x3")(x)
    x = _conv_bn(x, "AuxLogits/Conv2d_1b_1x1", 128, 1)
    x = _conv_bn(x, "AuxLogits/Conv2d_2a_5x5", 768, tuple(x.shape[1:3]), padding="valid")
    x = keras.layers.Flatten(name="AuxLogits.Flatten")(x)
    return keras.layers.Dense(num_classes, name="AuxLogits.Logits")(x)


def build_inception_resnet_v2(num_classes: int = NUM_CLASSES,
                              aux_logits: bool = False) -> keras.Model:
    """Untrained Inception-ResNet-v2.

    Input ``[N, 299, 299, 3]`` float32 pixels in [0, 1] (mapped to [-1, 1] inside the model by
    ``x * 2 - 1``); output logits ``[N, num_classes]``. With ``aux_logits=True`` the model has two
    outputs, ``[logits, aux_logits]`` (the auxiliary head, both ``[N, num_classes]``).
    """
    x_in = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype="float32", name="x")
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(x_in)
    x = _stem(x)
    for i in range(1, 11):
        x = _residual_block(x, f"Repeat/block35_{i}", BLOCK35, 0.17)
    x = _mixed_6a(x)
    for i in range(1, 21):
        x = _residual_block(x, f"Repeat_1/block17_{i}", BLOCK17, 0.10)
    pre_aux = x
    x = _mixed_7a(x)
    for i in range(1, 10):
        x = _residual_block(x, f"Repeat_2/block8_{i}", BLOCK8, 0.20)
    x = _residual_block(x, "Block8", BLOCK8, 1.0, activate=False)
    x = _conv_bn(x, "Conv2d_7b_1x1", 1536, 1)
    x = keras.layers.GlobalAveragePooling2D(name="Logits.AvgPool_1a_8x8")(x)
    logits = keras.layers.Dense(num_classes, name="Logits.Logits")(x)
    if aux_logits:
        return keras.Model(x_in, [logits, _aux_head(pre_aux, num_classes)],
                           name="inception_resnet_v2_with_aux")
    return keras.Model(x_in, logits, name="inception_resnet_v2")


def slim_variables(model: keras.Model) -> Dict[str, keras.Variable]:
    """The model's variables keyed by their TF-slim checkpoint names (derived from layer names).

    E.g. ``InceptionResnetV2/Conv2d_1a_3x3/weights`` -> that conv's kernel,
    ``InceptionResnetV2/Conv2d_1a_3x3/BatchNorm/moving_mean`` -> its batch norm's moving mean.
    Raises ValueError for a layer with weights of an unexpected kind.
    """
    out: Dict[str, keras.Variable] = {}
    for layer in model.layers:
        scope = f"{SCOPE}/{layer.name.replace('.', '/')}"
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            out[f"{scope}/weights"] = layer.kernel
            if layer.use_bias:
                out[f"{scope}/biases"] = layer.bias
        elif isinstance(layer, keras.layers.BatchNormalization):
            out[f"{scope}/beta"] = layer.beta
            out[f"{scope}/moving_mean"] = layer.moving_mean
            out[f"{scope}/moving_variance"] = layer.moving_variance
        elif layer.weights:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has weights with no "
                             "slim checkpoint name")
    return out


def _check_layout(ckpt: CheckpointReader, wanted: Dict[str, keras.Variable]) -> None:
    """ValueError naming every missing or wrongly shaped variable (before any data is read)."""
    missing = sorted(n for n in wanted if n not in ckpt)
    wrong = [f"{n!r} has shape {list(ckpt.shapes[n])}, expected {list(v.shape)}"
             for n, v in sorted(wanted.items())
             if n in ckpt and tuple(ckpt.shapes[n]) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} variable(s) missing: "
                        + ", ".join(repr(n) for n in missing[:8]) + (" ..." if len(missing) > 8
                                                                     else ""))
    if wrong:
        problems.append(f"{len(wrong)} variable(s) of the wrong shape: " + "; ".join(wrong[:8])
                        + (" ..." if len(wrong) > 8 else ""))
    if problems:
        raise ValueError(f"checkpoint {ckpt.prefix} does not fit slim's Inception-ResNet-v2 "
                         f"({len(wanted)} variables needed): " + "; ".join(problems))


def load_slim_weights(model: keras.Model,
                      checkpoint: Union[PathLike, CheckpointReader]) -> keras.Model:
    """Assign every variable of ``model`` (built here) from a TF-slim checkpoint; returns ``model``.

    ``checkpoint``: an open :class:`CheckpointReader`, or a checkpoint prefix
    (``.../ens_adv_inception_resnet_v2.ckpt``), its ``.index`` file or the folder holding it (no
    ``checkpoint`` state file needed). All names and shapes are checked before any data is read.
    Variables the model does not use (``global_step``, optimizer slots, the aux head) are ignored.
    """
    ckpt = (checkpoint if isinstance(checkpoint, CheckpointReader)
            else open_checkpoint(checkpoint, FETCH_HINT))
    wanted = slim_variables(model)
    _check_layout(ckpt, wanted)
    for name, variable in wanted.items():
        variable.assign(ckpt.get(name, variable.shape))
    return model


def load_ens_adv_inception_resnet_v2(path: PathLike, aux_logits: bool = False) -> keras.Model:
    """Tramer et al.'s ensemble-adversarially-trained Inception-ResNet-v2 from its slim checkpoint.

    ``path``: the checkpoint prefix (``.../ens_adv_inception_resnet_v2.ckpt``), its ``.index``
    file or the folder holding them. Input ``[N, 299, 299, 3]`` float32 in [0, 1]; output logits
    ``[N, 1001]`` (index 0 = background, ImageNet class ``k`` at ``k + 1``). ``aux_logits=True``
    returns a model with outputs ``[logits, aux_logits]``, the auxiliary head (never part of the
    attacked logits by default). Batch norm uses the stored statistics. Raises FileNotFoundError
    when nothing is at ``path``, ValueError naming any variable missing or of the wrong shape.
    """
    ckpt = open_checkpoint(path, FETCH_HINT)  # fails fast, before the model is built
    return load_slim_weights(build_inception_resnet_v2(NUM_CLASSES, aux_logits), ckpt)
