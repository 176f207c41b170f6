"""Keras ports of the attacked models, with their weights read from the released files, and the
released files themselves (:func:`fetch_model`: downloaded once, verified, cached).

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

    from daa_tf.models import fetch_model, load_madry_mnist
    model = load_madry_mnist(fetch_model("mnist", "adv_trained"))

The names below are loaded on first use: ``from daa_tf.models import fetch_model`` (and the
command line, which reads :mod:`daa_tf.models.fetch`'s tables) does not import TensorFlow. A
``.keras`` file using daa_tf's layers loads with :func:`load_keras_file`, or with
``keras.saving.load_model`` after ``import daa_tf`` (:mod:`daa_tf.keras_objects`).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict

_EXPORTS = {
    "load_madry_mnist": "daa_tf.models.madry_mnist",
    "load_madry_cifar10": "daa_tf.models.madry_cifar10",
    "load_daa_fashion_mnist": "daa_tf.models.daa_fashion_mnist",
    "load_wong_kolter_mnist": "daa_tf.models.wong_kolter",
    "load_ens_adv_inception_resnet_v2": "daa_tf.models.inception_resnet_v2",
    "open_checkpoint": "daa_tf.models.checkpoint",
    "CheckpointReader": "daa_tf.models.checkpoint",
    "load_keras_file": "daa_tf.models.keras_file",
    "fetch_model": "daa_tf.models.fetch",
    "FetchError": "daa_tf.models.fetch",
}
# LOADERS' keys -> the name of the loader function (in _EXPORTS).
_LOADER_NAMES = {
    "madry_mnist": "load_madry_mnist",
    "madry_cifar10": "load_madry_cifar10",
    "daa_fashion_mnist": "load_daa_fashion_mnist",
    "wong_kolter_mnist": "load_wong_kolter_mnist",
    "ens_adv_inception_resnet_v2": "load_ens_adv_inception_resnet_v2",
}


def _loaders() -> Dict[str, Callable[[Any], Any]]:
    return {name: __getattr__(function) for name, function in _LOADER_NAMES.items()}


def load_model(name: str, path: Any) -> Any:
    """Load model ``name`` (a key of ``LOADERS``) from ``path`` (checkpoint folder/prefix or npz);
    returns the ``keras.Model``."""
    if name not in _LOADER_NAMES:
        raise ValueError(f"unknown model {name!r}; known: {sorted(_LOADER_NAMES)}")
    return _loaders()[name](path)


def __getattr__(name: str) -> Any:
    if name == "LOADERS":  # name -> loader(path) -> keras.Model
        return _loaders()
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'daa_tf.models' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))


__all__ = ["LOADERS", "load_model", *_EXPORTS]
