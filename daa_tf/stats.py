"""Paired significance of two attacks on the same examples: McNemar's exact test.

Two attacks scored on the same ``N`` examples give per-example outcomes (model correct or not on
each attack's adversarial point). Only the discordant pairs carry information about which attack
is stronger:

- ``b``: examples the *first* attack leaves correct and the *second* fools,
- ``c``: examples the first fools and the second leaves correct.

Under the null hypothesis (both attacks equally strong) each discordant pair falls either way with
probability 1/2, so ``b ~ Binomial(b + c, 1/2)``. The exact two-sided p-value is

    p = min(1, 2 * P[X <= min(b, c)]),  X ~ Binomial(b + c, 1/2)

(and ``p = 1`` when there are no discordant pairs). Computed exactly with integer arithmetic
(Python integers, one final division), no SciPy.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


def binomial_cdf_half(k: int, n: int) -> float:
    """``P[X <= k]`` for ``X ~ Binomial(n, 1/2)``, exact (integer sums, one final division)."""
    if n < 0 or int(n) != n:
        raise ValueError(f"n must be a whole number >= 0, got {n!r}")
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    k, n = int(k), int(n)
    term = total = 1  # comb(n, 0); comb(n, i + 1) = comb(n, i) * (n - i) / (i + 1), exactly
    for i in range(k):
        term = term * (n - i) // (i + 1)
        total += term
    return total / (1 << n)


def mcnemar_exact_p(b: int, c: int) -> float:
    """The exact two-sided McNemar p-value from the discordant counts ``b`` and ``c``.

    Symmetric in ``b`` and ``c``; 1.0 when ``b == c`` (including ``b = c = 0``). Example:
    ``b = 0, c = 5`` gives ``2 / 2**5 = 0.0625``.
    """
    for name, value in (("b", b), ("c", c)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    b, c = int(b), int(c)
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * binomial_cdf_half(min(b, c), n))


@dataclasses.dataclass(frozen=True)
class McNemarResult:
    """McNemar's exact test between attack A and attack B on the same examples.

    ``both_correct``/``both_fooled``: concordant pairs. ``b``: A leaves the example correct, B
    fools it. ``c``: A fools it, B leaves it correct. ``p_value``: exact two-sided.
    """

    n: int
    both_correct: int
    b: int
    c: int
    both_fooled: int
    p_value: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _as_bool(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of per-example outcomes, got shape "
                         f"{arr.shape}")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must hold booleans (or 0/1)")
        arr = arr.astype(bool)
    return arr


def mcnemar(correct_a: Any, correct_b: Any) -> McNemarResult:
    """McNemar's exact test on paired per-example outcomes (True = model correct).

    ``correct_a``, ``correct_b``: bool ``[N]``, the model's correctness on attack A's and attack
    B's adversarial point of each example. ``b`` counts examples only B fools, ``c`` those only A
    fools; a small p-value with ``b > c`` says B is the stronger attack.
    """
    a = _as_bool(correct_a, "correct_a")
    b_ = _as_bool(correct_b, "correct_b")
    if a.shape != b_.shape:
        raise ValueError(f"the outcomes must pair up: shapes {a.shape} and {b_.shape}")
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    return McNemarResult(n=int(a.size), both_correct=int(np.sum(a & b_)), b=b, c=c,
                         both_fooled=int(np.sum(~a & ~b_)), p_value=mcnemar_exact_p(b, c))


__all__ = ["binomial_cdf_half", "mcnemar_exact_p", "mcnemar", "McNemarResult"]
