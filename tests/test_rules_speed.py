"""The bootstrap interval over worker processes (gate.stats.bootstrap_median_ci): the rule
behind every time interval and speed call (fast; part of the mutation-testing suite)."""

from __future__ import annotations

import pytest
from attnbench.gate.stats import bootstrap_median_ci

SPREAD = [float(i) for i in range(1, 102)]  # median 51


def test_three_processes_give_their_range():
    assert bootstrap_median_ci([1.0, 2.0, 3.0]) == (1.0, 3.0)
    low, high = bootstrap_median_ci([3.0, 1.0, 2.0], resamples=1)  # one resample: one point
    assert low == high and low in (1.0, 2.0, 3.0)


def test_it_is_the_median_not_the_mean():
    # one slow process in ten: the median never moves, a mean would
    assert bootstrap_median_ci([1.0] * 9 + [100.0]) == (1.0, 1.0)


def test_pinned_percentiles_and_seed():
    assert bootstrap_median_ci(SPREAD) == (42.0, 60.0)  # 95 %: 2.5th and 97.5th percentile
    assert bootstrap_median_ci(SPREAD, confidence=0.5) == (48.0, 54.0)
    assert bootstrap_median_ci(SPREAD, seed=1) == (41.0, 61.0)
    assert bootstrap_median_ci(SPREAD, resamples=500) == pytest.approx((41.475, 61.0))


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5])
def test_confidence_outside_0_1_is_a_named_error(confidence):
    with pytest.raises(ValueError, match=r"^confidence: expected a number in \(0, 1\)"):
        bootstrap_median_ci([1.0, 2.0], confidence=confidence)


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="^values: "):
        bootstrap_median_ci([1.0, -2.0])
