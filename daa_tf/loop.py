"""The compiled loop shared by every attack, and its cache.

One ``tf.function`` per (model, loss, rule, targeted, jit, schedule, best) runs the whole step loop
as a ``tf.while_loop``: no host round trip and no Python per step. Each iteration: a gradient pass
at ``x``; the schedule's ``observe`` (APGD may restart some examples from their best point); the
step rule's direction ``V`` (:mod:`daa_tf.steps`); the schedule's ``step``
(:mod:`daa_tf.schedules`; PGD's is ``x <- proj(x + a sign(V))``, docs/algorithms.md#pgd). With
``best`` the loop also tracks each example's best iterate (:mod:`daa_tf.iterates`). Every number
that may change between calls (eps, step size, steps, box, seed-derived start, rule and schedule
parameters) enters as a tensor, so calls with the same input shapes never retrace.

A schedule with ``needs_gradients`` False (a query-based attack) gets forward passes only.
A schedule with ``owns_result`` (FAB) also reads the clean batch, ``eps``, the box and each
pass's success from ``params``, and gives the loop's point itself
(:meth:`~daa_tf.schedules.Schedule.result`) after one forward pass judges the last point.
Query schedules may also read each pass's success (``needs_success``: ``params["fooled"]`` in
``observe``), take per-example random keys (``random``: the loop's last argument ``keys``
``[N]`` uint32, handed to the schedule as ``params["keys"]``), stop the loop early
(``running``) and report the passes each example spent (``counts_queries``: the loop's outputs
end with ``queries`` int32 ``[N]``).

When neither the schedule nor best-iterate tracking reads loss values (PGD, FGSM, momentum PGD,
DAA), the gradient pass is the gradient-only function of before, and the loop is op for op the
loop of those attacks before schedules existed.
"""
import weakref
from typing import Any, Callable, Dict, Tuple

import keras
import tensorflow as tf

from daa_tf import iterates
from daa_tf.losses import LossFn, fooled
from daa_tf.schedules import FixedStep, Schedule
from daa_tf.steps import StepRule

Model = Callable[[tf.Tensor], tf.Tensor]


def is_keras_layer(model: Any) -> bool:
    """True for a Keras layer or model: Keras 3's, or Keras 2's (``tf_keras``, recognised by its
    base class, without importing it)."""
    if isinstance(model, keras.layers.Layer):
        return True
    return any(cls.__name__ == "Layer" and cls.__module__.startswith("tf_keras.")
               for cls in type(model).__mro__)


def call_model(model: Model, x: tf.Tensor) -> tf.Tensor:
    """Logits of ``model`` on ``x``. Keras models (Keras 3 and ``tf_keras``) run in inference mode
    (batch norm statistics, no dropout); a SavedModel loaded with ``tf.saved_model.load`` that is
    not callable itself runs its ``serve`` endpoint (what ``keras.Model.export`` writes); any
    other callable (a ``tf.Module``, a function) is called as it is."""
    if is_keras_layer(model):
        return model(x, training=False)
    if not callable(model) and hasattr(model, "serve"):
        return model.serve(x)
    return model(x)


