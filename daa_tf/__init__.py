"""daa_tf: the Distributionally Adversarial Attack (Zheng, Chen, Ren, AAAI 2019) and the attacks it
is measured against, for TensorFlow 2 / Keras models.

The attack functions and the driver are loaded on first use, so that importing a light submodule
(``daa_tf.files``, ``daa_tf.stats``) does not import TensorFlow. daa_tf's Keras layers are
registered with Keras as soon as Keras is loaded (:mod:`daa_tf.keras_objects`), so that
``keras.saving.load_model`` reads ``.keras`` files using them after ``import daa_tf``.
"""
import importlib
from typing import Any

from daa_tf import keras_objects as _keras_objects

_EXPORTS = {
    "fgsm": "daa_tf.attacks", "pgd": "daa_tf.attacks", "momentum_pgd": "daa_tf.attacks",
    "daa_blob": "daa_tf.attacks", "daa_dgf": "daa_tf.attacks", "rand_fgsm": "daa_tf.attacks",
    "apgd": "daa_tf.attacks", "multitargeted": "daa_tf.multitarget",
    "strongest": "daa_tf.cascade", "Stage": "daa_tf.cascade",
    "run": "daa_tf.driver", "RunResult": "daa_tf.driver", "evaluate": "daa_tf.driver",
}
_SUBMODULES = ("attacks", "losses", "driver", "models", "data", "distribute", "stats",
               "schedules", "iterates", "multitarget", "cascade")

__all__ = sorted(_EXPORTS) + list(_SUBMODULES)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"daa_tf.{name}")
    raise AttributeError(f"module 'daa_tf' has no attribute {name!r}")


_keras_objects.install()
