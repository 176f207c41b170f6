"""The attacks: FGSM / Rand+FGSM, PGD, momentum PGD, DAA-BLOB and DAA-DGF.

Each public function runs ``steps`` steps of ``x <- proj(x + a * sign(V))`` on the batch it is given,
inside one compiled loop (:mod:`daa_tf.loop`); only the direction ``V`` differs
(:mod:`daa_tf.steps`). Exact rules: ``docs`` of the project (ALGORITHMS).

Uniform arguments: ``model`` (a ``keras.Model`` or any callable returning logits ``[N, C]``), ``x``
(clean batch ``[N, ...]`` in ``[clip_min, clip_max]``), ``y`` (labels ``[N]``, or targets when
``targeted``), ``eps`` (L-inf radius, pixel units), ``step_size`` (pixel units), ``steps``. They
return the adversarial batch, a float32 ``tf.Tensor`` of ``x``'s shape.
"""
import dataclasses
from typing import Any, Dict, Optional, Union

import numpy as np
import tensorflow as tf

from daa_tf import loop as compiled
from daa_tf import steps as rules
from daa_tf import validation
from daa_tf.losses import LossFn, get_loss
from daa_tf.projection import project, random_start as draw_random_start

ATTACKS = ("fgsm", "pgd", "momentum_pgd", "daa_blob", "daa_dgf")
# Default DAA constants per loss (the authors' MNIST settings, ALGORITHMS.md).
DEFAULT_C = {"daa_blob": {"xent": 1.1, "cw": 10.0}, "daa_dgf": {"xent": -0.001, "cw": -0.01}}
DEFAULT_PARTICLES = 200
DEFAULT_DECAY = 1.0


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """A validated attack configuration (everything but the data and the model)."""

    attack: str
    eps: float
    step_size: float
    steps: int
    loss: Union[str, LossFn]
    random_start: bool
    clip_min: float
    clip_max: float
    targeted: bool
    rule: Any
    params: Dict[str, float]
    jit_compile: bool

    @property
    def interacting(self) -> bool:
        """True for DAA, whose examples interact inside groups (and so need rounds)."""
        return isinstance(self.rule, rules.Particles)

    @property
    def particles(self) -> Optional[int]:
        return self.rule.particles if self.interacting else None


def make_config(attack: str, *, eps: float, step_size: Optional[float] = None,
                steps: Optional[int] = None, loss: Union[str, LossFn] = "xent",
                random_start: bool = True, clip_min: float = 0.0, clip_max: float = 1.0,
                targeted: bool = False, c: Optional[float] = None,
                particles: int = DEFAULT_PARTICLES, decay: float = DEFAULT_DECAY,
                jit_compile: Optional[bool] = None) -> AttackConfig:
    """Validates and completes an attack's settings.

    FGSM takes one step of ``step_size`` (default ``eps``). ``c`` defaults per loss; DGF's ``c`` is
    stated for a unit pixel range and scaled here by ``1 / (clip_max - clip_min)^2``.
    """
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}: use one of {', '.join(ATTACKS)}")
    get_loss(loss)
    if attack == "fgsm":
        if steps not in (None, 1):
            raise ValueError(f"fgsm takes exactly one step, got steps={steps}")
        steps = 1
        step_size = eps if step_size is None else step_size
    if step_size is None or steps is None:
        raise ValueError(f"{attack} needs step_size and steps")
    validation.check_params(eps=eps, step_size=step_size, steps=steps, clip_min=clip_min,
                            clip_max=clip_max)
    params: Dict[str, float] = {}
    if attack == "momentum_pgd":
        rule: Any = rules.Momentum()
        params["decay"] = float(decay)
    elif attack in DEFAULT_C:
        if int(particles) != particles or particles < 2:
            raise ValueError(f"particles (the DAA group size) must be a whole number >= 2, got "
                             f"{particles!r}")
        if c is None:
            c = DEFAULT_C[attack].get(loss if isinstance(loss, str) else "xent")
        if not np.isfinite(c):
            raise ValueError(f"c must be finite, got {c!r}")
        if attack == "daa_dgf":
            c = c / (clip_max - clip_min) ** 2
        rule = rules.Particles("blob" if attack == "daa_blob" else "dgf", int(particles))
        params["c"] = float(c)
    else:
        rule = rules.SignGradient()
    return AttackConfig(attack=attack, eps=float(eps), step_size=float(step_size),
                        steps=int(steps), loss=loss, random_start=bool(random_start),
                        clip_min=float(clip_min), clip_max=float(clip_max),
                        targeted=bool(targeted), rule=rule, params=params,
                        jit_compile=compiled.resolve_jit_compile(jit_compile))