def loss_gradient(model: Model, loss_fn: LossFn, x: tf.Tensor, y: tf.Tensor,
                  targeted: bool) -> tf.Tensor:
    """``G = d/dx sum_i L_i`` (negated for targeted attacks, which descend the loss)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(loss_fn(call_model(model, x), y))
    grad = tape.gradient(loss, x)
    return -grad if targeted else grad


def gradient_function(model: Model, loss_fn: LossFn, y: tf.Tensor, targeted: bool,
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


def value_and_gradient_function(model: Model, loss_fn: LossFn, y: tf.Tensor, targeted: bool,
                                jit_compile: bool
                                ) -> Callable[[tf.Tensor], Tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    """``x -> (objective [N], logits [N, C], G)`` in one pass: the per-example objective the attack
    ascends (the loss, negated for targeted attacks), the logits, and ``G`` as
    :func:`gradient_function` computes it. Kept out of the loop's graph without XLA, for the same
    oneDNN reason."""
    def value_and_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = call_model(model, x)
            loss = loss_fn(logits, y)
            total = tf.reduce_sum(loss)
        grad = tape.gradient(total, x)
        if targeted:
            return -loss, logits, -grad
        return loss, logits, grad
    if jit_compile:
        return value_and_gradient
    return tf.function(value_and_gradient, experimental_attributes={"_noinline": True})


def value_function(model: Model, loss_fn: LossFn, y: tf.Tensor, targeted: bool
                   ) -> Callable[[tf.Tensor], Tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    """``x -> (objective [N], logits [N, C], zeros like x)``: one forward pass (a query) for the
    schedules that read no gradient (``needs_gradients`` False); the zero "gradient" keeps the
    loop body's shape."""
    def value(x):
        logits = call_model(model, x)
        loss = loss_fn(logits, y)
        return (-loss if targeted else loss), logits, tf.zeros_like(x)
    return value


def _hooks(schedule: Schedule) -> Tuple[bool, bool, bool]:
    """The optional hooks of a query schedule: ``(needs_success, stops early, counts
    queries)``."""
    return (bool(getattr(schedule, "needs_success", False)), hasattr(schedule, "running"),
            bool(getattr(schedule, "counts_queries", False)))


def _build(get_model: Callable[[], Model], loss_fn: LossFn, rule: StepRule, targeted: bool,
           jit_compile: bool, schedule: Schedule, best: bool) -> Callable[..., Any]:
    valued = best or schedule.needs_values
    owns = schedule.owns_result
    wants_success, stops, counts = _hooks(schedule)
    wants_success = wants_success or owns

    def steps_loop(x0, y, x_start, eps, step_size, steps, clip_min, clip_max, params, keys=None):
        model = get_model()
        if owns:  # the schedule reads the ball's centre and radius and the box
            params = {**params, "x0": x0, "eps": eps, "clip_min": clip_min, "clip_max": clip_max}
        if keys is not None:  # per-example keys of a random schedule, sharded with the examples
            params = {**params, "keys": keys}
        state = rule.init_state(x_start, params)
        # proj(x) = clip(clip(x, x0 - eps, x0 + eps), clip_min, clip_max) is one clip to the
        # intersection of the ball and the box (they overlap: x0 lies in both; min and max are
        # exact, so the result is bitwise the same), whose bounds are computed once, not per step.
        low = tf.maximum(x0 - eps, clip_min)
        high = tf.minimum(x0 + eps, clip_max)
        moves = schedule.init_state(x_start, step_size, steps, params)

        if not valued:  # the gradient-only pass
            gradient = gradient_function(model, loss_fn, y, targeted, jit_compile)

            def body(i, x, state, moves):
                grad = gradient(x)
                v, state = rule.direction(grad, x, state, params)
                x, moves = schedule.step(i, x, v, moves, step_size, low, high, params)
                return i + 1, x, state, moves

            _, x, _, _ = tf.while_loop(lambda i, x, state, moves: i < steps, body,
                                       (tf.constant(0, tf.int32), x_start, state, moves))
            return x

        if schedule.needs_gradients:
            value_and_gradient = value_and_gradient_function(model, loss_fn, y, targeted,
                                                             jit_compile)
        else:  # a query-only schedule: forward passes, no gradient
            value_and_gradient = value_function(model, loss_fn, y, targeted)
        track = iterates.init(x_start) if best else ()

        def valued_body(i, x, state, moves, track):
            objective, logits, grad = value_and_gradient(x)
            success = fooled(logits, y, targeted) if best or wants_success else None
            if best:
                track = iterates.update(track, x, objective, success)
            x, grad, moves = schedule.observe(
                i, x, grad, objective, moves,
                {**params, "fooled": success} if wants_success else params)
            v, state = rule.direction(grad, x, state, params)
            x, moves = schedule.step(i, x, v, moves, step_size, low, high, params)
            return i + 1, x, state, moves, track

        def valued_cond(i, x, state, moves, track):
            if stops:  # a query schedule whose examples are all done ends the loop
                return tf.logical_and(i < steps, schedule.running(moves))
            return i < steps

        _, x, _, moves, track = tf.while_loop(
            valued_cond, valued_body, (tf.constant(0, tf.int32), x_start, state, moves, track))
        if owns:  # one forward pass judges the last point; the schedule gives the result
            objective, logits, _ = value_function(model, loss_fn, y, targeted)(x)
            x = schedule.result(x, objective, fooled(logits, y, targeted), moves, params)
            if best:  # the best-iterate state is the result's own
                track = iterates.init(x)
        counted = (schedule.queries(moves),) if counts else ()
        if not best:
            return (x,) + counted if counts else x
        # The last point had no gradient pass: one forward pass judges it.
        logits = call_model(model, x)
        objective = loss_fn(logits, y)
        if targeted:
            objective = -objective
        track = iterates.update(track, x, objective, fooled(logits, y, targeted))
        return (x,) + tuple(track) + counted

    return tf.function(steps_loop, jit_compile=jit_compile, reduce_retracing=False)


