"""Timed callables: the attack loop, the gradient floor, a step rule with a frozen gradient, the
DAA particle kernel alone, and ART's PGD (a peer). Each returns ``run()`` (and the compiled
function, for its tracing count)."""
from typing import Any, Callable, Dict, Optional, Tuple

from benchmarks.common import art_classifier, import_art

ART_INSTALL = "pip install adversarial-robustness-toolbox"


def attack_config(attack: str, steps: int, particles: int, jit: Optional[bool],
                  settings: Dict[str, float]) -> Any:
    """The :class:`daa_tf.engine.AttackConfig` timed for ``attack``: the model's settings, except
    that APGD-scheduled attacks start at the catalogue's step size (``2 eps``) and MultiTargeted
    ascends the margin loss (its form toward the target, as :func:`daa_tf.multitargeted`)."""
    from daa_tf import catalogue, engine
    spec = catalogue.get_spec(attack)
    kw = dict(settings)
    if spec.default_step is not None and not spec.one_step:  # APGD: its own 2 eps
        kw.pop("step_size", None)
    if spec.targets:
        kw["loss"] = "margin"
    return engine.make_config(attack, steps=steps, jit_compile=jit, particles=particles, **kw)


def attack_inputs(model: Any, cfg: Any, x0: Any, y: Any) -> Tuple[Any, Any]:
    """``(labels, start)`` of one run of ``cfg`` on the batch ``x0`` (seed 0): ``y`` and the
    random start, or for MultiTargeted its first target run's: the ``(true class, target)`` pairs
    toward each example's most likely wrong class (clean logits) and that run's start."""
    import tensorflow as tf
    from daa_tf import engine, loop
    from daa_tf.targets import target_classes, target_pairs
    seed = engine.seed_tensor(0)
    if not cfg.settings.targets:
        return tf.constant(y), engine.start_points(cfg, x0, seed)
    logits = loop.compiled_logits(model, cfg.jit_compile)(x0).numpy()
    pairs = target_pairs(y, target_classes(logits, y, cfg.settings.targets), 0)
    return tf.constant(pairs), engine.start_points(cfg, x0, engine.target_seed(seed, 0))


def attack_runner(model: Any, attack: str, x: Any, y: Any, steps: int, particles: int,
                  jit: Optional[bool], settings: Dict[str, float]
                  ) -> Tuple[Callable[..., Any], Any, Any]:
    """``(run, compiled_fn, cfg)``: ``run(n_steps=steps)`` does ``n_steps`` steps of ``attack``
    on the batch (MultiTargeted: one target run, see :func:`attack_inputs`)."""
    import tensorflow as tf
    from daa_tf import engine
    cfg = attack_config(attack, steps, particles, jit, settings)
    x0 = tf.constant(x)
    yt, start = attack_inputs(model, cfg, x0, y)
    fn = engine.compiled(model, cfg)

    def run(n_steps: int = steps):
        return engine.points(cfg, engine.run_loop(model, cfg, x0, yt, start,
                                                   steps=n_steps)).numpy()
    return run, fn, cfg


def floor_runner(model: Any, x: Any, y: Any, steps: int, jit: bool
                 ) -> Tuple[Callable[..., Any], Any]:
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


def rule_runner(model: Any, attack: str, x: Any, y: Any, steps: int, particles: int, jit: bool,
                settings: Dict[str, float]) -> Tuple[Callable[[], Any], Any]:
    """``steps`` steps of ``attack`` with a frozen gradient (computed once at the start): the cost
    of the step rule (direction, sign step, projection) without the model. Attacks whose loop
    reads loss values (APGD's schedule, best iterates) also run the schedule's ``observe`` and
    ``step`` and the best-iterate update on frozen objective and logits."""
    import tensorflow as tf
    from daa_tf import loop
    from daa_tf.losses import get_loss
    x0, yt = tf.constant(x), tf.constant(y)
    cfg = None if attack == "floor" else attack_config(attack, steps, particles, jit, settings)
    grad = None
    if cfg is None:  # the floor's own update: an add
        def rule_loop(x, g, steps):
            return tf.while_loop(lambda i, x: i < steps, lambda i, x: (i + 1, x + g),
                                 (tf.constant(0), x))[1]
    elif cfg.best or cfg.schedule.needs_values:
        rule_loop, grad = _valued_rule_loop(model, cfg, x0, y)
    else:
        size, params, low, high = _projection(cfg, x0)

        def rule_loop(x, g, steps):
            def body(i, x, state):
                v, state = cfg.rule.direction(g, x, state, params)
                return i + 1, tf.clip_by_value(x + size * tf.sign(v), low, high), state
            return tf.while_loop(lambda i, x, s: i < steps, body,
                                 (tf.constant(0), x, cfg.rule.init_state(x, params)))[1]
    if grad is None:  # the gradient the paper's attacks and the floor follow
        grad = loop.loss_gradient(model, get_loss("xent"), x0, yt, False)
    fn = tf.function(rule_loop, jit_compile=jit)
    n = tf.constant(steps)
    return (lambda: fn(x0, grad, n).numpy()), fn


