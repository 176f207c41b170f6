"""The L-inf ball and pixel box shared by every attack (the ``clip_eta`` family of helpers)."""
import tensorflow as tf


def project(x: tf.Tensor, x0: tf.Tensor, eps: tf.Tensor, clip_min: tf.Tensor,
            clip_max: tf.Tensor) -> tf.Tensor:
    """``clip(clip(x, x0 - eps, x0 + eps), clip_min, clip_max)``: first the ball, then the box."""
    x = tf.clip_by_value(x, x0 - eps, x0 + eps)
    return tf.clip_by_value(x, clip_min, clip_max)


def random_start(x0: tf.Tensor, eps: tf.Tensor, clip_min: tf.Tensor, clip_max: tf.Tensor,
                 seed: tf.Tensor) -> tf.Tensor:
    """``proj(x0 + U(-eps, eps))`` with a stateless draw: the same ``seed`` ``[2]`` gives the same
    start for the same shape, on any device and inside or outside a graph."""
    noise = tf.random.stateless_uniform(tf.shape(x0), seed=seed, minval=-eps, maxval=eps,
                                        dtype=x0.dtype)
    return project(x0 + noise, x0, eps, clip_min, clip_max)
