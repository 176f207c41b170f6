"""MultiTargeted (Gowal et al. 2019; docs/algorithms.md#multitargeted): for each example, its ``k``
most likely wrong classes by the clean logits, each attacked in turn by a base attack ascending
the loss's form toward that class, and the worst case kept.

The base attack is any catalogue attack (PGD, momentum PGD, DAA, APGD, APGD with DAA's direction):
the target runs are the same compiled loop with the labels ``[N, 2]`` = (true class, target)
(:func:`daa_tf.losses.target_form`). The worst case: an example keeps the point of the first target
run that fooled it; an example never fooled keeps the point with the highest (untargeted) loss over
the runs; for the margin loss that is the highest margin ``max_{j != y} z_j - z_y``, the choice of
deepmind's ``MultiTargetedPGDAttack``.
"""
from typing import Any, Dict, Optional, Union

import numpy as np
import tensorflow as tf

from daa_tf import attacks, catalogue, validation
from daa_tf import loop
from daa_tf.losses import LossFn, fooled, get_loss


def target_classes(logits: Any, labels: Any, k: int) -> np.ndarray:
    """The ``k`` most likely wrong classes of each example, most likely first, int32
    ``[N, min(k, C - 1)]`` (ties: the lower class index first; a model with fewer than ``k + 1``
    classes gets all its wrong classes). ``logits`` ``[N, C]`` of the clean inputs, ``labels``
    ``[N]``."""
    z = np.array(logits, np.float64, copy=True)
    labels = np.asarray(labels).astype(np.int64)
    if k < 1 or z.shape[1] < 2:
        raise ValueError(f"num_targets must be at least 1 and the model needs 2 classes or more, "
                         f"got {k} targets and {z.shape[1]} classes")
    k = min(k, z.shape[1] - 1)
    z[np.arange(len(z)), labels] = -np.inf
    return np.argsort(-z, axis=1, kind="stable")[:, :k].astype(np.int32)