def seed_tensor(seed: Optional[int], stream: int = 0) -> tf.Tensor:
    """A stateless-RNG seed ``[2]`` int64; ``None`` draws a fresh one from the OS."""
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
    return tf.constant([int(seed), int(stream)], tf.int64)


def start_points(cfg: AttackConfig, x0: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The starting points of a run: ``proj(x0 + U(-eps, eps))`` or ``x0``."""
    if not cfg.random_start:
        return x0
    return draw_random_start(x0, tf.constant(cfg.eps, x0.dtype), tf.constant(cfg.clip_min, x0.dtype),
                             tf.constant(cfg.clip_max, x0.dtype), seed)


def run_steps(model: compiled.Model, cfg: AttackConfig, x0: tf.Tensor, y: tf.Tensor,
              x_start: tf.Tensor, steps: Optional[int] = None) -> tf.Tensor:
    """Runs ``steps`` (default ``cfg.steps``) steps from ``x_start`` (no checks: callers validate).

    ``x0`` is the clean batch (centre of the ball), float32; ``y`` int32 labels.
    """
    fn = compiled.compiled_loop(model, get_loss(cfg.loss), cfg.rule, cfg.targeted,
                                cfg.jit_compile)
    f32 = lambda v: tf.constant(v, tf.float32)  # noqa: E731
    params = {k: f32(v) for k, v in cfg.params.items()}
    return fn(x0, y, x_start, f32(cfg.eps), f32(cfg.step_size),
              tf.constant(cfg.steps if steps is None else steps, tf.int32),
              f32(cfg.clip_min), f32(cfg.clip_max), params)


def _attack(attack: str, model: compiled.Model, x: Any, y: Any, x_init: Any, seed: Optional[int],
            **settings: Any) -> tf.Tensor:
    cfg = make_config(attack, **settings)
    if x_init is not None and cfg.random_start:
        raise ValueError("x_init gives the starting points; pass random_start=False with it")
    if tf.executing_eagerly():
        x_np = validation.as_batch(x, np.float32, "x")
        y_np = np.asarray(y)
        validation.check_batch(x_np, y_np, cfg.clip_min, cfg.clip_max)
        validation.check_model_output(lambda t: compiled.call_model(model, t), x_np[:32],
                                      y_np)
        if x_init is not None:
            init_np = validation.as_batch(x_init, np.float32, "x_init")
            if init_np.shape != x_np.shape:
                raise ValueError(f"x_init has shape {init_np.shape}, x has {x_np.shape}")
            if not np.all(np.isfinite(init_np)):
                raise ValueError("x_init contains NaN or inf values")
    x0 = tf.cast(tf.convert_to_tensor(x), tf.float32)
    y_t = tf.cast(tf.convert_to_tensor(y), tf.int32)
    if x_init is not None:
        start = project(tf.cast(tf.convert_to_tensor(x_init), tf.float32), x0, cfg.eps,
                        cfg.clip_min, cfg.clip_max)
    else:
        start = start_points(cfg, x0, seed_tensor(seed))
    return run_steps(model, cfg, x0, y_t, start)


def fgsm(model: compiled.Model, x: Any, y: Any, *, eps: float, step_size: Optional[float] = None,
         steps: int = 1, loss: Union[str, LossFn] = "xent", random_start: bool = False,
         x_init: Any = None, clip_min: float = 0.0, clip_max: float = 1.0,
         targeted: bool = False, seed: Optional[int] = None,
         jit_compile: Optional[bool] = None) -> tf.Tensor:
    """FGSM: one step ``proj(x + a sign(G))``, ``a = eps`` by default; ``random_start=True`` gives
    Rand+FGSM (pass a smaller ``step_size`` then, as Tramer et al. do)."""
    return _attack("fgsm", model, x, y, x_init, seed, eps=eps, step_size=step_size, steps=steps,
                   loss=loss, random_start=random_start, clip_min=clip_min, clip_max=clip_max,
                   targeted=targeted, jit_compile=jit_compile)


def pgd(model: compiled.Model, x: Any, y: Any, *, eps: float, step_size: float, steps: int,
        loss: Union[str, LossFn] = "xent", random_start: bool = True, x_init: Any = None,
        clip_min: float = 0.0, clip_max: float = 1.0, targeted: bool = False,
        seed: Optional[int] = None, jit_compile: Optional[bool] = None) -> tf.Tensor:
    """PGD (Madry et al.): ``steps`` times ``x <- proj(x + a sign(G))``."""
    return _attack("pgd", model, x, y, x_init, seed, eps=eps, step_size=step_size, steps=steps,
                   loss=loss, random_start=random_start, clip_min=clip_min, clip_max=clip_max,
                   targeted=targeted, jit_compile=jit_compile)


def momentum_pgd(model: compiled.Model, x: Any, y: Any, *, eps: float, step_size: float,
                 steps: int, loss: Union[str, LossFn] = "xent", random_start: bool = True,
                 x_init: Any = None, clip_min: float = 0.0, clip_max: float = 1.0,
                 targeted: bool = False, seed: Optional[int] = None,
                 decay: float = DEFAULT_DECAY, jit_compile: Optional[bool] = None) -> tf.Tensor:
    """Momentum PGD (paper eq. 7): ``g <- decay g + G_i / ||G_i||_1``, ``x <- proj(x + a sign(g))``;
    ``g`` starts at zero on every call."""
    return _attack("momentum_pgd", model, x, y, x_init, seed, eps=eps, step_size=step_size,
                   steps=steps, loss=loss, random_start=random_start, clip_min=clip_min,
                   clip_max=clip_max, targeted=targeted, decay=decay, jit_compile=jit_compile)


def daa_blob(model: compiled.Model, x: Any, y: Any, *, eps: float, step_size: float, steps: int,
             loss: Union[str, LossFn] = "xent", random_start: bool = True, x_init: Any = None,
             clip_min: float = 0.0, clip_max: float = 1.0, targeted: bool = False,
             seed: Optional[int] = None, c: Optional[float] = None,
             particles: int = DEFAULT_PARTICLES, jit_compile: Optional[bool] = None) -> tf.Tensor:
    """DAA-BLOB (paper eq. 21) on consecutive groups of ``particles`` examples of ``x``.

    ``c`` defaults to 1.1 (xent) / 10 (cw); ``c = 0`` is PGD. Groups never interact, so a batch
    of whole groups runs the same algorithm whatever its size (up to the model's float rounding,
    which on CPU kernels can depend on the batch size).
    """
    return _attack("daa_blob", model, x, y, x_init, seed, eps=eps, step_size=step_size,
                   steps=steps, loss=loss, random_start=random_start, clip_min=clip_min,
                   clip_max=clip_max, targeted=targeted, c=c, particles=particles,
                   jit_compile=jit_compile)


def daa_dgf(model: compiled.Model, x: Any, y: Any, *, eps: float, step_size: float, steps: int,
            loss: Union[str, LossFn] = "xent", random_start: bool = True, x_init: Any = None,
            clip_min: float = 0.0, clip_max: float = 1.0, targeted: bool = False,
            seed: Optional[int] = None, c: Optional[float] = None,
            particles: int = DEFAULT_PARTICLES, jit_compile: Optional[bool] = None) -> tf.Tensor:
    """DAA-DGF (paper eq. 22) on consecutive groups of ``particles`` examples of ``x``.

    ``c`` defaults to -0.001 (xent) / -0.01 (cw) for a unit pixel range, scaled internally by
    ``1 / (clip_max - clip_min)^2``.
    """
    return _attack("daa_dgf", model, x, y, x_init, seed, eps=eps, step_size=step_size,
                   steps=steps, loss=loss, random_start=random_start, clip_min=clip_min,
                   clip_max=clip_max, targeted=targeted, c=c, particles=particles,
                   jit_compile=jit_compile)


ATTACK_FUNCTIONS = {"fgsm": fgsm, "pgd": pgd, "momentum_pgd": momentum_pgd,
                    "daa_blob": daa_blob, "daa_dgf": daa_dgf}
