"""The model's predictions over a whole set, in compiled batches of bucketed shapes."""
from typing import Any, Optional, Tuple

import numpy as np
import tensorflow as tf

from daa_tf import device, loop
from daa_tf.batching import bucket, padded
from daa_tf.losses import get_loss
from daa_tf.specs import DEFAULT_BATCH


def evaluate(model: loop.Model, x: np.ndarray, y: np.ndarray, loss: Any = "xent",
             batch_size: int = DEFAULT_BATCH, jit_compile: Optional[bool] = None
             ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions ``[N]``, per-example ``loss`` ``[N]`` and logits ``[N, C]`` of ``model`` on
    ``x`` ``[N, ...]`` (float32) with labels ``y`` ``[N]``."""
    logits_fn = loop.compiled_logits(model, device.resolve_jit_compile(jit_compile))
    chunks = []
    for i in range(0, len(x), batch_size):
        part = x[i:i + batch_size]
        (whole,) = padded([part], bucket(len(part), batch_size))
        chunks.append(logits_fn(tf.constant(whole)).numpy()[:len(part)])
    logits = np.concatenate(chunks)
    losses = get_loss(loss)(tf.constant(logits), tf.constant(y, tf.int32)).numpy()
    return logits.argmax(axis=1), losses, logits
