"""Layers shared by the model ports.

:class:`InputConv2D` is a ``keras.layers.Conv2D`` for a network's first convolution over a
one-channel image (MNIST, Fashion-MNIST) whose *input* gradient, the quantity every attack step
needs, is computed as one matrix product and a fold of shifted planes instead of TensorFlow's
``Conv2DBackpropInput``. On CPU, oneDNN's kernel for that op is slow when the gradient has a single
channel: on the MadryLab MNIST net it took as long as the second convolution's backprop (16 times
the arithmetic), about a quarter of an attack step. Same layer, same weights, same forward op and
logits; the input gradient is the same sum in another order (float rounding only).
"""
from __future__ import annotations

import functools
from typing import Any, List, Optional, Tuple

import keras
import tensorflow as tf

from daa_tf.device import default_jit_compile


def _shifted(plane: tf.Tensor, offset: int, before: int, size: int, out_size: int,
             axis: int) -> Optional[Tuple[tf.Tensor, List[int]]]:
    """The part of ``plane`` (``out_size`` long on ``axis``) that lands in an input of ``size``
    when shifted by ``offset - before``, and the padding that puts it in place; None if none."""
    start, stop = max(0, before - offset), min(out_size, size + before - offset)
    if stop <= start:
        return None
    begin = [0] * 3
    length = [-1] * 3
    begin[axis], length[axis] = start, stop - start
    head = start + offset - before
    return tf.slice(plane, begin, length), [head, size - head - (stop - start)]


def _fold(taps: tf.Tensor, kernel_hw: Tuple[int, int], in_hw: Tuple[int, int],
          pads: Tuple[int, int]) -> tf.Tensor:
    """``[N, Ho, Wo, kh*kw]`` per-tap planes -> ``[N, H, W]``: each tap's plane shifted into place
    and summed."""
    kh, kw = kernel_hw
    planes = []
    for a in range(kh):
        for b in range(kw):
            rows = _shifted(taps[..., a * kw + b], a, pads[0], in_hw[0], taps.shape[1], axis=1)
            if rows is None:
                continue
            cols = _shifted(rows[0], b, pads[1], in_hw[1], taps.shape[2], axis=2)
            if cols is None:
                continue
            planes.append(tf.pad(cols[0], [[0, 0], rows[1], cols[1]]))
    return tf.add_n(planes)  # never empty: the centre tap always lands inside the input


@functools.lru_cache(maxsize=None)
def _folder(kernel_hw: Tuple[int, int], in_hw: Tuple[int, int], pads: Tuple[int, int]):
    """:func:`_fold` as one XLA fusion (one pass over the planes instead of a slice, a pad and a
    sum per tap: measured 20 to 28 ms against 40 to 50 ms per 1000 MNIST images on CPU)."""
    return tf.function(functools.partial(_fold, kernel_hw=kernel_hw, in_hw=in_hw, pads=pads),
                       jit_compile=True, reduce_retracing=True)


def fold_input_gradient(dy: tf.Tensor, kernel: tf.Tensor, in_hw: Tuple[int, int],
                        pads: Tuple[int, int]) -> tf.Tensor:
    """Gradient of ``conv2d(x, kernel, stride 1)`` with respect to a one-channel ``x``.

    ``dy`` ``[N, Ho, Wo, C]`` is the output gradient, ``kernel`` ``[kh, kw, 1, C]``, ``in_hw`` the
    input's ``(H, W)`` and ``pads`` its ``(top, left)`` padding (0 for VALID). Returns
    ``[N, H, W, 1]``: the per-tap planes ``dy . kernel`` (one ``[N*Ho*Wo, C] x [C, kh*kw]``
    product), each shifted into place and summed.
    """
    kh, kw, _, channels = kernel.shape
    taps = tf.matmul(tf.reshape(dy, [-1, channels]), tf.reshape(kernel, [kh * kw, channels]),
                     transpose_b=True)
    taps = tf.reshape(taps, tf.concat([tf.shape(dy)[:3], [kh * kw]], 0))
    taps.set_shape(dy.shape[:3].concatenate([kh * kw]))
    return _folder((kh, kw), tuple(in_hw), tuple(pads))(taps)[..., None]


def default_fast_input_gradient() -> bool:
    """On where the attacks run the plain graph (CPU), off where they use XLA (GPU/TPU)."""
    return not default_jit_compile()


@keras.saving.register_keras_serializable(package="daa_tf")
class InputConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` with a fast input gradient for one-channel, stride-1 inputs.

    ``fast_input_gradient``: ``None`` (default) uses it where the attacks run the plain graph,
    i.e. without a GPU/TPU (:func:`default_fast_input_gradient`); ``True``/``False`` force it.
    Other configurations (more input channels, strides, dilation, channels_first) use ``Conv2D``
    unchanged.
    """

    def __init__(self, *args: Any, fast_input_gradient: Optional[bool] = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fast_input_gradient = fast_input_gradient

    def get_config(self) -> dict:
        return {**super().get_config(), "fast_input_gradient": self.fast_input_gradient}

    def _use_fast_path(self, inputs: Any) -> bool:
        fast = self.fast_input_gradient
        if fast is None:
            fast = default_fast_input_gradient()
        return bool(fast and self.data_format == "channels_last" and inputs.shape[-1] == 1
                    and tuple(self.strides) == (1, 1) and tuple(self.dilation_rate) == (1, 1)
                    and inputs.shape[1] is not None and inputs.shape[2] is not None)

    def convolution_op(self, inputs: Any, kernel: Any) -> tf.Tensor:
        if not self._use_fast_path(inputs):
            return super().convolution_op(inputs, kernel)
        kh, kw = self.kernel_size
        height, width = int(inputs.shape[1]), int(inputs.shape[2])
        same = self.padding == "same"
        pads = ((kh - 1) // 2 if same else 0, (kw - 1) // 2 if same else 0)
        padding = "SAME" if same else "VALID"
        plain = super().convolution_op

        @tf.custom_gradient
        def conv(x, w):
            def grad(dy):
                dx = fold_input_gradient(dy, w, (height, width), pads)
                dw = tf.compat.v1.nn.conv2d_backprop_filter(x, tf.shape(w), dy, [1, 1, 1, 1],
                                                            padding)
                return dx, dw
            return plain(x, w), grad

        return conv(tf.convert_to_tensor(inputs), tf.convert_to_tensor(kernel))
