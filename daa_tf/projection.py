"""The L-inf ball and pixel box shared by every attack (the ``clip_eta`` family of helpers;
docs/algorithms.md#projection-and-random-start)."""
import tensorflow as tf


def project(x: tf.Tensor, x0: tf.Tensor, eps: tf.Tensor, clip_min: tf.Tensor,
            clip_max: tf.Tensor) -> tf.Tensor:
    """``clip(clip(x, x0 - eps, x0 + eps), clip_min, clip_max)``: first the ball, then the box."""
    x = tf.clip_by_value(x, x0 - eps, x0 + eps)
    return tf.clip_by_value(x, clip_min, clip_max)


def random_start(x0: tf.Tensor, eps: tf.Tensor, clip_min: tf.Tensor, clip_max: tf.Tensor,
                 seed: tf.Tensor) -> tf.Tensor:
    """``proj(x0 + U(-eps, eps))`` with a stateless draw: the same ``seed`` ``[2]`` gives the same
    start for the same shape, on any device and inside or outside a graph, bit for bit.

    The noise is formed as ``u * 2eps - eps`` from ``u ~ U[0, 1)`` (the same rounding as
    ``stateless_uniform(minval=-eps, maxval=eps)`` eagerly) with an explicit subtraction: in a
    graph, Grappler would otherwise merge the draw's final add with ``x0 + noise`` into one sum
    in another order, and graph and eager starts would differ in the last bit."""
    u = tf.random.stateless_uniform(tf.shape(x0), seed=seed, dtype=x0.dtype)
    noise = tf.subtract(u * (eps + eps), eps)
    return project(x0 + noise, x0, eps, clip_min, clip_max)
