"""daa_tf: the Distributionally Adversarial Attack (Zheng, Chen, Ren, AAAI 2019) and the attacks it
is measured against, for TensorFlow 2 / Keras models.

The attack functions, ``run``, ``strongest`` and every submodule are loaded on first use
(``daa_tf.pgd``, ``daa_tf.export``, ...), so that importing a light submodule (``daa_tf.files``,
``daa_tf.catalogue``) does not import TensorFlow. daa_tf's Keras layers are registered with Keras
as soon as Keras is loaded (:mod:`daa_tf.keras_objects`), so that ``keras.saving.load_model`` reads
``.keras`` files using them after ``import daa_tf``. Layers: docs/architecture.md.
"""
import importlib
from typing import Any

from daa_tf import keras_objects as _keras_objects

_ATTACK_FUNCTIONS = ("fgsm", "rand_fgsm", "pgd", "momentum_pgd", "daa_blob", "daa_dgf", "apgd",
                     "apgd_daa_blob", "apgd_daa_dgf", "multitargeted", "apgd_t", "fab", "fab_t",
                     "square", "attack")
_EXPORTS = {
    **{name: "daa_tf.attacks" for name in _ATTACK_FUNCTIONS},
    "strongest": "daa_tf.dispatch", "autoattack": "daa_tf.dispatch", "Stage": "daa_tf.stages",
    "run": "daa_tf.dispatch",
    "RunResult": "daa_tf.results", "evaluate": "daa_tf.predict",
}
_SUBMODULES = (
    "attacks", "batching", "boundary", "callbacks", "cascade", "catalogue", "checks", "data",
    "describe", "device", "dispatch", "distribute", "draws", "driver", "engine", "export",
    "files", "iterates", "keras_objects", "loop", "losses", "models", "particles", "predict",
    "projection", "recipes", "results", "runs", "schedules", "settings", "shards", "specs",
    "squares", "stages", "stats", "steps", "stream", "summaries", "tally", "targets",
    "training", "validation")

__all__ = sorted(_EXPORTS) + list(_SUBMODULES)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"daa_tf.{name}")
    raise AttributeError(f"module 'daa_tf' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))


_keras_objects.install()
