"""The gate's statistics and time verdicts on synthetic samples (no measuring here)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from attnbench.gate.stats import (
    _exact_u_distribution,
    bootstrap_ratio_ci,
    compare,
    mann_whitney_u,
    median_ratio,
)
from attnbench.gate.verdicts import TimePolicy, confirmed_verdict, needs_confirmation, time_verdict
from hypothesis import given
from hypothesis import strategies as st

POLICY = TimePolicy()


def lognormal(median: float, spread: float, n: int, seed: int) -> list[float]:
    """Timing-like samples: positive, right-skewed, multiplicative noise."""
    rng = np.random.default_rng(seed)
    return list(median * np.exp(rng.normal(0, spread, n)))


def verdict(base: list[float], head: list[float]) -> str:
    return time_verdict(compare(base, head), POLICY)


# ---- the rank test ---------------------------------------------------------------------------

@pytest.mark.parametrize("m,n", [(1, 1), (2, 3), (3, 3), (4, 2), (5, 4)])
def test_exact_distribution_matches_enumeration(m, n):
    counts = [0] * (m * n + 1)
    for base_positions in itertools.combinations(range(m + n), m):
        seen, u = 0, 0
        for i in range(m + n):
            if i in base_positions:
                seen += 1
            else:
                u += seen  # this head sample is larger than every base sample before it
        counts[u] += 1
    assert _exact_u_distribution(m, n) == counts


def test_complete_separation_has_the_smallest_possible_p():
    u, p = mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], "greater")
    assert u == 25 and p == pytest.approx(1 / math.comb(10, 5))
    _, p_less = mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], "less")
    assert p_less == pytest.approx(1.0)


def test_normal_approximation_agrees_with_exact_near_the_switch():
    base, head = lognormal(1.0, 0.1, 40, 1), lognormal(1.05, 0.1, 40, 2)
    _, exact = mann_whitney_u(base, head)
    # Adding one tie forces the approximation path; the answer must barely move.
    _, approx = mann_whitney_u(base, head[:-1] + [base[0]])
    assert approx == pytest.approx(exact, abs=0.03)


def test_all_identical_samples_give_no_evidence():
    assert mann_whitney_u([2.0] * 8, [2.0] * 8)[1] == 1.0


@given(st.lists(st.floats(0.1, 10), min_size=2, max_size=30),
       st.lists(st.floats(0.1, 10), min_size=2, max_size=30))
def test_p_values_are_probabilities_and_the_two_sides_are_consistent(base, head):
    _, greater = mann_whitney_u(base, head, "greater")
    _, less = mann_whitney_u(base, head, "less")
    assert 0 <= greater <= 1 and 0 <= less <= 1
    assert greater + less >= 1 - 1e-9  # the two one-sided tails overlap at the observed U


@given(st.lists(st.floats(0.1, 10), min_size=3, max_size=20),
       st.lists(st.floats(0.1, 10), min_size=3, max_size=20), st.floats(0.01, 100))
def test_ratio_and_interval_are_scale_free_and_swap_to_the_reciprocal(base, head, scale):
    ratio = median_ratio(base, head)
    assert median_ratio([x * scale for x in base], [x * scale for x in head]) == \
        pytest.approx(ratio)
    assert median_ratio(head, base) == pytest.approx(1 / ratio)
    low, high = bootstrap_ratio_ci(base, head, resamples=300)
    assert low <= high


def test_bad_samples_are_named():
    with pytest.raises(ValueError, match="head: samples must be finite and positive"):
        compare([1.0, 2.0], [1.0, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ratio_ci([1.0, 2.0], [1.0, 2.0], confidence=1.5)


# ---- verdicts on synthetic timings ------------------------------------------------------------

def test_no_regression_is_unchanged():
    assert verdict(lognormal(1.0, 0.03, 15, 1), lognormal(1.0, 0.03, 15, 2)) == "unchanged"


def test_clear_regression_is_regressed_and_asks_for_confirmation():
    base, head = lognormal(1.0, 0.05, 15, 1), lognormal(1.3, 0.05, 15, 2)
    c = compare(base, head)
    assert time_verdict(c, POLICY) == "regressed"
    assert c.ci_low > 1 and c.p_slower < 0.01
    assert needs_confirmation("regressed", c)


def test_clear_improvement_is_improved():
    assert verdict(lognormal(1.0, 0.05, 15, 1), lognormal(0.7, 0.05, 15, 2)) == "improved"


def test_small_slowdown_below_threshold_is_not_a_regression():
    """5 % slower, measured precisely: real, but under the 10 % threshold."""
    assert verdict(lognormal(1.0, 0.01, 31, 1), lognormal(1.05, 0.01, 31, 2)) == "unchanged"


def test_noise_bursts_do_not_make_a_regression():
    """A quarter of head's samples hit by 3x contention bursts: the median and the rank test
    shrug them off; the verdict must not be "regressed"."""
    base, head = lognormal(1.0, 0.03, 20, 1), lognormal(1.0, 0.03, 20, 2)
    for i in range(0, 20, 4):
        head[i] *= 3.0
    assert verdict(base, head) != "regressed"


def test_regression_hidden_in_noise_is_inconclusive_not_unchanged():
    """30 % slower but with 40 % noise and few samples: the data cannot tell."""
    v = verdict(lognormal(1.0, 0.4, 6, 1), lognormal(1.3, 0.4, 6, 2))
    assert v == "inconclusive"


def test_too_few_samples_are_inconclusive_whatever_the_numbers():
    base, head = [1.0, 1.01, 0.99, 1.0], [2.0, 2.01, 1.99, 2.0]  # 2x, but 4 samples per side
    assert verdict(base, head) == "inconclusive"


def test_a_regression_must_show_in_both_pairs_of_processes():
    """The confirmation decides, but one pair of processes alone cannot fail the gate."""
    slow = compare(lognormal(1.0, 0.02, 31, 1), lognormal(1.3, 0.02, 31, 2))
    flat = compare(lognormal(1.0, 0.02, 15, 3), lognormal(1.05, 0.02, 15, 4))
    assert confirmed_verdict(screen=slow, confirm=slow, policy=POLICY) == "regressed"
    assert confirmed_verdict(screen=flat, confirm=slow, policy=POLICY) == "inconclusive"
    assert confirmed_verdict(screen=slow, confirm=flat, policy=POLICY) == "unchanged"


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError, match="threshold"):
        TimePolicy(threshold=0)
    with pytest.raises(ValueError, match="alpha"):
        TimePolicy(alpha=1.5)
