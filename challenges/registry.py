"""The challenges: for each, its leaderboard file format, its data and model loaders and the paper's
attack defaults (``docs/algorithms.md#paper-defaults``).

A new challenge is one :func:`register` call here plus its loaders in ``daa_tf.data`` and
``daa_tf.models``. TensorFlow-free: the command-line layer reads this before parsing flags; loaders
are ``"module:function"`` names, imported on use.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Dict, Tuple

from daa_tf import catalogue

from challenges import fetch_model, submission


@dataclasses.dataclass(frozen=True)
class Defaults:
    """A challenge's attack defaults (pixel units)."""

    step_size: float
    steps: int
    restarts: int
    random_start: bool
    particles: int = catalogue.DEFAULT_PARTICLES
    steps_per_round: int = catalogue.DEFAULT_STEPS_PER_ROUND
    eps_grid: Tuple[float, ...] = ()  # the report's accuracy-vs-eps curve


@dataclasses.dataclass(frozen=True)
class Challenge:
    """One challenge: its file format, where its data and model come from, its defaults.

    ``eval_batch_size``: images per call of the final scoring (runner and evaluator alike).
    """

    name: str
    title: str
    format: submission.Format
    data_loader: str
    model_loader: str
    defaults: Defaults
    eval_batch_size: int

    @property
    def downloadable(self) -> bool:
        """True when MadryLab publish its models (``challenges.fetch_model`` can get them)."""
        return self.name in fetch_model.CHALLENGES

    def load_data(self, *args: Any) -> Any:
        """Calls the data loader ``(split, data_dir, num_examples) -> (x, y)``."""
        return import_function(self.data_loader)(*args)

    def load_model(self, *args: Any) -> Any:
        """Calls the model loader ``(path) -> keras.Model``."""
        return import_function(self.model_loader)(*args)


def import_function(name: str) -> Callable[..., Any]:
    """The function named ``"module:function"``."""
    module, attr = name.split(":")
    return getattr(importlib.import_module(module), attr)


CHALLENGES: Dict[str, Challenge] = {}


def register(challenge: Challenge) -> Challenge:
    """Adds ``challenge`` to :data:`CHALLENGES` (names are unique)."""
    if challenge.name in CHALLENGES:
        raise ValueError(f"challenge {challenge.name!r} is registered already")
    CHALLENGES[challenge.name] = challenge
    return challenge


def get_challenge(name: str) -> Challenge:
    """The challenge called ``name``; ValueError naming the choices otherwise."""
    try:
        return CHALLENGES[name]
    except KeyError:
        raise ValueError(f"unknown challenge {name!r}: use one of {', '.join(CHALLENGES)}"
                         ) from None


register(Challenge(
    name="mnist", title="MNIST",
    format=submission.Format(image_shape=(784,), clip_min=0.0, clip_max=1.0, eps=0.3),
    data_loader="daa_tf.data:load_mnist", model_loader="daa_tf.models:load_madry_mnist",
    defaults=Defaults(step_size=0.01, steps=200, restarts=50, random_start=True,
                      eps_grid=(0.1, 0.2, 0.3)),
    eval_batch_size=1000))
register(Challenge(
    # Madry's PGD-20 setting (no random start, one run); the paper's DAA used 100 steps and
    # 10 restarts: --steps=100 --restarts=10 --random_start.
    name="cifar10", title="CIFAR10",
    format=submission.Format(image_shape=(32, 32, 3), clip_min=0.0, clip_max=255.0, eps=8.0),
    data_loader="daa_tf.data:load_cifar10", model_loader="daa_tf.models:load_madry_cifar10",
    defaults=Defaults(step_size=2.0, steps=20, restarts=1, random_start=False,
                      eps_grid=(2.0, 4.0, 8.0)),
    eval_batch_size=100))
register(Challenge(
    name="fashion_mnist", title="Fashion-MNIST",
    format=submission.Format(image_shape=(784,), clip_min=0.0, clip_max=1.0, eps=0.2),
    data_loader="daa_tf.data:load_fashion_mnist",
    model_loader="daa_tf.models:load_daa_fashion_mnist",
    defaults=Defaults(step_size=0.01, steps=100, restarts=10, random_start=True,
                      eps_grid=(0.05, 0.1, 0.2)),
    eval_batch_size=1000))