def target_pairs(labels: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """The labels of the ``k``-th target run: ``[N, 2]`` int32 (true class, target)."""
    return np.stack([np.asarray(labels, np.int32), targets[:, k]], axis=1)


def multitargeted(model: loop.Model, x: Any, y: Any, *, eps: float, steps: int,
                  base: str = "apgd", num_targets: int = catalogue.DEFAULT_TARGETS,
                  loss: Union[str, LossFn] = "margin", step_size: Optional[float] = None,
                  random_start: bool = True, clip_min: float = 0.0, clip_max: float = 1.0,
                  seed: attacks.SeedLike = None, c: Optional[float] = None,
                  particles: Optional[int] = None, decay: Optional[float] = None,
                  init: Optional[str] = None, odi_steps: Optional[int] = None,
                  odi_step_size: Optional[float] = None, best: Optional[bool] = None,
                  early_stop: bool = True, jit_compile: Optional[bool] = None) -> tf.Tensor:
    """MultiTargeted on the batch ``x`` ``[N, ...]`` (pixel units in ``[clip_min, clip_max]``)
    with labels ``y`` ``[N]``; eager mode only (the runs are chosen per example on the host).

    ``base``: the attack run toward each target, a name of :data:`daa_tf.catalogue.ATTACKS`
    (``pgd``, ``momentum_pgd``, ``daa_blob``, ``daa_dgf``, ``apgd``, ``apgd_daa_blob``,
    ``apgd_daa_dgf``), with its own settings (``step_size``: default ``2 eps`` under APGD, required
    for PGD-like bases; ``c``, ``particles``, ``decay``; ``best``: the base's default).
    ``num_targets``: the ``k`` most likely wrong classes (clean logits), attacked in that order,
    each from its own random start (and ODI start). ``loss``: a loss name, used in its form toward
    the target (``margin``: ``z_t - z_y``; ``dlr``: AutoAttack's targeted DLR; ``xent`` and
    ``cw``: descending them toward ``t``). ``early_stop`` (bases whose examples do not interact):
    examples already fooled are not attacked by the later targets (the result is the same).
    Returns the worst case over the targets, float32 ``[N, ...]``, within ``eps`` of ``x``.
    Gradients per image: ``min(num_targets, C - 1) * (odi_steps + steps)``.
    """
    cfg = _base_config(base, dict(
        eps=eps, step_size=step_size, steps=steps, loss=loss, random_start=random_start,
        clip_min=clip_min, clip_max=clip_max, targets=num_targets, init=init,
        odi_steps=odi_steps, odi_step_size=odi_step_size, best=best, jit_compile=jit_compile),
        c, particles, decay)
    s = cfg.settings
    if s.targets < 1:
        raise ValueError(f"num_targets must be at least 1, got {num_targets}")
    x_np = validation.as_batch(x, np.float32, "x")
    y_np = np.asarray(y)
    validation.check_batch(x_np, y_np, s.clip_min, s.clip_max)
    y_np = y_np.astype(np.int32)
    logits_fn = loop.compiled_logits(model, cfg.jit_compile)
    validation.check_model_output(logits_fn, x_np[:32], y_np)
    targets = target_classes(logits_fn(tf.constant(x_np)).numpy(), y_np, s.targets)
    return tf.constant(_worst_over_targets(model, cfg, x_np, y_np, targets,
                                           attacks.seed_tensor(seed),
                                           early_stop and not cfg.interacting, logits_fn))


def _base_config(base: str, settings: Dict[str, Any], c: Optional[float],
                 particles: Optional[int], decay: Optional[float]) -> attacks.AttackConfig:
    """The base attack's configuration with ``targets`` runs; only the settings its rule takes."""
    if base == "multitargeted" or catalogue.get_spec(base).targets:
        raise ValueError(f"base must be an attack without targets, got {base!r}")
    spec = catalogue.get_spec(base)
    if spec.interacting:
        settings.update(c=c, particles=catalogue.DEFAULT_PARTICLES if particles is None
                        else particles)
    if spec.direction == "momentum":
        settings.update(decay=decay)
    return attacks.make_config(base, **settings)


def _worst_over_targets(model: loop.Model, cfg: attacks.AttackConfig, x_np: np.ndarray,
                        y_np: np.ndarray, targets: np.ndarray, seed_t: tf.Tensor,
                        early_stop: bool, logits_fn: Any) -> np.ndarray:
    """One run toward each target class (column of ``targets``), each from its own start; per
    example the first point that fools the model, else the highest loss. With ``early_stop``
    the examples already fooled sit out the later runs."""
    score_fn = get_loss(cfg.settings.loss)
    x0 = tf.constant(x_np)
    x_out, score = x_np.copy(), np.full(len(x_np), -np.inf, np.float32)
    done = np.zeros(len(x_np), bool)
    for k in range(targets.shape[1]):
        rows = np.flatnonzero(~done) if early_stop else np.arange(len(x_np))
        if not len(rows):
            break
        run_seed = attacks.target_seed(seed_t, k)
        sub = tf.constant(rows)
        start = tf.gather(attacks.start_points(cfg, x0, run_seed), sub)
        start = attacks.odi_start(model, cfg, x0, start, run_seed, rows=sub)
        pairs = target_pairs(y_np, targets, k)
        x_k = attacks.run_steps(model, cfg, tf.gather(x0, sub), tf.constant(pairs[rows]),
                                start).numpy()
        logits = logits_fn(tf.constant(x_k))
        success = fooled(logits, tf.constant(y_np[rows]), False).numpy()
        score_k = score_fn(logits, tf.constant(y_np[rows])).numpy()
        take = ~done[rows] & (success | (score_k > score[rows]))
        x_out[rows[take]] = x_k[take]
        score[rows[take]] = score_k[take]
        done[rows] |= success
    return x_out
