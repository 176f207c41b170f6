"""The L-inf ball and pixel box shared by every attack (the ``clip_eta`` family of helpers) and
the random starts (docs/algorithms.md#projection-and-random-start)."""
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


def sphere_start(x0: tf.Tensor, radius: tf.Tensor, eps: tf.Tensor, clip_min: tf.Tensor,
                 clip_max: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """AutoAttack's random start: ``proj(x0 + radius * t / max|t|)`` with ``t ~ U[-1, 1)`` per
    coordinate (``max`` over each example), drawn statelessly from ``seed`` ``[2]``: a point at
    L-inf distance ``radius`` (``<= eps``) from ``x0`` before the box clip."""
    u = tf.random.stateless_uniform(tf.shape(x0), seed=seed, dtype=x0.dtype)
    t = tf.subtract(u + u, 1.0)
    flat = tf.reshape(tf.abs(t), [tf.shape(t)[0], -1])
    top = tf.reshape(tf.reduce_max(flat, axis=1), [-1] + [1] * (len(x0.shape) - 1))
    top = tf.maximum(top, tf.constant(1e-30, x0.dtype))
    return project(x0 + radius * (t / top), x0, eps, clip_min, clip_max)
