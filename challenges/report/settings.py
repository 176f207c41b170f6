"""The report's settings: which attacks and losses, the shared attack settings, the eps grid, and
how each row's attack settings follow from them."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Optional, Tuple

from daa_tf import catalogue

# The paper's table: its rows, in its order, and its columns.
PAPER_ATTACKS: Tuple[str, ...] = ("rand_fgsm", "pgd", "momentum_pgd", "daa_blob", "daa_dgf")
PAPER_LOSSES: Tuple[str, ...] = catalogue.PAPER_LOSSES


class ReportError(RuntimeError):
    """A report cannot be made or resumed as asked; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """The settings of a report (everything but the model and the data).

    ``eps``, ``step_size``, ``fgsm_step_size`` are in pixel units of ``[clip_min, clip_max]``.
    ``attacks``: rows, names of :data:`daa_tf.catalogue.RUNNABLE`; ``losses``: columns (a
    cascade, whose stages choose their losses, runs once, under the first loss, and fills every
    column; ``steps`` is its budget per image and restart, ``queries`` ``strongest``'s query
    budget per image (None: no Square stage); ``autoattack`` runs its own settings, the version
    ``autoattack_version``, with no budget).
    ``fgsm_step_size`` (the one-step attacks' step) defaults to ``eps``; on the eps grid it scales
    with eps. ``c`` overrides the DAA constants: ``{"daa_blob": {"xent": 1.1}, ...}`` (missing
    entries take the catalogue's defaults). ``eps_grid``: the eps values of the accuracy curve,
    run with the losses ``eps_grid_losses``; step size and steps stay as given.
    ``examples_daa``/``examples_loss`` pick the DAA result shown against PGD in ``examples.png``.
    """

    eps: float
    step_size: float
    steps: int
    restarts: int = 1
    random_start: bool = True
    clip_min: float = 0.0
    clip_max: float = 1.0
    steps_per_round: int = catalogue.DEFAULT_STEPS_PER_ROUND
    particles: int = catalogue.DEFAULT_PARTICLES
    seed: int = 0
    batch_size: Optional[int] = None
    attacks: Tuple[str, ...] = PAPER_ATTACKS
    losses: Tuple[str, ...] = PAPER_LOSSES
    fgsm_step_size: Optional[float] = None
    c: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)
    eps_grid: Tuple[float, ...] = ()
    eps_grid_losses: Tuple[str, ...] = ("xent",)
    examples_daa: str = "daa_blob"
    examples_loss: str = "xent"
    jit_compile: Optional[bool] = None
    autoattack_version: str = "standard"
    queries: Optional[int] = None

    def __post_init__(self) -> None:
        unknown = [a for a in self.attacks if a not in catalogue.RUNNABLE]
        if unknown or not self.attacks:
            raise ReportError(f"unknown attacks {unknown}: choose from "
                              f"{', '.join(catalogue.RUNNABLE)}")
        bad = [l for l in (*self.losses, *self.eps_grid_losses) if l not in catalogue.LOSSES]
        if bad or not self.losses:
            raise ReportError(f"unknown losses {bad}: choose from {', '.join(catalogue.LOSSES)}")
        if len(set(self.attacks)) != len(self.attacks) or len(set(self.losses)) != len(self.losses):
            raise ReportError("attacks and losses must not repeat")
        if any(not math.isfinite(e) or e < 0 for e in self.eps_grid):
            raise ReportError(f"eps_grid values must be finite and >= 0, got {self.eps_grid}")
        if self.examples_daa not in catalogue.DAA_ATTACKS:
            raise ReportError(f"examples_daa must be one of {catalogue.DAA_ATTACKS}, got "
                              f"{self.examples_daa!r}")
        for attack, per_loss in self.c.items():
            if (attack not in catalogue.DAA_ATTACKS
                    or any(l not in catalogue.LOSSES for l in per_loss)):
                raise ReportError(f"c overrides take DAA attacks and losses, got {self.c}")
        if self.autoattack_version not in catalogue.AUTOATTACK_VERSIONS:
            raise ReportError(f"autoattack_version must be one of "
                              f"{catalogue.AUTOATTACK_VERSIONS}, got {self.autoattack_version!r}")
        if self.queries is not None and (not isinstance(self.queries, int)
                                         or self.queries < 1):
            raise ReportError(f"queries must be a whole number of at least 1, got "
                              f"{self.queries!r}")
        problem = next(filter(None, (catalogue.batch_size_error(a, self.batch_size,
                                                                self.particles)
                                     for a in self.attacks)), None)
        if problem:
            raise ReportError(problem)

    def run_loss(self, attack: str, loss: str) -> str:
        """The loss row ``attack`` runs with in column ``loss``: a cascade always with the
        first (its one run fills every column)."""
        return self.losses[0] if catalogue.is_cascade(attack) else loss

    def run_restarts(self, attack: str) -> int:
        """The restarts of row ``attack``: ``restarts``, but 1 for ``autoattack`` (its attacks'
        restarts are its own settings)."""
        return 1 if attack == "autoattack" else self.restarts

    def attack_settings(self, attack: str, loss: str, eps: Optional[float] = None
                        ) -> catalogue.RunSettings:
        """The validated settings of row ``attack`` with ``loss`` at ``eps`` (default ``eps``)."""
        eps = self.eps if eps is None else float(eps)
        if attack == "autoattack":  # its own settings, no gradient budget
            return catalogue.cascade_settings(
                attack, eps=eps, version=self.autoattack_version, clip_min=self.clip_min,
                clip_max=self.clip_max, jit_compile=self.jit_compile)
        if catalogue.is_cascade(attack):
            return catalogue.cascade_settings(
                attack, eps=eps, budget=self.steps, queries=self.queries, clip_min=self.clip_min,
                clip_max=self.clip_max, jit_compile=self.jit_compile)
        if catalogue.get_spec(attack).one_step:
            step = eps if self.fgsm_step_size is None else self.fgsm_step_size * eps / self.eps
            return catalogue.attack_settings(
                attack, eps=eps, step_size=step, loss=loss, random_start=self.random_start,
                clip_min=self.clip_min, clip_max=self.clip_max, jit_compile=self.jit_compile)
        return catalogue.attack_settings(
            attack, eps=eps, step_size=self.step_size, steps=self.steps, loss=loss,
            random_start=self.random_start, clip_min=self.clip_min, clip_max=self.clip_max,
            c=self.c.get(attack, {}).get(loss), particles=self.particles,
            jit_compile=self.jit_compile)

    def as_dict(self) -> Dict[str, Any]:
        """The settings for ``results.json``, with the DAA constants used (``c_used``)."""
        d = dataclasses.asdict(self)
        d["attacks"], d["losses"] = list(self.attacks), list(self.losses)
        d["eps_grid"], d["eps_grid_losses"] = list(self.eps_grid), list(self.eps_grid_losses)
        d["c_used"] = {a: {l: self.attack_settings(a, l).c for l in self.losses}
                       for a in self.attacks if a in catalogue.DAA_ATTACKS}
        return d
