"""The leaderboard file format (MadryLab's ``attack.npy``), and the checks shared by the writer
(the runners) and the evaluator.

A submission is one ``.npy`` array of ``num_test`` adversarial images in the test set's order:
MNIST ``(10000, 784)`` in [0, 1], CIFAR10 ``(10000, 32, 32, 3)`` in [0, 255], float32, with
``max |x_adv - x_nat| <= eps``. The checks follow MadryLab's ``run_attack.py`` (shape, pixel range,
L-inf over ``eps`` with tolerance ``1e-4``) and also refuse NaN/inf everywhere (MadryLab's CIFAR10
script lets NaN through) and non-numeric arrays. Pixel-range tolerance: ``1e-4`` of the range.

Only NumPy here: the checks that need no test images run without importing TensorFlow.
"""
from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Optional, Tuple, Union

import numpy as np

from daa_tf.files import atomic_write

PathLike = Union[str, os.PathLike]

DTYPE = np.float32
EPS_TOLERANCE = 1e-4     # absolute, on the L-inf perturbation (MadryLab: epsilon + 0.0001)
RANGE_TOLERANCE = 1e-4   # fraction of the pixel range (MadryLab: 1.0001 on [0, 1])
_CHUNK = 1000            # rows per chunk when measuring perturbations (bounds the memory)


class InvalidSubmission(ValueError):
    """The array is not a valid submission; the message names the problem."""


@dataclasses.dataclass(frozen=True)
class Format:
    """One challenge's file format: image shape, pixel box, L-inf bound, test set size."""

    image_shape: Tuple[int, ...]
    clip_min: float
    clip_max: float
    eps: float
    num_test: int = 10000

    def shape(self, num_examples: Optional[int] = None) -> Tuple[int, ...]:
        """The array shape for the first ``num_examples`` test images (default: all)."""
        return (self.num_test if num_examples is None else int(num_examples),) + self.image_shape

    @property
    def range_tolerance(self) -> float:
        return RANGE_TOLERANCE * (self.clip_max - self.clip_min)


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """Size of ``x_adv - x_nat`` in pixel units: the maximum ``|.|`` and the mean per-image L2."""

    linf: float
    mean_l2: float


def check_values(x_adv: np.ndarray, fmt: Format, num_examples: Optional[int] = None) -> None:
    """Shape, dtype, NaN/inf and pixel range: everything that needs no test images."""
    expected = fmt.shape(num_examples)
    if x_adv.shape != expected:
        hint = ""
        if x_adv.shape[1:] == fmt.image_shape and x_adv.shape[:1] != expected[:1]:
            hint = (f"; a file for the first {x_adv.shape[0]} test images is evaluated with "
                    f"--num_examples={x_adv.shape[0]} (it is not a leaderboard submission)")
        raise InvalidSubmission(f"Invalid shape: expected {expected}, found {x_adv.shape}{hint}")
    if not (np.issubdtype(x_adv.dtype, np.floating) or np.issubdtype(x_adv.dtype, np.integer)):
        raise InvalidSubmission(f"Invalid dtype {x_adv.dtype}: expected float32 pixel values")
    nan, inf = int(np.isnan(x_adv).sum()), int(np.isinf(x_adv).sum())
    if nan or inf:
        raise InvalidSubmission(f"Invalid values: the array holds {nan} NaN and {inf} inf entries")
    if x_adv.size:
        lo, hi = float(x_adv.min()), float(x_adv.max())
        tol = fmt.range_tolerance
        if lo < fmt.clip_min - tol or hi > fmt.clip_max + tol:
            raise InvalidSubmission(
                f"Invalid pixel range: expected [{fmt.clip_min:g}, {fmt.clip_max:g}] (tolerance "
                f"{tol:g}), found [{lo:g}, {hi:g}]")


def perturbation(x_adv: np.ndarray, x_nat: np.ndarray) -> Perturbation:
    """L-inf and mean L2 of ``x_adv - x_nat`` (computed in float64, chunk by chunk)."""
    if x_adv.shape != x_nat.shape:
        raise InvalidSubmission(f"the array has shape {x_adv.shape} but the test images "
                                f"{x_nat.shape}")
    linf, l2 = 0.0, []
    for start in range(0, len(x_adv), _CHUNK):
        delta = (x_adv[start:start + _CHUNK].astype(np.float64)
                 - x_nat[start:start + _CHUNK].astype(np.float64)).reshape(-1, int(np.prod(
                     x_adv.shape[1:], dtype=np.int64)))
        linf = max(linf, float(np.abs(delta).max(initial=0.0)))
        l2.append(np.sqrt(np.square(delta).sum(axis=1)))
    mean_l2 = float(np.concatenate(l2).mean()) if l2 else 0.0
    return Perturbation(linf=linf, mean_l2=mean_l2)


def check_perturbation(x_adv: np.ndarray, x_nat: np.ndarray, eps: float) -> Perturbation:
    """Refuses ``max |x_adv - x_nat| > eps + 1e-4``; returns the perturbation's size."""
    size = perturbation(x_adv, x_nat)
    if size.linf > eps + EPS_TOLERANCE:
        raise InvalidSubmission(f"Invalid perturbation: maximum perturbation found {size.linf:g}, "
                                f"maximum allowed {eps:g} (tolerance {EPS_TOLERANCE:g})")
    return size


def check(x_adv: np.ndarray, x_nat: np.ndarray, fmt: Format, eps: Optional[float] = None
          ) -> Perturbation:
    """Every check, for a file covering the first ``len(x_nat)`` test images; ``eps`` defaults to
    the challenge's."""
    check_values(x_adv, fmt, len(x_nat))
    return check_perturbation(x_adv, x_nat, fmt.eps if eps is None else eps)


def load(path: PathLike) -> np.ndarray:
    """The array in the ``.npy`` file ``path`` (no pickles); InvalidSubmission when unreadable."""
    if not os.path.isfile(path):
        raise InvalidSubmission(f"no attack file at {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise InvalidSubmission(f"{path} is not a readable .npy array ({err})") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise InvalidSubmission(f"{path} is an .npz archive, expected one .npy array")
    return array


def save_atomic(path: PathLike, array: np.ndarray) -> None:
    """Writes ``array`` as ``.npy`` to ``path`` atomically: ``path`` is untouched or complete."""
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def write(path: PathLike, x_adv: np.ndarray, x_nat: np.ndarray, fmt: Format,
          eps: Optional[float] = None) -> Perturbation:
    """Checks ``x_adv`` as float32 with :func:`check` (never writes an invalid file), then writes it
    atomically; returns the perturbation's size."""
    x_adv = np.ascontiguousarray(x_adv, dtype=DTYPE)
    size = check(x_adv, x_nat, fmt, eps)
    save_atomic(path, x_adv)
    return size
