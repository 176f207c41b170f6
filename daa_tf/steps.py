"""Step rules: the direction hook of the compiled loop (foolbox-style).

A rule maps the loss gradient ``G`` to the direction ``V`` (docs/algorithms.md: PGD, momentum PGD,
DAA-BLOB, DAA-DGF); the schedule (:mod:`daa_tf.schedules`) then moves ``x`` along it: PGD's
``x <- proj(x + a * sign(V))`` or APGD's step-size schedule, with any rule.
Rules are static configuration (hashable, so compiled loops can be cached per rule); the numbers a
user may vary between calls (``decay``, ``c``) arrive as tensors in ``params`` so that changing them
never retraces.
"""
import dataclasses
from typing import Any, Dict, Protocol, Tuple, Type

import tensorflow as tf

from daa_tf.particles import blob_direction, dgf_direction, from_groups, to_groups

State = Tuple[tf.Tensor, ...]
Params = Dict[str, tf.Tensor]


class StepRule(Protocol):
    """The direction hook of the loop: hashable static configuration with two methods.

    ``from_settings(settings)`` builds the rule and its tensor parameters from validated
    :class:`daa_tf.settings.AttackSettings`. ``init_state(x, params)`` gives the rule's loop state
    (a tuple of tensors, possibly empty) for starting points ``x`` ``[N, ...]``;
    ``direction(grad, x, state, params)`` maps the loss gradient ``grad`` (``x``'s shape) at ``x``
    to ``(V, new_state)``; the loop's schedule then moves ``x`` along ``V`` (PGD:
    ``x <- proj(x + a * sign(V))``).
    """

    @classmethod
    def from_settings(cls, settings: Any) -> Tuple["StepRule", Dict[str, float]]: ...

    def init_state(self, x: tf.Tensor, params: Params) -> State: ...

    def direction(self, grad: tf.Tensor, x: tf.Tensor, state: State,
                  params: Params) -> Tuple[tf.Tensor, State]: ...


def _flat(t: tf.Tensor) -> tf.Tensor:
    return tf.reshape(t, [tf.shape(t)[0], -1])


@dataclasses.dataclass(frozen=True)
class Gradient:
    """PGD / FGSM / APGD: ``V = G`` (the schedule takes the sign)."""

    @classmethod
    def from_settings(cls, settings: Any) -> Tuple["Gradient", Dict[str, float]]:
        return cls(), {}

    def init_state(self, x: tf.Tensor, params: Params) -> State:
        return ()

    def direction(self, grad: tf.Tensor, x: tf.Tensor, state: State,
                  params: Params) -> Tuple[tf.Tensor, State]:
        return grad, state


@dataclasses.dataclass(frozen=True)
class Momentum:
    """Momentum PGD (MI-FGSM's rule, paper eq. 7): ``g <- decay * g + G_i / ||G_i||_1``; ``V = g``.

    A zero gradient row contributes zero (its norm is floored at the smallest normal float).
    """

    @classmethod
    def from_settings(cls, settings: Any) -> Tuple["Momentum", Dict[str, float]]:
        return cls(), {"decay": settings.decay}

    def init_state(self, x: tf.Tensor, params: Params) -> State:
        return (tf.zeros_like(x),)

    def direction(self, grad: tf.Tensor, x: tf.Tensor, state: State,
                  params: Params) -> Tuple[tf.Tensor, State]:
        norm = tf.reduce_sum(tf.abs(_flat(grad)), axis=1)
        norm = tf.maximum(norm, tf.constant(1.1754944e-38, grad.dtype))
        norm = tf.reshape(norm, [-1] + [1] * (len(grad.shape) - 1))
        g = params["decay"] * state[0] + grad / norm
        return g, (g,)


@dataclasses.dataclass(frozen=True)
class Particles:
    """DAA: particles interact inside consecutive groups of ``particles`` (``kind`` 'blob' or 'dgf').

    ``params["c"]`` is the effective constant (DGF's is already scaled for the pixel range).
    """

    kind: str
    particles: int

    @classmethod
    def from_settings(cls, settings: Any) -> Tuple["Particles", Dict[str, float]]:
        return cls(settings.spec.direction, settings.particles), {"c": settings.effective_c}

    def init_state(self, x: tf.Tensor, params: Params) -> State:
        return ()

    def direction(self, grad: tf.Tensor, x: tf.Tensor, state: State,
                  params: Params) -> Tuple[tf.Tensor, State]:
        xg, mask, sizes = to_groups(_flat(x), self.particles)
        gg, _, _ = to_groups(_flat(grad), self.particles)
        v = PARTICLE_DIRECTIONS[self.kind](gg, xg, mask, sizes, params["c"])
        n = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
        return tf.reshape(from_groups(v, n), tf.shape(x)), state


# DAA's particle directions by kind (paper eqs. 21 and 22).
PARTICLE_DIRECTIONS = {"blob": blob_direction, "dgf": dgf_direction}

# The step rules by their catalogue key (daa_tf.specs.DIRECTIONS).
RULES: Dict[str, Type[Any]] = {"sign": Gradient, "momentum": Momentum, "blob": Particles,
                               "dgf": Particles}