def _projection(cfg: Any, x0: Any) -> Tuple[Any, Any, Any, Any]:
    """``(step size, rule parameters, low, high)`` of ``cfg`` on the batch ``x0``: ``low`` and
    ``high`` bound the projection (the eps-ball around ``x0`` inside the pixel box)."""
    import tensorflow as tf
    from daa_tf import engine
    scalars, params = engine.loop_arguments(cfg)
    eps, size, _, clip_min, clip_max = scalars
    return size, params, tf.maximum(x0 - eps, clip_min), tf.minimum(x0 + eps, clip_max)


def _valued_rule_loop(model: Any, cfg: Any, x0: Any, y: Any) -> Tuple[Callable[..., Any], Any]:
    """``(rule_loop(x, g, steps), g)`` for a loop reading loss values: the compiled loop's body
    (best-iterate update, schedule ``observe``, direction, schedule ``step``; see
    ``daa_tf.loop``) with the objective, logits and gradient ``g`` of the start frozen."""
    import tensorflow as tf
    from daa_tf import iterates, loop
    from daa_tf.losses import fooled
    labels, _ = attack_inputs(model, cfg, x0, y)
    targeted = cfg.settings.targeted
    objective, logits, grad = loop.value_and_gradient_function(
        model, cfg.loss_fn, labels, targeted, cfg.jit_compile)(x0)
    size, params, low, high = _projection(cfg, x0)
    rule, schedule, best = cfg.rule, cfg.schedule, cfg.best

    def rule_loop(x, g, steps):
        def body(i, x, state, moves, track):
            if best:
                track = iterates.update(track, x, objective, fooled(logits, labels, targeted))
            x, grad, moves = schedule.observe(i, x, g, objective, moves, params)
            v, state = rule.direction(grad, x, state, params)
            x, moves = schedule.step(i, x, v, moves, size, low, high, params)
            return i + 1, x, state, moves, track
        return tf.while_loop(
            lambda i, *_: i < steps, body,
            (tf.constant(0), x, rule.init_state(x, params),
             schedule.init_state(x, size, steps, params), iterates.init(x) if best else ()))[1]
    return rule_loop, grad


def kernel_runner(particles: int, dim: int, tiled: bool) -> Callable[[], Any]:
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


def art_pgd_runner(model: Any, x: Any, y: Any, steps: int, settings: Dict[str, float]
                   ) -> Optional[Callable[[], Any]]:
    """ART's ``ProjectedGradientDescent`` (L-inf, ``eps``, ``eps_step`` = the step size,
    ``max_iter = steps``, one random start, the whole batch at once) on a
    ``TensorFlowV2Classifier`` of ``model`` (the box as ``clip_values``, from-logits sparse
    cross-entropy): ``run()`` is one ``generate``. None when ``art`` is not importable."""
    pgd_class = import_art("art.attacks.evasion.ProjectedGradientDescent")
    if pgd_class is None:
        return None
    import numpy as np
    import tensorflow as tf
    from daa_tf import engine
    classifier = art_classifier(model, engine.num_classes(model, tf.constant(x[:1])),
                                x.shape[1:], (settings["clip_min"], settings["clip_max"]))
    attack = pgd_class(
        classifier, norm=np.inf, eps=settings["eps"], eps_step=settings["step_size"],
        max_iter=steps, targeted=False, num_random_init=1, batch_size=len(x), verbose=False)

    def run() -> Any:
        np.random.seed(0)  # ART draws its random start from NumPy's generator
        return attack.generate(x, y)
    return run
