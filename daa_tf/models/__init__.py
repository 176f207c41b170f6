"""Keras ports of the attacked models, with their weights read from the released files.

Every model maps inputs to logits (``[N, 10]``; ``[N, 1001]`` for ImageNet, class 0 = background);
batch norm (where present) uses stored statistics.
The one-channel nets' first convolution is :class:`daa_tf.models.layers.InputConv2D` (a ``Conv2D``
with a faster input gradient on CPU).

| name | input | weights |
| --- | --- | --- |
| ``madry_mnist`` | ``[N, 784]`` in [0, 1] | MadryLab TF1 checkpoint folder |
| ``madry_cifar10`` | ``[N, 32, 32, 3]`` in [0, 255] | MadryLab TF1 checkpoint folder |
| ``daa_fashion_mnist`` | ``[N, 784]`` in [0, 1] | DAA authors' TF1 checkpoint folder |
| ``wong_kolter_mnist`` | ``[N, 784]`` in [0, 1] | PyTorch state dict saved as ``.npz`` |
| ``ens_adv_inception_resnet_v2`` | ``[N, 299, 299, 3]`` in [0, 1] | TF-slim checkpoint prefix or folder |
"""
from __future__ import annotations

from typing import Callable, Dict

import keras

from daa_tf.models.checkpoint import CheckpointReader, PathLike, open_checkpoint
from daa_tf.models.daa_fashion_mnist import load_daa_fashion_mnist
from daa_tf.models.inception_resnet_v2 import load_ens_adv_inception_resnet_v2
from daa_tf.models.madry_cifar10 import load_madry_cifar10
from daa_tf.models.madry_mnist import load_madry_mnist
from daa_tf.models.wong_kolter import load_wong_kolter_mnist

LOADERS: Dict[str, Callable[[PathLike], keras.Model]] = {
    "madry_mnist": load_madry_mnist,
    "madry_cifar10": load_madry_cifar10,
    "daa_fashion_mnist": load_daa_fashion_mnist,
    "wong_kolter_mnist": load_wong_kolter_mnist,
    "ens_adv_inception_resnet_v2": load_ens_adv_inception_resnet_v2,
}


def load_model(name: str, path: PathLike) -> keras.Model:
    """Load model ``name`` (a key of ``LOADERS``) from ``path`` (checkpoint folder/prefix or npz)."""
    try:
        loader = LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {sorted(LOADERS)}") from None
    return loader(path)


__all__ = ["LOADERS", "load_model", "load_madry_mnist", "load_madry_cifar10",
           "load_daa_fashion_mnist", "load_wong_kolter_mnist",
           "load_ens_adv_inception_resnet_v2", "open_checkpoint", "CheckpointReader"]
