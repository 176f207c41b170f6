"""The Adversarial Robustness Toolbox (ART 1.20, an optional peer: ``pip install
adversarial-robustness-toolbox``) as rows of the ``strength`` section (:mod:`benchmarks.strength`),
on a ``TensorFlowV2Classifier`` of the same Keras model:

- ``art_apgd_ce`` / ``art_apgd_dlr``: ART's ``AutoProjectedGradientDescent``, one run per budget
  ``B``: ``nb_random_init = B / R``, ``max_iter = R`` (``R``: ``--strength-restart-steps``),
  ``eps_step = 2 eps``; gradients counted by wrapping its estimator's ``loss_gradient``;
- ``art_square``: ART's ``SquareAttack`` (L-inf, ``p_init`` 0.8, one restart), one run per query
  budget of ``--strength-queries`` (``max_iter``); queries counted by wrapping its estimator's
  ``predict`` (rows predicted per image: ART predicts about three times per iteration);
- ``art_autoattack``: ART's ``AutoAttack`` with its defaults (APGD-CE and APGD-DLR with 5 random
  starts of 100 iterations, DeepFool, Square with 5000 queries and 5 restarts; untargeted),
  ``eps_step = 2 eps``. It is not AutoAttack's ``standard`` version (no APGD-T, no FAB-T:
  DeepFool stands where FAB is): compare it with the ``autoattack`` row knowing that.

ART draws its random starts from NumPy's global generator, seeded with the section's seed before
each run. Every row is one ``generate`` call timed in this process; None (skipped) when ``art``
is not importable.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from benchmarks.common import art_classifier, import_art

Row = Dict[str, Any]
LOSSES = {"art_apgd_ce": "cross_entropy", "art_apgd_dlr": "difference_logits_ratio"}
CONTENDERS = tuple(LOSSES) + ("art_square", "art_autoattack")
CLASSES = 10


def _counting(estimator: Any, method: str) -> List[int]:
    """Wraps ``estimator.method`` to count the rows it is called on; returns the counter."""
    counted = [0]
    real = getattr(estimator, method)

    def counting(x: Any, *args: Any, **kwargs: Any) -> Any:
        counted[0] += len(x)
        return real(x, *args, **kwargs)
    setattr(estimator, method, counting)
    return counted


def image_view(model: Any, x: np.ndarray) -> "tuple[Any, np.ndarray]":
    """ART's Square needs images ``[N, H, W, C]``: flat square images ``[N, D]`` (MadryLab's
    MNIST format) as ``[N, s, s, 1]`` and the model behind a reshape back to ``[N, D]``; other
    inputs as they are."""
    import tensorflow as tf

    side = int(round(np.sqrt(x.shape[1]))) if x.ndim == 2 else 0
    if x.ndim != 2 or side * side != x.shape[1]:
        return model, x
    flat = x.shape[1]

    def flattened(images: Any, **kwargs: Any) -> Any:  # ART passes training=
        return model(tf.reshape(images, [-1, flat]), **kwargs)
    return flattened, x.reshape(-1, side, side, 1)


def _made(name: str, model: Any, x: np.ndarray, box: Dict[str, float], restart_steps: int,
          budget: int) -> Optional[Any]:
    """ART's attack of row ``name`` at ``budget`` (gradients, or queries for Square), None
    without ``art``."""
    path = {"art_square": "SquareAttack", "art_autoattack": "AutoAttack"}.get(
        name, "AutoProjectedGradientDescent")
    attack_class = import_art(f"art.attacks.evasion.{path}")
    if attack_class is None or (name == "art_autoattack"
                                and import_art("multiprocess.Pool") is None):
        return None  # ART's AutoAttack also imports multiprocess (not a dependency of ART's)
    classifier = art_classifier(model, CLASSES, x.shape[1:], (box["clip_min"], box["clip_max"]))
    batch = min(1000, len(x))
    if name == "art_square":
        return attack_class(classifier, norm=np.inf, eps=box["eps"], max_iter=budget,
                            p_init=0.8, nb_restarts=1, batch_size=batch, verbose=False)
    if name == "art_autoattack":
        return attack_class(classifier, norm=np.inf, eps=box["eps"], eps_step=2 * box["eps"],
                            batch_size=batch)
    return attack_class(classifier, norm=np.inf, eps=box["eps"], eps_step=2 * box["eps"],
                        max_iter=restart_steps, targeted=False,
                        nb_random_init=budget // restart_steps, batch_size=batch,
                        loss_type=LOSSES[name], verbose=False)


def rows(name: str, model: Any, x: np.ndarray, y: np.ndarray, box: Dict[str, float],
         budgets: List[int], queries: List[int], seed: int, restart_steps: int,
         check: Callable[..., np.ndarray], accuracy: Callable[[np.ndarray, np.ndarray], float]
         ) -> Optional[List[Row]]:
    """The rows of ART contender ``name`` (one of :data:`CONTENDERS`) on ``x`` ``[N, ...]``,
    labels ``y`` ``[N]``, radius and box ``box`` (pixel units): one per gradient budget (APGD),
    per query budget (Square), or one (AutoAttack). ``check(name, x_adv, x, **box)`` validates
    each output, ``accuracy(x_adv, y)`` scores it. None when ``art`` is not importable."""
    if name not in CONTENDERS:
        raise ValueError(f"unknown contender {name!r}: one of {CONTENDERS}")
    sizes = {"art_square": queries, "art_autoattack": [0]}.get(name, budgets)
    out: List[Row] = []
    shaped_model, shaped = (model, x) if name in LOSSES else image_view(model, x)
    for size in sizes:
        attack = _made(name, shaped_model, shaped, box, restart_steps, size)
        if attack is None:
            return None
        counter = "predict" if name == "art_square" else "loss_gradient"
        counted = None if name == "art_autoattack" else _counting(attack.estimator, counter)
        np.random.seed(seed)  # ART draws its random starts from NumPy's
        started = time.perf_counter()
        x_adv = attack.generate(shaped, y).reshape(x.shape)
        seconds = time.perf_counter() - started
        x_adv = check(name, x_adv, x, **box)
        row = dict(contender=name, attack=f"art {type(attack).__name__}", read="own run",
                   accuracy=accuracy(x_adv.astype(np.float32), y), seconds=seconds)
        if name == "art_square":
            row.update(budget=f"{size} queries", runs=f"1 x {size} queries", gradients=0.0,
                       queries=counted[0] / len(x))
        elif name == "art_autoattack":
            row.update(budget="ART defaults", runs="CE 5x100, DLR 5x100, DeepFool, Square 5x5000",
                       gradients=None)
        else:
            row.update(budget=size, runs=f"{size // restart_steps} x {restart_steps}",
                       gradients=counted[0] / len(x))
        out.append(row)
    return out
