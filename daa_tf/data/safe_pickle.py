"""Reading CIFAR-10 python batches (``test_batch``, ``data_batch_1`` ...) without running any code.

A pickle is a program: ``pickle.load`` calls whatever global the file names (``os.system``
included), so a shared data folder could run commands. :func:`load_batch` admits only what those
files hold -- a dict with ``bytes``/``str`` keys, lists, ints, strings and NumPy integer arrays
and scalars as NumPy pickles them (``numpy.core.multiarray._reconstruct`` + ``numpy.ndarray`` +
``numpy.dtype``, ``numpy.core.multiarray.scalar``, protocol 5's
``numpy.core.numeric._frombuffer``, and ``_codecs.encode`` with latin-1, by which Python 3 writes
``bytes`` at protocols 0 to 2). NumPy itself never runs on the file's content
while it is read: each array is recorded as plain values, checked, and only then built with
``np.frombuffer``. Anything else is refused with a ValueError naming the file, before it is
called.
"""
from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import numpy as np

_ADMITTED = "a dict with bytes or str keys of lists, ints, strings and NumPy integer arrays"


class _Refused(Exception):
    """The file holds something a CIFAR batch never holds (the message says what)."""


class _Ndarray:
    """Stands for the class ``numpy.ndarray`` while a file is read (never instantiated by us)."""


class _Dtype:
    """Stands for ``numpy.dtype(code, align, copy)``; :meth:`resolve` builds the checked dtype."""

    def __init__(self, code: Any, align: Any = False, copy: Any = False) -> None:
        self.code, self.state = code, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def resolve(self) -> np.dtype:
        code = self.code.decode("ascii", "replace") if isinstance(self.code, bytes) else self.code
        if not isinstance(code, str):
            raise _Refused(f"a dtype given as {type(code).__name__}")
        try:
            dtype = np.dtype(code)
        except TypeError:
            raise _Refused(f"an unknown dtype {code!r}") from None
        if dtype.kind not in "ui" or dtype.fields is not None or dtype.subdtype is not None:
            raise _Refused(f"an array of dtype {code!r} (only integer arrays are read)")
        state = self.state
        if state is not None:
            if (not isinstance(state, tuple) or len(state) < 5
                    or any(part is not None for part in state[2:5])):
                raise _Refused(f"a dtype {code!r} with a structured or sub-array layout")
            order = state[1].decode() if isinstance(state[1], bytes) else state[1]
            if order not in ("<", ">", "|", "="):
                raise _Refused(f"a dtype with byte order {order!r}")
            if order in "<>":
                dtype = dtype.newbyteorder(order)
        return dtype


class _Array:
    """Stands for an array while a file is read: its shape, dtype and bytes, built by :meth:`build`
    after the file is read. From ``_reconstruct(ndarray, shape, dtype)`` and ``__setstate__``, or
    from ``_frombuffer(buffer, dtype, shape, order)``."""

    def __init__(self, shape: Any = None, dtype: Any = None, raw: Any = None,
                 fortran: bool = False) -> None:
        self.shape, self.dtype, self.raw, self.fortran = shape, dtype, raw, fortran

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise _Refused("an array state of an unknown layout")
        _, self.shape, self.dtype, self.fortran, self.raw = state

    def build(self) -> np.ndarray:
        if not isinstance(self.dtype, _Dtype):
            raise _Refused("an array without a NumPy dtype")
        dtype = self.dtype.resolve()
        shape = self.shape
        if (not isinstance(shape, tuple)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                           for d in shape)):
            raise _Refused(f"an array of shape {shape!r}")
        raw = self.raw
        if isinstance(raw, pickle.PickleBuffer):
            raw = bytes(raw.raw())
        if not isinstance(raw, (bytes, bytearray)):
            raise _Refused("an array whose content is not raw bytes (an object array)")
        size = math.prod(shape) * dtype.itemsize
        if len(raw) != size:
            raise _Refused(f"an array of shape {list(shape)} with {len(raw)} bytes instead of "
                           f"{size}")
        array = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if self.fortran else "C")
        return array[()] if shape == () else array


def _scalar(dtype: Any, raw: Any = None) -> _Array:
    """``numpy.core.multiarray.scalar(dtype, bytes)``: a NumPy integer (e.g. a label)."""
    return _Array((), dtype, raw)


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> _Array:
    if subtype is not _Ndarray:
        raise _Refused("an array of a class other than numpy.ndarray")
    return _Array()


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> _Array:
    order = order.decode() if isinstance(order, bytes) else order
    return _Array(shape, dtype, buffer, fortran=order == "F")


def _latin1(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


_GLOBALS: Dict[Tuple[str, str], Callable[..., Any]] = {
    ("numpy", "ndarray"): _Ndarray,
    ("numpy", "dtype"): _Dtype,
    ("_codecs", "encode"): _latin1,
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _reconstruct for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): _scalar for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _frombuffer for core in ("core", "_core")},
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = _GLOBALS.get((module, name))
        if found is None:
            raise _Refused(f"a call of {module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("a persistent id")


def _checked(value: Any, depth: int = 0) -> Any:
    """``value`` with its arrays built; _Refused for anything a CIFAR batch does not hold."""
    if depth > 8:
        raise _Refused("containers nested too deeply")
    if isinstance(value, _Array):
        return value.build()
    if isinstance(value, dict):
        if not all(isinstance(k, (bytes, str)) for k in value):
            raise _Refused("a dict key that is not a string")
        return {k: _checked(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_checked(v, depth + 1) for v in value]
    if type(value) in (int, bool, bytes, str):
        return value
    raise _Refused(f"a {type(value).__name__}")


def load_batch(path: Path) -> Dict[str, Any]:
    """The dict of the CIFAR-10 python batch ``path``, keys as ``str`` (``data``, ``labels``, ...).

    ValueError naming the file for anything but :data:`_ADMITTED` (nothing the file names is
    called, except the admitted constructors above) and for a file that is not a pickle.
    """
    try:
        with open(path, "rb") as f:
            batch = _checked(_Unpickler(f, encoding="bytes").load())
    except _Refused as err:
        raise ValueError(f"{path}: refused, it holds {err}, which a CIFAR-10 python batch never "
                         f"holds ({_ADMITTED}); nothing in it was run: use the original "
                         "cifar-10-python.tar.gz files, or the binary batches (*.bin)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, OverflowError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({type(err).__name__}: {err}): use "
                         "the original cifar-10-python.tar.gz files") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: not a CIFAR-10 python batch (it holds a {type(batch).__name__}, "
                         "not a dict): use the original cifar-10-python.tar.gz files")
    return {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
