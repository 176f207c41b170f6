"""Per-example stateless random draws for the attacks whose loop draws at every step (Square;
docs/algorithms.md#randomness-of-square).

Each example carries a 32-bit *key* made from the run's seed ``[2]`` int64 and the example's
index in the set it belongs to (the data set a driver run attacks, or the batch of an attack
function). A draw is a hash of ``(key, counter, slot)``: ``counter`` names the use (the step
number, or a tag such as the start's), ``slot`` the value within it. So an example's draws
depend on nothing but its key: not on which other examples share its batch, nor on the batch
size, the padding of short batches, the number of devices, or on early stop removing other
examples. Keys travel with the examples (sharded like the labels), so a resumed run draws the
same values.

The hash: ``mix`` is a bijective 32-bit integer finaliser (two xor-shift-multiply rounds), and
``combine(h, w) = mix(h ^ mix(w ^ SALT))`` chains words into a state. All arithmetic is uint32,
wrapping, on any device (CPU, GPU, XLA).
"""
from typing import Union

import tensorflow as tf

_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)  # odd constants of a well-mixing 32-bit finaliser
_SHIFTS = (16, 15, 16)
_SALT = 0x9E3779B9  # the 32-bit golden ratio, so that the word 0 is not a fixed point
_START = 0x6A09E667  # the initial state of a key


def _u32(value: Union[int, tf.Tensor]) -> tf.Tensor:
    if isinstance(value, int):
        return tf.constant(value & 0xFFFFFFFF, tf.uint32)
    return tf.cast(value, tf.uint32) if value.dtype != tf.uint32 else value


def mix(x: tf.Tensor) -> tf.Tensor:
    """A bijection of uint32 (elementwise): ``x ^= x >> 16; x *= m1; x ^= x >> 15; x *= m2;
    x ^= x >> 16``."""
    x = _u32(x)
    for shift, multiplier in zip(_SHIFTS, _MULTIPLIERS + (None,)):
        x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(shift)))
        if multiplier is not None:
            x = x * _u32(multiplier)
    return x


def combine(h: tf.Tensor, word: Union[int, tf.Tensor]) -> tf.Tensor:
    """``mix(h ^ mix(word ^ SALT))``: the state ``h`` (uint32) with ``word`` folded in
    (broadcasting)."""
    return mix(tf.bitwise.bitwise_xor(_u32(h), mix(tf.bitwise.bitwise_xor(_u32(word),
                                                                          _u32(_SALT)))))


def example_keys(seed: tf.Tensor, n: Union[int, tf.Tensor]) -> tf.Tensor:
    """The keys ``[n]`` uint32 of the examples ``0 .. n-1`` of a run with stateless ``seed``
    ``[2]`` int64: the seed's four 32-bit words, then the index, combined in turn."""
    words = tf.reshape(tf.bitcast(tf.cast(seed, tf.int64), tf.uint32), [4])
    h = _u32(_START)
    for k in range(4):
        h = combine(h, words[k])
    return combine(h, tf.range(tf.cast(n, tf.int32), dtype=tf.int32))


def bits(keys: tf.Tensor, counter: Union[int, tf.Tensor], slots: int) -> tf.Tensor:
    """``[N, slots]`` uint32: the draw ``slot`` of use ``counter`` for each key of ``keys``
    ``[N]``."""
    h = combine(keys, counter)
    return combine(h[:, None], tf.range(slots, dtype=tf.int32)[None, :])


def below(bits_: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
    """Integers uniform on ``0 .. n-1`` (``0`` when ``n`` is 0) from uint32 ``bits_``:
    ``(high 16 bits * n) >> 16``, exact for ``n < 2^16``; int32, ``bits_``'s shape."""
    high = tf.bitwise.right_shift(bits_, _u32(16))
    return tf.cast(tf.bitwise.right_shift(high * _u32(n), _u32(16)), tf.int32)


def signs(bits_: tf.Tensor) -> tf.Tensor:
    """``+1`` or ``-1`` (float32) from the top bit of ``bits_`` (``-1`` when it is set)."""
    top = tf.cast(tf.bitwise.right_shift(bits_, _u32(31)), tf.float32)
    return 1.0 - 2.0 * top
