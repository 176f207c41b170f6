"""Loading a Keras model file (``.keras``; legacy ``.h5``) that may use daa_tf's layers, with one
clear sentence for a file that is missing, truncated or not a model."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Union

PathLike = Union[str, "os.PathLike[str]"]
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _resave_hint(path: Path) -> str:
    return f"save the model again (model.save({path.name!r})) or copy the whole file again"


def check_keras_file(path: PathLike) -> Path:
    """``path`` as a Path when it holds a complete Keras file; FileNotFoundError when it does not
    exist, ValueError naming the file for a truncated or corrupt one (a ``.keras`` file is a zip
    archive; an ``.h5`` file starts with the HDF5 signature)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such Keras model file")
    if path.suffix == ".h5":
        with open(path, "rb") as f:
            if f.read(len(_HDF5_SIGNATURE)) != _HDF5_SIGNATURE:
                raise ValueError(f"{path} is not an HDF5 file (truncated or corrupt): "
                                 + _resave_hint(path))
    elif not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a complete .keras file (a .keras file is a zip archive; "
                         f"this one is truncated or corrupt, {path.stat().st_size} bytes): "
                         + _resave_hint(path))
    return path


def load_keras_file(path: PathLike, compile: bool = False) -> Any:
    """The ``keras.Model`` saved at ``path`` (``model.save``: ``.keras`` or ``.h5``), loaded in
    Keras's safe mode (a file holding Python code, e.g. a ``Lambda`` layer, is refused). daa_tf's
    layers (:class:`daa_tf.models.layers.InputConv2D`) are registered first, so files using them
    load. ``compile``: restore the training configuration too. FileNotFoundError / ValueError
    naming the file and what to do."""
    path = check_keras_file(path)
    import keras

    from daa_tf.models import layers  # noqa: F401 - registers daa_tf's layers with Keras

    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{path} is a corrupt .keras file ({err}): " + _resave_hint(path)
                         ) from None
    except Exception as err:  # noqa: BLE001 - Keras raises many kinds; one sentence for all
        text = str(err).strip().splitlines()[0][:400] if str(err).strip() else ""
        raise ValueError(f"cannot load the Keras model {path} ({type(err).__name__}: {text}): "
                         "check that it was saved with model.save and that its custom layers "
                         "are imported (registered) before loading") from None
