"""daa_tf's Keras layers registered with Keras's serialization after ``import daa_tf``, without
importing Keras (or TensorFlow) at that point.

A ``.keras`` file names its layers' classes (``daa_tf>InputConv2D``) and Keras finds a class of
another package only once it is registered (``keras.saving.register_keras_serializable``, run
when its module is imported). :func:`install` (called by ``import daa_tf``) registers the layers
at once when Keras and TensorFlow are loaded already; otherwise a one-shot import hook registers
them as soon as both have finished loading. So ``import daa_tf`` stays light, and
``keras.saving.load_model`` reads files using daa_tf's layers after it, whichever of daa_tf and
Keras is imported first.
"""
from __future__ import annotations

import importlib
import importlib.abc
import sys
import threading
import warnings
from typing import Any, Optional, Sequence, Set

LAYER_MODULES = ("daa_tf.models.layers",)  # modules whose import registers daa_tf's layers
_WATCHED = ("keras", "tensorflow")
_LOCK = threading.Lock()


def register() -> None:
    """Imports :data:`LAYER_MODULES` (imports Keras and TensorFlow)."""
    for name in LAYER_MODULES:
        importlib.import_module(name)


class _AfterKeras(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it wraps the loading of Keras and TensorFlow, and once both are
    loaded (neither still executing) removes itself and calls :func:`register`."""

    def __init__(self) -> None:
        self.loading: Set[str] = set()

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Any = None) -> Any:
        if fullname not in _WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def exec_module(module: Any) -> None:
            self.loading.add(fullname)
            try:
                execute(module)
            finally:
                self.loading.discard(fullname)
            self.loaded()

        loader.exec_module = exec_module
        return spec

    def loaded(self) -> None:
        if self.loading or not all(name in sys.modules for name in _WATCHED):
            return
        with _LOCK:
            if self not in sys.meta_path:
                return
            sys.meta_path.remove(self)
        _register_or_warn()


def _register_or_warn() -> None:
    try:
        register()
    except Exception as err:  # noqa: BLE001 - never break the user's import of Keras
        warnings.warn(f"daa_tf could not register its Keras layers ({type(err).__name__}: {err}); "
                      "import daa_tf.models.layers before loading a .keras file that uses them",
                      stacklevel=2)


def install() -> None:
    """Registers daa_tf's layers now if Keras and TensorFlow are loaded, else once they are."""
    if all(name in sys.modules for name in _WATCHED):
        _register_or_warn()
        return
    with _LOCK:
        if not any(isinstance(finder, _AfterKeras) for finder in sys.meta_path):
            sys.meta_path.insert(0, _AfterKeras())
