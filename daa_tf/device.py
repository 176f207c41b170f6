"""The per-device compilation choice: XLA on GPU/TPU, the plain graph (oneDNN kernels) on CPU.

On the CPU, XLA measured slower for these nets (docs/performance.md); a user's ``jit_compile``
(True or False) always overrides the choice.
"""
from typing import Optional

import tensorflow as tf


def default_jit_compile() -> bool:
    """True (XLA) when a GPU or TPU is visible, else False (the plain graph)."""
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def resolve_jit_compile(jit_compile: Optional[bool]) -> bool:
    """``None`` picks :func:`default_jit_compile`; a bool is the user's override."""
    return default_jit_compile() if jit_compile is None else bool(jit_compile)
