"""What a streamed pass (:mod:`daa_tf.stream`) keeps across batches, and what it returns: the
running tally saved after every batch (:class:`Tally`) and :class:`StreamResult`."""
import dataclasses
import json
from typing import Any, Dict, List, Optional

import numpy as np

from daa_tf import files
from daa_tf.results import stage_accuracies


@dataclasses.dataclass
class StreamResult:
    """What ``daa_tf.run`` returns for a dataset: :class:`daa_tf.results.RunResult`'s figures
    without the adversarial set (see ``output``).

    ``accuracy``: fraction of the ``examples`` still classified correctly; ``correct``: bool
    ``[examples]`` in the order read; ``restart_accuracies``: per restart (a cascade: per stage)
    the figure of the array path, over the whole set; ``restart_seconds``: per restart the wall
    time spent in it in this call, summed over the batches; ``gradients_per_image``: the budget;
    ``gradients_mean``: gradients spent per image (averaged over the whole set, batches resumed
    from a state included); ``queries_per_image`` / ``queries_mean``: the same for the forward
    passes of query attacks (Square, and a cascade's Square stage); ``batches``: batches read;
    ``output``: the shard folder, or None. A cascade also gives ``clean_accuracy`` (over the
    whole set) and ``stage_labels``, and :meth:`accuracies` as AutoAttack reports them.
    """

    accuracy: float
    correct: np.ndarray
    restart_accuracies: List[float]
    restart_seconds: List[float]
    gradients_per_image: int
    gradients_mean: float
    examples: int
    batches: int
    output: Optional[str] = None
    queries_per_image: int = 0
    queries_mean: float = 0.0
    clean_accuracy: Optional[float] = None
    stage_labels: List[str] = dataclasses.field(default_factory=list)

    def accuracies(self) -> Dict[str, float]:
        """A cascade's robust accuracy over the whole set after each stage by its label
        (``clean`` first)."""
        return stage_accuracies(self.clean_accuracy, self.stage_labels, self.restart_accuracies)

    @property
    def x_adv(self) -> np.ndarray:
        raise AttributeError("a streamed run keeps no adversarial set in memory: pass output= a "
                             "folder and read it with daa_tf.shards.load / iterate")


@dataclasses.dataclass
class Tally:
    """What a pass accumulates (and its state saves): batches done, per-example correctness,
    per-restart counts of the restart figures (``own``) and of the running accuracy, gradients
    and queries spent (summed over examples) and their budgets per image, a cascade's clean
    count and stage labels, the hash of the batches read, the shards written."""

    batches: int = 0
    correct: List[np.ndarray] = dataclasses.field(default_factory=list)
    own: Optional[np.ndarray] = None
    running: Optional[np.ndarray] = None
    spent: float = 0.0
    budget: int = 0
    queried: float = 0.0
    query_budget: int = 0
    clean: Optional[float] = None
    labels: List[str] = dataclasses.field(default_factory=list)
    digest: str = ""
    shards: List[Dict[str, Any]] = dataclasses.field(default_factory=list)

    examples: int = 0
    kept: int = 0  # examples still classified correctly

    def __post_init__(self) -> None:
        self.examples = int(sum(len(c) for c in self.correct))
        self.kept = int(sum(int(c.sum()) for c in self.correct))

    def add(self, result: Any, running: List[float], n: int) -> None:
        """Adds one batch's ``result`` (a :class:`daa_tf.results.RunResult` of ``n`` examples)
        and its running accuracies after each restart (stage)."""
        own = np.asarray(result.restart_accuracies, np.float64) * n
        run = np.asarray(running, np.float64) * n
        self.own = own if self.own is None else self.own + own
        self.running = run if self.running is None else self.running + run
        self.correct.append(np.asarray(result.correct, bool))
        self.examples += n
        self.kept += int(self.correct[-1].sum())
        self.spent += float(result.gradients_mean) * n
        self.budget = int(result.gradients_per_image)
        self.queried += float(result.queries_mean) * n
        self.query_budget = int(result.queries_per_image)
        if result.clean_accuracy is not None:
            self.clean = (self.clean or 0.0) + float(result.clean_accuracy) * n
            self.labels = list(result.stage_labels)
        self.batches += 1

    def result(self, seconds: Optional[np.ndarray], output: Optional[str]) -> StreamResult:
        """The pass's result (``seconds``: per restart, summed over the batches of this call)."""
        n = self.examples
        correct = np.concatenate(self.correct)
        return StreamResult(
            accuracy=float(np.mean(correct)), correct=correct,
            restart_accuracies=[float(c) / n for c in self.own],
            restart_seconds=[] if seconds is None else [float(s) for s in seconds],
            gradients_per_image=self.budget, gradients_mean=self.spent / n, examples=n,
            batches=self.batches, output=output, queries_per_image=self.query_budget,
            queries_mean=self.queried / n,
            clean_accuracy=None if self.clean is None else self.clean / n,
            stage_labels=list(self.labels))

    def save(self, path: str, key: str) -> None:
        """Writes the tally to ``path`` (atomically) under the run's fingerprint ``key``."""
        correct = np.concatenate(self.correct) if self.correct else np.zeros(0, bool)
        empty = np.zeros(0, np.float64)
        files.atomic_write(path, lambda f: np.savez(
            f, fingerprint=np.asarray(key), batches=np.asarray(self.batches), correct=correct,
            sizes=np.asarray([len(c) for c in self.correct], np.int64),
            own=self.own if self.own is not None else empty,
            running=self.running if self.running is not None else empty,
            spent=np.asarray(self.spent), budget=np.asarray(self.budget),
            queried=np.asarray(self.queried), query_budget=np.asarray(self.query_budget),
            clean=np.asarray(np.nan if self.clean is None else self.clean),
            labels=np.asarray(json.dumps(self.labels)),
            digest=np.asarray(self.digest), shards=np.asarray(json.dumps(self.shards))))

    @classmethod
    def load(cls, path: str, key: str) -> "Tally":
        """The tally saved in ``path``; refuses another run's (``key``) or an unreadable one."""
        try:
            with np.load(path) as s:
                saved = {k: s[k] for k in s.files}
        except (OSError, ValueError, EOFError) as err:
            raise ValueError(f"cannot read the saved state {path}: {err}; delete it to start "
                             "afresh") from err
        if str(saved.get("fingerprint")) != key:
            raise ValueError(f"the saved state {path} belongs to a different run (other "
                             "settings, seed or batch size); delete it or run without resuming")
        try:
            bounds = np.cumsum(saved["sizes"])[:-1]
            clean = float(saved["clean"])
            return cls(batches=int(saved["batches"]), correct=np.split(saved["correct"], bounds),
                       own=saved["own"] if saved["own"].size else None,
                       running=saved["running"] if saved["running"].size else None,
                       spent=float(saved["spent"]), budget=int(saved["budget"]),
                       queried=float(saved["queried"]), query_budget=int(saved["query_budget"]),
                       clean=None if np.isnan(clean) else clean,
                       labels=json.loads(str(saved["labels"])), digest=str(saved["digest"]),
                       shards=json.loads(str(saved["shards"])))
        except KeyError as err:
            raise ValueError(f"the saved state {path} lacks {err} (written by an older "
                             "version): delete it to start afresh") from err
