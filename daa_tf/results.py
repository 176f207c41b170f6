"""What a run keeps and returns: the per-example worst case over restarts, stages and target runs
(:class:`Merged`, the one merge of the library), its saved state and the fingerprint that ties a
state to its run, and :class:`RunResult`. NumPy only.
"""
import dataclasses
import hashlib
import json
import os
from typing import Any, Dict, List, Optional

import numpy as np

from daa_tf import files


def stage_accuracies(clean: Optional[float], labels: List[str], accuracies: List[float]
                     ) -> Dict[str, float]:
    """``{"clean": clean, label: accuracy, ...}`` (fractions; ``clean`` left out when None)."""
    out = {} if clean is None else {"clean": clean}
    out.update(zip(labels, accuracies))
    return out


@dataclasses.dataclass
class RunResult:
    """What ``daa_tf.run`` returns.

    ``x_adv``: the final adversarial set, float32, the input's shape. ``accuracy``: the model's
    accuracy on it (fraction; for targeted attacks the fraction *not* classified as the target).
    ``correct``: per-example bool ``[N]`` behind ``accuracy``. ``restart_accuracies``: per restart
    (a cascade: per stage) the accuracy of its points; for attacks that stop early, and for a
    cascade, an example fooled before counts as fooled, so the figure is the running accuracy;
    DAA's restarts each attack the whole set, so theirs are each restart's own.
    ``restart_seconds``: wall time of each restart (stage) run in this call.
    ``gradients_per_image``: the gradient budget of one image, ``restarts x max(1, targets) x
    (odi_steps + steps)`` (``targets`` at most the number of wrong classes; model gradients: the
    forward passes that judge final points are not counted). ``gradients_mean``: the gradients
    actually computed per image, averaged over the set, for the restarts run in this call
    (smaller than the budget with early stop). A query attack (Square) spends no gradients:
    its budget is ``queries_per_image``, ``restarts x max(1, targets) x steps`` forward passes
    of its loop (the start's evaluation included), and ``queries_mean`` the queries actually
    spent per image, averaged over the set, for the restarts run in this call (an example stops
    spending them once fooled); both 0 for gradient attacks. A cascade also gives
    ``clean_accuracy`` and ``stage_labels`` (one per entry of ``restart_accuracies``).
    """

    x_adv: np.ndarray
    accuracy: float
    correct: np.ndarray
    restart_accuracies: List[float]
    restart_seconds: List[float]
    gradients_per_image: int = 0
    gradients_mean: float = 0.0
    queries_per_image: int = 0
    queries_mean: float = 0.0
    clean_accuracy: Optional[float] = None
    stage_labels: List[str] = dataclasses.field(default_factory=list)

    def accuracies(self) -> Dict[str, float]:
        """A cascade's robust accuracy after each stage by its label (``clean`` first), as
        AutoAttack reports them."""
        return stage_accuracies(self.clean_accuracy, self.stage_labels, self.restart_accuracies)


@dataclasses.dataclass
class Merged:
    """The running worst case: per example the point kept, its score and whether it fools the
    model, with the accuracy recorded after each restart (or stage)."""

    x: np.ndarray
    score: np.ndarray
    fooled: np.ndarray
    restart_accuracies: List[float]

    @property
    def accuracy(self) -> float:
        """The fraction of examples not fooled by any point so far."""
        return float(np.mean(~self.fooled))

    def update(self, rows: np.ndarray, x_r: np.ndarray, score_r: np.ndarray,
               success_r: np.ndarray) -> None:
        """Merges the points ``x_r`` of the examples ``rows``: an example keeps the first point
        that fools the model, else the highest-scoring one."""
        take = ~self.fooled[rows] & (success_r | (score_r > self.score[rows]))
        self.x[rows[take]] = x_r[take]
        self.score[rows[take]] = score_r[take]
        self.fooled[rows] |= success_r

    def save(self, path: str, fingerprint: str) -> None:
        """Writes the state atomically (a temporary file, then a rename)."""
        files.atomic_write(path, lambda f: np.savez(
            f, x=self.x, score=self.score, fooled=self.fooled,
            restart_accuracies=np.asarray(self.restart_accuracies, np.float64),
            fingerprint=np.asarray(fingerprint)))

    @classmethod
    def load(cls, path: str, fingerprint: str) -> "Merged":
        """The state saved at ``path``; ValueError when it cannot be read or belongs to another
        run (its fingerprint differs)."""
        try:
            with np.load(path) as state:
                saved = {key: state[key] for key in
                         ("x", "score", "fooled", "restart_accuracies", "fingerprint")}
        except (OSError, KeyError, EOFError, ValueError) as err:
            raise ValueError(f"cannot read the saved state {path}: {err}; delete it to start "
                             "afresh") from err
        if str(saved["fingerprint"]) != fingerprint:
            raise ValueError(f"the saved state {path} belongs to a different run (other settings, "
                             "seed or data); delete it or run without resuming")
        return cls(saved["x"], saved["score"], saved["fooled"],
                   [float(a) for a in saved["restart_accuracies"]])


def fingerprint(head: Any, x0: np.ndarray, y: np.ndarray) -> str:
    """The sha256 of everything a saved state depends on: ``head`` (JSON: settings, seed, ...)
    and the data."""
    digest = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(x0).tobytes())
    digest.update(np.ascontiguousarray(y).tobytes())
    return digest.hexdigest()


def resumed(state_path: Optional[str], resume: bool, fingerprint_: str, limit: int,
            unit: str) -> Optional[Merged]:
    """The saved state to continue from, when asked for and present (checked against this run's
    fingerprint), else None. A state holding more than ``limit`` ``unit`` s (restarts, stages)
    is refused."""
    if not (state_path and resume and os.path.exists(state_path)):
        return None
    merged = Merged.load(state_path, fingerprint_)
    done = len(merged.restart_accuracies)
    if done > limit:
        raise ValueError(f"the saved state {state_path} holds {done} {unit}, more than the "
                         f"{limit} asked for; ask for more restarts or start afresh")
    return merged
