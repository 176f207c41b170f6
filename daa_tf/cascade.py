"""The strongest-first cascade (docs/algorithms.md#strongest): attacks run one after another, each
on the examples still classified correctly, the worst case kept, within a gradient budget.

Each stage is an ordinary :func:`daa_tf.run` (restarts, early stop, ODI, targets) on the examples
the earlier stages did not fool, so the cascade spends its budget where it is still needed. The
default sequence is provisional (measured on the shared MNIST model only, see
``docs/algorithms.md#strongest``): APGD with the cross-entropy on every example, then APGD with
the targeted DLR toward the 9 most likely wrong classes (AutoAttack's APGD-CE then APGD-T).
"""
import dataclasses
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from daa_tf import catalogue, driver, validation
from daa_tf import loop


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: ``attack`` (a catalogue name) with ``settings`` (``steps``, ``loss``,
    ``targets``, ``init``, ``step_size``, ...; ``eps`` and the box come from the cascade) and
    ``restarts``. Its budget per image: ``restarts x max(1, targets) x (odi_steps + steps)``."""

    attack: str
    settings: Dict[str, Any]
    restarts: int = 1

    def gradients(self, classes: int) -> int:
        """Gradients per image of this stage on a model with ``classes`` logits."""
        s = catalogue.attack_settings(self.attack, eps=1.0, **self.settings)
        runs = min(s.targets, classes - 1) if s.targets else 1
        return self.restarts * runs * (s.odi_steps + s.steps)


# The provisional default sequence (docs/algorithms.md#strongest): APGD with varied losses, DAA
# directions and ODI starts. Measured on the shared MNIST model (first 1000 test images, eps 0.3,
# one seed): these ten stages of 100 steps 89.6%; APGD-CE then APGD-T (9 targets) 89.9%.
DEFAULT_SEQUENCE = (
    ("apgd", {"loss": "xent"}),
    ("apgd_daa_blob", {"loss": "cw"}),
    ("apgd_daa_dgf", {"loss": "xent"}),
    ("apgd", {"loss": "dlr"}),
    ("apgd", {"loss": "margin", "init": "odi"}),
    ("apgd_daa_blob", {"loss": "margin"}),
    ("apgd", {"loss": "xent", "init": "odi"}),
    ("apgd_daa_blob", {"loss": "xent"}),
    ("apgd", {"loss": "cw"}),
    ("apgd_daa_dgf", {"loss": "cw", "init": "odi"}),
)
MIN_STAGE_STEPS = 10


def default_stages(budget: int, classes: int = 10) -> List[Stage]:
    """The provisional default sequence for ``budget`` (at least 1) gradients per image: the stages
    of :data:`DEFAULT_SEQUENCE`, as many as give each at least :data:`MIN_STAGE_STEPS` gradients
    (at most ten, at least one), the budget shared equally (a stage with an ODI start spends 2 of
    its share on it; DLR needs 3 classes and is skipped below)."""
    budget = catalogue.whole_number("budget", budget, 1)
    sequence = [(attack, settings) for attack, settings in DEFAULT_SEQUENCE
                if classes >= 3 or settings["loss"] != "dlr"]
    count = max(1, min(len(sequence), budget // MIN_STAGE_STEPS))
    share = budget // count
    stages = []
    for attack, settings in sequence[:count]:
        settings = dict(settings)
        odi = settings.get("init") == "odi" and share > 2 * catalogue.DEFAULT_ODI_STEPS
        if not odi:
            settings.pop("init", None)
        settings["steps"] = share - (catalogue.DEFAULT_ODI_STEPS if odi else 0)
        stages.append(Stage(attack, settings))
    return stages


def strongest(model: loop.Model, x: Any, y: Any, *, eps: float, budget: int = 1000,
              seed: int = 0, stages: Optional[Sequence[Stage]] = None, clip_min: float = 0.0,
              clip_max: float = 1.0, batch_size: Optional[int] = None, verbose: int = 0,
              jit_compile: Optional[bool] = None,
              on_stage: Optional[Callable[[int, Stage, float, float], None]] = None
              ) -> driver.RunResult:
    """The cascade on the whole set ``x`` ``[N, ...]`` (pixel units in ``[clip_min, clip_max]``),
    labels ``y`` ``[N]``, L-inf radius ``eps`` (pixel units), at most ``budget`` gradients per
    image (the stages' budgets summed; ``stages`` default :func:`default_stages`).

    Examples the model already misclassifies keep their clean image. Each stage attacks the
    examples still classified correctly; a fooled example keeps the first stage's point that fooled
    it, one never fooled keeps the point of highest margin ``max_{j != y} z_j - z_y`` over the
    stages. ``on_stage(index, stage, accuracy, seconds)`` is called after each stage with the
    accuracy of the whole set so far. Returns the driver's :class:`~daa_tf.driver.RunResult`:
    ``restart_accuracies`` / ``restart_seconds`` hold one entry per stage,
    ``gradients_per_image`` the summed budget, ``gradients_mean`` the gradients spent per image.
    """
    x0 = validation.as_batch(x, np.float32, "x")
    y = np.asarray(y)
    validation.check_batch(x0, y, clip_min, clip_max)
    y = y.astype(np.int32)
    n = len(x0)
    pred, score, logits = driver.evaluate(model, x0, y, "margin", batch_size or
                                          catalogue.DEFAULT_BATCH, jit_compile)
    classes = logits.shape[1]
    stages = list(default_stages(budget, classes) if stages is None else stages)
    total = sum(stage.gradients(classes) for stage in stages)
    if total > budget:
        raise ValueError(f"the stages need {total} gradients per image, more than the budget "
                         f"{budget}")
    x_adv = x0.copy()
    fooled = pred != y
    accuracies: List[float] = []
    seconds: List[float] = []
    spent = 0.0
    for index, stage in enumerate(stages):
        started = time.perf_counter()
        rows = np.flatnonzero(~fooled)
        if len(rows):
            stage_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
            result = driver.run(model, x0[rows], y[rows], stage.attack, restarts=stage.restarts,
                                batch_size=batch_size, seed=stage_seed, verbose=verbose,
                                eps=eps, clip_min=clip_min, clip_max=clip_max,
                                jit_compile=jit_compile, **stage.settings)
            stage_pred, stage_score, _ = driver.evaluate(
                model, result.x_adv, y[rows], "margin", batch_size or catalogue.DEFAULT_BATCH,
                jit_compile)
            success = stage_pred != y[rows]
            take = success | (stage_score > score[rows])
            x_adv[rows[take]] = result.x_adv[take]
            score[rows[take]] = stage_score[take]
            fooled[rows] |= success
            spent += result.gradients_mean * len(rows)
        accuracies.append(float(np.mean(~fooled)))
        seconds.append(time.perf_counter() - started)
        if on_stage is not None:
            on_stage(index, stage, accuracies[-1], seconds[-1])
    pred, _, _ = driver.evaluate(model, x_adv, y, "xent", batch_size or catalogue.DEFAULT_BATCH,
                                 jit_compile)
    correct = pred == y
    return driver.RunResult(x_adv=x_adv, accuracy=float(np.mean(correct)), correct=correct,
                            restart_accuracies=accuracies, restart_seconds=seconds,
                            gradients_per_image=total, gradients_mean=spent / n)