# model -> {key: compiled function}. Weak keys, and functions that reach their model through a weak
# reference, so the cache never keeps a user's model alive; callables that cannot be weakly
# referenced fall back to a small strong cache that holds them (so their id stays theirs).
_CACHE: "weakref.WeakKeyDictionary[Any, Dict[Tuple, Callable]]" = weakref.WeakKeyDictionary()
_STRONG_CACHE: Dict[Tuple, Tuple[Any, Callable]] = {}
_STRONG_LIMIT = 32


def cached(model: Model, key: Tuple,
           build: Callable[[Callable[[], Model]], Callable]) -> Callable:
    """``build(get_model)`` once per ``(model, key)``: compiled functions keyed by what they were
    built for, never keeping ``model`` alive (``get_model`` returns it)."""
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


def compiled_loop(model: Model, loss_fn: LossFn, rule: StepRule, targeted: bool,
                  jit_compile: bool, schedule: Schedule = FixedStep(), best: bool = False
                  ) -> Callable[..., Any]:
    """The cached compiled loop ``f(x0, y, x_start, eps, step_size, steps, clip_min, clip_max,
    params[, keys])`` for this model and configuration (``keys`` ``[N]`` uint32: a random
    schedule's per-example keys, :func:`daa_tf.draws.example_keys`).

    ``y`` is whatever ``loss_fn`` takes as labels (int ``[N]``; ``[N, 2]`` pairs for the losses
    toward a target; ODI's ``[N, C]`` weights). ``params``: the rule's and the schedule's tensors.
    Returns the last iterate ``x_adv``; with ``best``, the tuple ``(x_last, x_best, objective,
    fooled)`` of :mod:`daa_tf.iterates` (``x_best`` is the attack's result). A schedule that
    counts queries appends its ``queries`` ``[N]`` (``(x_last, queries)`` without ``best``).
    ``schedule`` defaults to PGD's fixed step, so ``compiled_loop(model, loss_fn, rule, targeted,
    jit_compile)`` is the loop of PGD, FGSM, momentum PGD and DAA, as before.
    """
    key = ("loop", loss_fn, rule, bool(targeted), bool(jit_compile), schedule, bool(best))
    return cached(model, key, lambda get_model: _build(get_model, loss_fn, rule, targeted,
                                                       jit_compile, schedule, bool(best)))


def compiled_logits(model: Model, jit_compile: bool) -> Callable[[tf.Tensor], tf.Tensor]:
    """The cached compiled inference ``f(x) -> logits``."""
    def build(get_model):
        return tf.function(lambda x: call_model(get_model(), x), jit_compile=jit_compile)
    return cached(model, ("logits", bool(jit_compile)), build)
