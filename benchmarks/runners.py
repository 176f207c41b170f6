"""Timed callables: the attack loop, the gradient floor, a step rule with a frozen gradient, and
the DAA particle kernel alone. Each returns ``run()`` (and the compiled function, for its tracing
count)."""
from typing import Dict, Optional

def attack_runner(model, attack: str, x, y, steps: int, particles: int, jit: Optional[bool],
                  settings: Dict[str, float]):
    """``(run, compiled_fn, cfg)``: ``run()`` does ``steps`` steps of ``attack`` on the batch."""
    import tensorflow as tf
    from daa_tf import attacks
    cfg = attacks.make_config(attack, steps=steps, jit_compile=jit, particles=particles,
                              **settings)
    x0, yt = tf.constant(x), tf.constant(y)
    start = attacks.start_points(cfg, x0, attacks.seed_tensor(0))
    fn = attacks.compiled_steps(model, cfg)

    def run(n_steps: int = steps):
        return attacks.run_steps(model, cfg, x0, yt, start, steps=n_steps).numpy()
    return run, fn, cfg


def floor_runner(model, x, y, steps: int, jit: bool):
    """The gradient floor: a compiled ``tf.while_loop`` doing only ``x += d/dx sum_i L_i``, with
    the gradient computed as the attacks' loop computes it (see ``daa_tf.loop``)."""
    import tensorflow as tf
    from daa_tf import loop
    from daa_tf.losses import get_loss
    loss_fn = get_loss("xent")

    def floor(x, y, steps):
        gradient = loop.gradient_function(model, loss_fn, y, False, jit)

        def body(i, x):
            return i + 1, x + gradient(x)
        return tf.while_loop(lambda i, x: i < steps, body, (tf.constant(0), x))[1]

    fn = tf.function(floor, jit_compile=jit)
    x0, yt = tf.constant(x), tf.constant(y)

    def run(n_steps: int = steps):
        return fn(x0, yt, tf.constant(n_steps)).numpy()
    return run, fn


def rule_runner(model, attack: str, x, y, steps: int, particles: int, jit: bool,
                settings: Dict[str, float]):
    """``steps`` steps of ``attack`` with a frozen gradient (computed once at the start): the cost
    of the step rule (direction, sign step, projection) without the model."""
    import tensorflow as tf
    from daa_tf import attacks, loop
    from daa_tf.losses import get_loss
    x0, yt = tf.constant(x), tf.constant(y)
    if attack == "floor":  # the floor's own update: an add
        def rule_loop(x, g, steps):
            return tf.while_loop(lambda i, x: i < steps, lambda i, x: (i + 1, x + g),
                                 (tf.constant(0), x))[1]
        params, cfg = {}, None
    else:
        cfg = attacks.make_config(attack, steps=steps, jit_compile=jit, particles=particles,
                                  **settings)
        scalars, params = attacks.loop_arguments(cfg)
        eps, size, _, clip_min, clip_max = scalars
        low = tf.maximum(x0 - eps, clip_min)
        high = tf.minimum(x0 + eps, clip_max)

        def rule_loop(x, g, steps):
            def body(i, x, state):
                v, state = cfg.rule.direction(g, x, state, params)
                return i + 1, tf.clip_by_value(x + size * tf.sign(v), low, high), state
            return tf.while_loop(lambda i, x, s: i < steps, body,
                                 (tf.constant(0), x, cfg.rule.init_state(x, params)))[1]
    grad = loop.loss_gradient(model, get_loss("xent"), x0, yt, False)
    fn = tf.function(rule_loop, jit_compile=jit)
    n = tf.constant(steps)
    return (lambda: fn(x0, grad, n).numpy()), fn


def kernel_runner(particles: int, dim: int, tiled: bool):
    """The DAA-BLOB direction alone on one group of ``particles`` random points ``[1, M, dim]``."""
    import numpy as np
    import tensorflow as tf
    from daa_tf import particles as kernel
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 1, (1, particles, dim)).astype(np.float32))
    g = tf.constant(rng.normal(0, 1e-3, (1, particles, dim)).astype(np.float32))
    mask, sizes = tf.ones([1, particles]), tf.fill([1], float(particles))
    saved = kernel.TILE_THRESHOLD
    kernel.TILE_THRESHOLD = particles - 1 if tiled else particles
    try:  # the path is chosen while tracing
        fn = tf.function(lambda g, x: kernel.blob_direction(g, x, mask, sizes, 1.1))
        fn.get_concrete_function(g, x)
    finally:
        kernel.TILE_THRESHOLD = saved
    return lambda: fn(g, x).numpy()
