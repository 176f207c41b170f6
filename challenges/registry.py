"""The challenges: for each, its leaderboard file format, its data and model loaders and the paper's
attack defaults (``docs/algorithms.md#paper-defaults``).

A new challenge is one :func:`register` call here plus its loaders in ``daa_tf.data`` and
``daa_tf.models``. TensorFlow-free: the command-line layer reads this before parsing flags; loaders
are ``"module:function"`` names, imported on use.

A challenge is untargeted (the MadryLab ones) unless it names its :class:`Targets`: how each
image's target class is chosen. The runner and the evaluator then attack toward, and score
against, the chosen targets (``--target``) with no knowledge of the challenge itself.
"""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from daa_tf import catalogue
from daa_tf.models import fetch

from challenges import submission


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
    # images per compiled attack call when --batch_size is not given (None: the library's, about
    # 1000; DAA: rounded down to whole groups of --particles, at least one group)
    batch_size: Optional[int] = None

    def attack_batch_size(self, particles: Optional[int]) -> Optional[int]:
        """:attr:`batch_size` as a whole number of groups of ``particles`` (DAA; at least one
        group), or as it is (``particles`` None: an attack whose examples do not interact)."""
        if self.batch_size is None or particles is None:
            return self.batch_size
        return max(1, self.batch_size // particles) * particles


@dataclasses.dataclass(frozen=True)
class Targets:
    """How a targeted challenge chooses each image's target class.

    ``choices``: the rules ``--target`` offers, the first being the default. ``chooser``:
    ``"module:function"`` called as ``chooser(rule, model=..., x=..., y=..., seed=...,
    data_dir=..., num_examples=..., batch_size=..., jit_compile=...)`` and returning the targets
    ``[N]`` int64 (``x`` the clean images, ``y`` their labels). ``about``: the rules for help texts.
    """

    choices: Tuple[str, ...]
    chooser: str
    about: str = ""

    @property
    def default(self) -> str:
        return self.choices[0]

    def choose(self, rule: str, **inputs: Any) -> Any:
        """The targets by ``rule`` (one of :attr:`choices`); ValueError naming them otherwise."""
        if rule not in self.choices:
            raise ValueError(f"unknown target rule {rule!r}: use one of {', '.join(self.choices)}")
        return import_function(self.chooser)(rule, **inputs)


@dataclasses.dataclass(frozen=True)
class Challenge:
    """One challenge: its file format, where its data and model come from, its defaults.

    ``eval_batch_size``: images per call of the final scoring (runner and evaluator alike).
    ``targets``: how a targeted challenge chooses its target classes (None: untargeted).
    ``model_fetcher``: ``"module:function"`` returning the model's folder, downloaded into the
    cache on first use, for a model that is not MadryLab's (None: see :attr:`downloadable`).
    """

    name: str
    title: str
    format: submission.Format
    data_loader: str
    model_loader: str
    defaults: Defaults
    eval_batch_size: int
    targets: Optional[Targets] = None
    model_fetcher: Optional[str] = None

    @property
    def targeted(self) -> bool:
        """True when the challenge's attacks aim at chosen target classes."""
        return self.targets is not None

    def fetch_model(self) -> Path:
        """The model's folder from :attr:`model_fetcher` (fetched once into the cache)."""
        if self.model_fetcher is None:
            raise ValueError(f"the {self.title} challenge has no model fetcher")
        return Path(import_function(self.model_fetcher)())

    @property
    def downloadable(self) -> bool:
        """True when MadryLab publish its models (:mod:`daa_tf.models.fetch` gets them)."""
        return self.name in fetch.CHALLENGES

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
register(Challenge(
    # The DAA paper's fourth system: Tramer et al.'s ensemble-adversarially-trained
    # Inception-ResNet-v2 on the NIPS 2017 development set (1000 images), attacked toward each
    # image's least likely class at eps 2/255 with 50 steps (step size: challenges.imagenet).
    name="imagenet", title="ImageNet",
    format=submission.Format(image_shape=(299, 299, 3), clip_min=0.0, clip_max=1.0,
                             eps=2.0 / 255, num_test=1000),
    data_loader="challenges.imagenet:load_test",
    model_loader="daa_tf.models:load_ens_adv_inception_resnet_v2",
    defaults=Defaults(step_size=0.25 / 255, steps=50, restarts=1, random_start=True,
                      particles=32, batch_size=32,
                      eps_grid=(1.0 / 255, 2.0 / 255, 4.0 / 255)),
    eval_batch_size=16,
    targets=Targets(choices=("least_likely", "dataset", "random"),
                    chooser="challenges.imagenet:choose_targets",
                    about="least_likely: the argmin of the clean logits over the classes "
                          "1..1000 (never the background class 0); dataset: the data's "
                          "TargetClass column; random: uniform over 1..1000 minus the true label, "
                          "drawn from --seed"),
    model_fetcher="challenges.imagenet:fetch_model"))
