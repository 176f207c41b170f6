"""McNemar's exact test (daa_tf.stats) against hand-computed values."""
import math
from fractions import Fraction

import numpy as np
import pytest

from daa_tf import stats


def _tail_two_sided(b: int, c: int) -> float:
    """Independent reference: exact two-sided binomial test by Fractions and math.comb."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = Fraction(sum(math.comb(n, i) for i in range(k + 1)), 2 ** n)
    return float(min(Fraction(1), 2 * tail))


@pytest.mark.parametrize("b, c, expected", [
    (0, 5, 0.0625),                 # 2 * 1/32
    (5, 0, 0.0625),
    (1, 5, 14 / 64),                # 2 * (1 + 6) / 64
    (2, 10, 158 / 4096),            # 2 * (1 + 12 + 66) / 4096
    (0, 1, 1.0),                    # 2 * 1/2
    (0, 10, 2 / 1024),
    (3, 4, 1.0),                    # P[X <= 3] = 1/2 for n = 7: capped at 1
    (0, 0, 1.0),
    (7, 7, 1.0),
    (4, 8, 2 * (1 + 12 + 66 + 220 + 495) / 4096),
])
def test_hand_computed_values(b, c, expected):
    assert stats.mcnemar_exact_p(b, c) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("b, c", [(0, 3), (13, 29), (40, 60), (120, 80), (250, 251), (17, 17),
                                  (1000, 1100)])
def test_matches_independent_binomial_tail_and_is_symmetric(b, c):
    p = stats.mcnemar_exact_p(b, c)
    assert p == pytest.approx(_tail_two_sided(b, c), rel=1e-12)
    assert stats.mcnemar_exact_p(c, b) == p
    assert 0.0 < p <= 1.0


def test_equal_counts_give_one():
    for b in range(0, 60):
        assert stats.mcnemar_exact_p(b, b) == 1.0


def _log_space_p(b: int, c: int) -> float:
    """Independent reference for large counts: the tail summed in log space with lgamma."""
    n, k = b + c, min(b, c)
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
            for i in range(k + 1)]
    top = max(logs)
    return min(1.0, 2 * math.exp(top) * sum(math.exp(v - top) for v in logs))


def test_large_counts_do_not_overflow():
    # n = 10000 (a whole MNIST test set): the integer sum divided once stays exact and finite.
    p = stats.mcnemar_exact_p(4900, 5100)
    assert p == pytest.approx(_log_space_p(4900, 5100), rel=1e-9)
    assert 0.04 < p < 0.06  # normal approximation: z = 200/100 = 2, p ~ 0.0455 (+ continuity)
    assert stats.mcnemar_exact_p(4800, 5200) == pytest.approx(_log_space_p(4800, 5200), rel=1e-9)
    # Beyond float range the p-value underflows to 0.0 (never NaN, never an exception).
    assert stats.mcnemar_exact_p(0, 1074) == pytest.approx(2.0 ** -1073)
    assert stats.mcnemar_exact_p(0, 10000) == 0.0


def test_binomial_cdf_half():
    assert stats.binomial_cdf_half(-1, 4) == 0.0
    assert stats.binomial_cdf_half(0, 4) == 1 / 16
    assert stats.binomial_cdf_half(2, 4) == 11 / 16
    assert stats.binomial_cdf_half(4, 4) == 1.0
    assert stats.binomial_cdf_half(0, 0) == 1.0


def test_paired_outcomes():
    # A correct on 0..5, B on 0, 1 and 6: only B fools {2, 3, 4, 5}, only A fools {6}.
    correct_a = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], bool)
    correct_b = np.array([1, 1, 0, 0, 0, 0, 1, 0, 0, 0], bool)
    r = stats.mcnemar(correct_a, correct_b)
    assert (r.n, r.both_correct, r.b, r.c, r.both_fooled) == (10, 2, 4, 1, 3)
    assert r.p_value == pytest.approx(2 * (1 + 5) / 32)
    swapped = stats.mcnemar(correct_b, correct_a)
    assert (swapped.b, swapped.c, swapped.p_value) == (1, 4, r.p_value)
    assert r.as_dict()["b"] == 4
    # 0/1 integers are accepted as outcomes.
    assert stats.mcnemar(correct_a.astype(int), correct_b.astype(np.int8)) == r


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        stats.mcnemar_exact_p(-1, 3)
    with pytest.raises(ValueError):
        stats.mcnemar_exact_p(1.5, 3)
    with pytest.raises(ValueError, match="pair up"):
        stats.mcnemar(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(ValueError, match="1-D"):
        stats.mcnemar(np.ones((2, 2), bool), np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="booleans"):
        stats.mcnemar(np.array([0, 2]), np.array([0, 1]))
