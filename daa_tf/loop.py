"""The compiled sign-gradient loop shared by every attack, and its cache.

One ``tf.function`` per (model, loss, rule, targeted, jit) runs the whole step loop as a
``tf.while_loop``: no host round trip and no Python per step. Every number that may change between
calls (eps, step size, steps, box, seed-derived start, rule parameters) enters as a tensor, so calls
with the same input shapes never retrace.
"""
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

import keras
import tensorflow as tf

from daa_tf.losses import LossFn

Model = Callable[[tf.Tensor], tf.Tensor]


def default_jit_compile() -> bool:
    """XLA on GPU/TPU, the plain graph (oneDNN kernels) on CPU: on the CPU, XLA measured slower
    for these nets (see benchmarks/ and the README)."""
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def resolve_jit_compile(jit_compile: Optional[bool]) -> bool:
    """``None`` picks :func:`default_jit_compile`; a bool is the user's override."""
    return default_jit_compile() if jit_compile is None else bool(jit_compile)


def call_model(model: Model, x: tf.Tensor) -> tf.Tensor:
    """Logits of ``model`` on ``x``; Keras models run in inference mode (batch norm statistics)."""
    if isinstance(model, keras.layers.Layer):
        return model(x, training=False)
    return model(x)


def loss_gradient(model: Model, loss_fn: LossFn, x: tf.Tensor, y: tf.Tensor,
                  targeted: bool) -> tf.Tensor:
    """``G = d/dx sum_i L_i`` (negated for targeted attacks, which descend the loss)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(loss_fn(call_model(model, x), y))
    grad = tape.gradient(loss, x)
    return -grad if targeted else grad


def _gradient_function(model: Model, loss_fn: LossFn, y: tf.Tensor, targeted: bool,
                       jit_compile: bool) -> Callable[[tf.Tensor], tf.Tensor]:
    """``x -> G`` for the step loop. Without XLA it is a function of its own, kept out of the
    loop's graph (``_noinline``): in the loop's lowered (cyclic) graph, whether oneDNN's rewrite
    of ``MaxPoolGrad`` happens depends on a traversal order that varies from one compiled function
    to the next (measured: 11 ms or 80 ms per step of the MNIST net's two pooling gradients); in
    a graph of its own the rewrite always happens. Same ops, same values."""
    def gradient(x):
        return loss_gradient(model, loss_fn, x, y, targeted)
    if jit_compile:
        return gradient
    return tf.function(gradient, experimental_attributes={"_noinline": True})


def _build(get_model: Callable[[], Model], loss_fn: LossFn, rule: Any, targeted: bool,
           jit_compile: bool) -> Callable[..., tf.Tensor]:
    def run_steps(x0, y, x_start, eps, step_size, steps, clip_min, clip_max, params):
        model = get_model()
        state = rule.init_state(x_start, params)
        # proj(x) = clip(clip(x, x0 - eps, x0 + eps), clip_min, clip_max) is one clip to the
        # intersection of the ball and the box (they overlap: x0 lies in both; min and max are
        # exact, so the result is bitwise the same), whose bounds are computed once, not per step.
        low = tf.maximum(x0 - eps, clip_min)
        high = tf.minimum(x0 + eps, clip_max)
        gradient = _gradient_function(model, loss_fn, y, targeted, jit_compile)

        def body(i, x, state):
            grad = gradient(x)
            v, state = rule.direction(grad, x, state, params)
            x = tf.clip_by_value(x + step_size * tf.sign(v), low, high)
            return i + 1, x, state

        _, x, _ = tf.while_loop(lambda i, x, state: i < steps, body,
                                (tf.constant(0, tf.int32), x_start, state))
        return x

    return tf.function(run_steps, jit_compile=jit_compile, reduce_retracing=False)


# model -> {key: compiled function}. Weak keys, and functions that reach their model through a weak
# reference, so the cache never keeps a user's model alive; callables that cannot be weakly
# referenced fall back to a small strong cache that holds them (so their id stays theirs).
_CACHE: "weakref.WeakKeyDictionary[Any, Dict[Tuple, Callable]]" = weakref.WeakKeyDictionary()
_STRONG_CACHE: Dict[Tuple, Tuple[Any, Callable]] = {}
_STRONG_LIMIT = 32


def _cached(model: Model, key: Tuple,
            build: Callable[[Callable[[], Model]], Callable]) -> Callable:
    try:
        per_model = _CACHE.setdefault(model, {})
        model_ref = weakref.ref(model)
    except TypeError:
        per_model = None
    if per_model is not None:
        if key not in per_model:
            per_model[key] = build(model_ref)
        return per_model[key]
    strong_key = (id(model),) + key
    if strong_key not in _STRONG_CACHE:
        if len(_STRONG_CACHE) >= _STRONG_LIMIT:
            _STRONG_CACHE.pop(next(iter(_STRONG_CACHE)))
        _STRONG_CACHE[strong_key] = (model, build(lambda: model))
    return _STRONG_CACHE[strong_key][1]


def compiled_loop(model: Model, loss_fn: LossFn, rule: Any, targeted: bool,
                  jit_compile: bool) -> Callable[..., tf.Tensor]:
    """The cached compiled loop ``f(x0, y, x_start, eps, step_size, steps, clip_min, clip_max,
    params) -> x_adv`` for this model and configuration."""
    key = ("loop", loss_fn, rule, bool(targeted), bool(jit_compile))
    return _cached(model, key,
                   lambda get_model: _build(get_model, loss_fn, rule, targeted, jit_compile))


def compiled_logits(model: Model, jit_compile: bool) -> Callable[[tf.Tensor], tf.Tensor]:
    """The cached compiled inference ``f(x) -> logits``."""
    def build(get_model):
        return tf.function(lambda x: call_model(get_model(), x), jit_compile=jit_compile)
    return _cached(model, ("logits", bool(jit_compile)), build)
