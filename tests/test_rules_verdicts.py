"""Verdict boundaries: every threshold of the stability verdicts and of the gate pinned by a
case on each side of it, close enough that moving the constant by 10 % flips one of them."""

from __future__ import annotations

import math

import pytest
from attnbench.gate.stats import Comparison
from attnbench.gate.verdicts import (
    MEMORY_ABS,
    MEMORY_REL,
    GateCheck,
    GateFinding,
    TimePolicy,
    confirmed_verdict,
    correctness_finding,
    memory_finding,
    needs_confirmation,
    structural_finding,
    time_finding,
    time_verdict,
    worst_first,
)
from attnbench.stability.verdicts import (
    COLLAPSE_MARGIN,
    SPIKE_RATIO,
    SPIKE_WINDOW,
    count_spikes,
    divergence_verdict,
    lowest_diverging_lr,
    lr_sensitivity,
)

INIT, UNIGRAM = 4.6, 3.2


# ---- divergence: blow-up and unigram collapse --------------------------------------------------

def test_blowup_is_strictly_above_the_initial_loss():
    assert divergence_verdict([INIT, math.nextafter(INIT, math.inf)], INIT, UNIGRAM) == "blowup"
    assert divergence_verdict([INIT, INIT], INIT, UNIGRAM) == "unigram_collapse"
    assert divergence_verdict([9.0, 2.0], init_loss=1.5, unigram_loss=1.0) == "blowup"
    assert divergence_verdict([9.0, 1.5], init_loss=1.5, unigram_loss=1.0) == "unigram_collapse"


@pytest.mark.parametrize("below, verdict", [
    (0.0, "unigram_collapse"), (0.095, "unigram_collapse"), (0.105, "healthy"), (1.0, "healthy"),
    (-0.5, "unigram_collapse"),  # above the unigram loss (still below init): learned nothing
])
def test_collapse_margin_is_0_1_nats(below, verdict):
    """0.095 and 0.105 nats below the unigram loss sit either side of the 0.1 margin."""
    assert divergence_verdict([INIT, UNIGRAM - below], INIT, UNIGRAM) == verdict
    assert COLLAPSE_MARGIN == 0.1


def test_collapse_boundary_is_inclusive_and_the_margin_is_a_parameter():
    assert divergence_verdict([INIT, 2.5], INIT, 3.0, margin=0.5) == "unigram_collapse"
    assert divergence_verdict([INIT, 2.49], INIT, 3.0, margin=0.5) == "healthy"
    assert divergence_verdict([INIT, 2.9], INIT, 3.0, margin=0.0) == "healthy"


def test_nan_is_judged_first_and_anywhere():
    assert divergence_verdict([math.nan, 2.0], INIT, UNIGRAM) == "nan"
    assert divergence_verdict([2.0, -math.inf], INIT, UNIGRAM) == "nan"
    assert divergence_verdict([2.0], INIT, UNIGRAM, train_losses=[math.inf]) == "nan"
    assert divergence_verdict([2.0], INIT, UNIGRAM, train_losses=[3.0, 2.5]) == "healthy"
    with pytest.raises(ValueError, match="^val_losses: expected at least the final validation "
                                         "loss, got none$"):
        divergence_verdict([], INIT, UNIGRAM, train_losses=[1.0])


# ---- spikes: window 20, ratio 1.25 -------------------------------------------------------------

FLAT = [1.0] * 40


def with_value(curve: list[float], at: int, value: float) -> list[float]:
    return curve[:at] + [value] + curve[at + 1:]


@pytest.mark.parametrize("value, spikes", [(1.24, 0), (1.25, 0), (1.26, 1), (3.0, 1)])
def test_spike_ratio_is_1_25_exclusive(value, spikes):
    assert count_spikes(with_value(FLAT, 30, value)) == spikes
    assert SPIKE_RATIO == 1.25


def test_spike_ratio_moved_by_10_percent_changes_the_count():
    """1.15 and 1.35 are 8 % from 1.25: what a moved constant would count differently."""
    assert count_spikes(with_value(FLAT, 30, 1.15 * 1.0)) == 0
    assert count_spikes(with_value(FLAT, 30, 1.35 * 1.0)) == 1
    assert count_spikes(with_value(FLAT, 30, 1.3), ratio=1.35) == 0


def test_spikes_are_judged_from_step_20_on():
    """A jump at step 19 has no full window behind it and is not judged; at step 20 it is.
    Together they pin the window at exactly 20 steps."""
    assert count_spikes([1.0] * 19 + [2.0] + [1.0]) == 0
    assert count_spikes([1.0] * 20 + [2.0]) == 1
    assert count_spikes([1.0] * 20) == 0
    assert SPIKE_WINDOW == 20


def test_the_window_is_the_20_steps_before_the_run():
    """The median of the last 20 steps: 25 high steps before them do not count, although a
    45-step window, made mostly of them, would not see the spike."""
    curve = [4.0] * 25 + [1.0] * 20 + [2.0]
    assert count_spikes(curve) == 1
    assert count_spikes(curve, window=45) == 0
    high_half = [4.0] * 11 + [1.0] * 9 + [2.0]  # median of these 20 is 4: 2.0 is no spike
    assert count_spikes(high_half) == 0


def test_a_run_is_judged_against_the_median_before_it_began():
    """A long plateau at 2x is one spike; back at 1 for 25 steps, the next jump is another."""
    curve = FLAT[:25] + [2.0] * 30 + [1.0] * 25 + [2.0]
    assert count_spikes(curve) == 2
    assert count_spikes([1.0] * 20 + [math.nan, math.nan, 1.0, math.inf]) == 2


# ---- learning-rate summaries over seeds --------------------------------------------------------

def test_lr_sensitivity_averages_over_the_grid():
    assert lr_sensitivity({1: 2.0, 2: 3.0, 3: 4.0}, init_loss=5.0) == pytest.approx(1.0)
    assert lr_sensitivity({1: 2.0}, init_loss=5.0) == 0.0
    assert lr_sensitivity({1: 2.0, 2: math.inf}, init_loss=5.0) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="^final_losses: expected one final loss per learning "
                                         "rate, got none$"):
        lr_sensitivity({}, 5.0)


def test_lowest_diverging_lr_uses_fractions_over_unequal_seed_counts():
    """1 of 4 seeds (25 %) is fewer than 1 of 2 (50 %): the best rate is 1e-2 though both
    have one diverged seed; counts instead of fractions would pick 1e-3."""
    grid = {1e-3: [True, False], 1e-2: [True, False, False, False], 1e-1: [True]}
    assert lowest_diverging_lr(grid) == 1e-2
    grid = {1e-3: [True, False, False], 1e-2: [False, False], 1e-1: [True, True, False]}
    assert lowest_diverging_lr(grid) == 1e-1
    # equal fractions: the lowest such rate is the reference
    assert lowest_diverging_lr({1e-3: [False], 1e-2: [False, False], 1e-1: [True]}) == 1e-1
    assert lowest_diverging_lr({1e-2: [True, False], 1e-3: [True, False]}) == 1e-3
    with pytest.raises(ValueError, match="^diverged: expected verdicts per learning rate, got "
                                         "none$"):
        lowest_diverging_lr({})
    with pytest.raises(ValueError, match=r"^diverged: expected at least one seed per learning "
                                         r"rate, got none at \[0.01\]$"):
        lowest_diverging_lr({1e-3: [True], 1e-2: []})


# ---- the gate's time verdict: threshold 10 %, alpha 0.01, at least 5 samples --------------------

def comparison(ratio: float, low: float, high: float, p_slow: float = 1.0,
               p_fast: float = 1.0, n: int = 10) -> Comparison:
    return Comparison(n, n, ratio, low, high, p_slow, p_fast)


P = TimePolicy()


@pytest.mark.parametrize("ratio, verdict", [(1.095, "inconclusive"), (1.105, "regressed")])
def test_regression_needs_a_median_above_1_1(ratio, verdict):
    assert time_verdict(comparison(ratio, 1.01, 1.3, p_slow=1e-4), P) == verdict


def test_the_thresholds_themselves_are_not_enough():
    """A median exactly 1 + threshold (or its reciprocal) is not beyond it."""
    assert time_verdict(comparison(1 + P.threshold, 1.01, 1.3, p_slow=1e-4), P) == "inconclusive"
    fast = 1 / (1 + P.threshold)
    assert time_verdict(comparison(fast, 0.7, 0.99, p_fast=1e-4), P) == "inconclusive"


@pytest.mark.parametrize("ratio, verdict", [(1 / 1.095, "inconclusive"), (1 / 1.105, "improved")])
def test_improvement_needs_a_median_below_1_over_1_1(ratio, verdict):
    assert time_verdict(comparison(ratio, 0.7, 0.99, p_fast=1e-4), P) == verdict


@pytest.mark.parametrize("p, verdict", [(0.0095, "regressed"), (0.0105, "inconclusive"),
                                        (0.01, "inconclusive")])
def test_rank_test_level_is_0_01(p, verdict):
    assert time_verdict(comparison(1.3, 1.1, 1.5, p_slow=p), P) == verdict
    faster = time_verdict(comparison(0.7, 0.6, 0.9, p_fast=p), P)
    assert faster == verdict.replace("regressed", "improved")


def test_interval_must_exclude_1():
    assert time_verdict(comparison(1.3, 1.0, 1.5, p_slow=1e-4), P) == "inconclusive"
    assert time_verdict(comparison(1.3, 1.001, 1.5, p_slow=1e-4), P) == "regressed"
    assert time_verdict(comparison(0.7, 0.5, 1.0, p_fast=1e-4), P) == "inconclusive"
    assert time_verdict(comparison(0.7, 0.5, 0.999, p_fast=1e-4), P) == "improved"


@pytest.mark.parametrize("low, high, verdict", [
    (1 / 1.1, 1.1, "unchanged"), (0.95, 1.095, "unchanged"), (0.95, 1.105, "inconclusive"),
    (1 / 1.095, 1.05, "unchanged"), (1 / 1.105, 1.05, "inconclusive"),
])
def test_unchanged_needs_the_whole_interval_inside_plus_minus_10_percent(low, high, verdict):
    assert time_verdict(comparison(1.0, low, high), P) == verdict


@pytest.mark.parametrize("n, verdict", [(4, "inconclusive"), (5, "regressed")])
def test_at_least_5_samples_per_side(n, verdict):
    c = comparison(2.0, 1.8, 2.2, p_slow=1e-4, n=n)
    assert time_verdict(c, P) == verdict
    lopsided = Comparison(n, 50, 2.0, 1.8, 2.2, 1e-4, 1.0)
    assert time_verdict(lopsided, P) == verdict
    assert time_verdict(Comparison(50, n, 2.0, 1.8, 2.2, 1e-4, 1.0), P) == verdict
    note = "fewer than 5 samples per side"
    assert (note in time_finding("c", "v", c, P).detail) == (n < 5)


def test_policy_defaults_and_their_validation():
    assert (P.threshold, P.alpha, P.confidence, P.min_samples) == (0.10, 0.01, 0.95, 5)
    for bad in ({"threshold": 0.0}, {"threshold": 10.0}, {"alpha": 0.0}, {"alpha": 1.0},
                {"min_samples": 1}):
        name = next(iter(bad))
        with pytest.raises(ValueError, match=name):
            TimePolicy(**bad)
    TimePolicy(threshold=9.9, alpha=0.99, min_samples=2)  # the edges that are allowed


def test_confirmation_and_the_screens_median():
    slow = comparison(1.3, 1.1, 1.5, p_slow=1e-4)
    screen_at_threshold = comparison(1.1, 0.9, 1.3)
    screen_above = comparison(1.105, 0.9, 1.3)
    assert confirmed_verdict(screen_at_threshold, slow, P) == "inconclusive"
    assert confirmed_verdict(screen_above, slow, P) == "regressed"
    assert needs_confirmation("inconclusive", comparison(1.001, 0.9, 1.2))
    assert not needs_confirmation("inconclusive", comparison(1.0, 0.9, 1.2))
    assert needs_confirmation("regressed", comparison(0.9, 0.9, 1.2))
    assert not needs_confirmation("improved", comparison(0.8, 0.7, 0.9))


def test_time_finding_reports_the_p_value_of_its_direction():
    c = comparison(0.7, 0.6, 0.9, p_slow=0.9, p_fast=1e-4)
    f = time_finding("case", "v", c, P)
    assert f.verdict == "improved" and f.p_value == 1e-4 and not f.fails_gate
    r = time_finding("case", "v", comparison(1.3, 1.1, 1.5, p_slow=2e-3), P, detail="confirmed")
    assert r.verdict == "regressed" and r.p_value == 2e-3 and r.fails_gate
    assert r.detail == ("median 1.300x (95% CI 1.100-1.500), rank test p=0.002, n=10+10; "
                        "confirmed")
    assert time_finding("case", "v", c, P, verdict="inconclusive").verdict == "inconclusive"


# ---- the gate's memory margin: max(5 %, 256 KiB) -----------------------------------------------

MiB, KiB = 2**20, 1024


@pytest.mark.parametrize("head, verdict", [
    (100 * MiB * 1.0475, "unchanged"), (100 * MiB * 1.0525, "regressed"),
    (100 * MiB * 0.9525, "unchanged"), (100 * MiB * 0.9475, "improved"),
    (100 * MiB * 1.05, "unchanged"),
])
def test_memory_relative_margin_is_5_percent(head, verdict):
    assert memory_finding("c", "v", 100 * MiB, head).verdict == verdict
    assert MEMORY_REL == 0.05


@pytest.mark.parametrize("extra, verdict", [(243 * KiB, "unchanged"), (269 * KiB, "regressed"),
                                            (256 * KiB, "unchanged")])
def test_memory_absolute_margin_is_256_kib(extra, verdict):
    """Small cases: 5 % of 1 MiB is 51 KiB, so the 256 KiB floor decides (+-5 % around it)."""
    assert memory_finding("c", "v", MiB, MiB + extra).verdict == verdict
    assert memory_finding("c", "v", MiB + extra, MiB).verdict == \
        verdict.replace("regressed", "improved")
    assert MEMORY_ABS == 256 * KiB


def test_memory_ratio_and_detail():
    f = memory_finding("c", "v", 2 * MiB, 3 * MiB)
    assert f.ratio == 1.5 and f.fails_gate
    assert f.detail == "peak 2.00 MiB -> 3.00 MiB (+1.00 MiB; margin 0.25 MiB)"
    assert memory_finding("c", "v", 0, 0).ratio == 1.0
    assert memory_finding("c", "v", 0, MiB).ratio == math.inf


# ---- what each finding carries, and the order a person reads them in ---------------------------

def test_findings_carry_case_variant_and_numbers():
    c = comparison(1.3, 1.1, 1.5, p_slow=2e-3, n=4)
    t = time_finding("case", "v", c, P)
    assert (t.case, t.variant, t.kind, t.ratio, t.ci_low, t.ci_high) == \
        ("case", "v", "time", 1.3, 1.1, 1.5)
    assert t.detail == ("median 1.300x (95% CI 1.100-1.500), rank test p=0.002, n=4+4; "
                        "fewer than 5 samples per side")
    m = memory_finding("case", "v", 1, 2)
    assert (m.case, m.variant, m.kind, m.ratio) == ("case", "v", "memory", 2.0)
    s = structural_finding("case", "v", False, "why", ratio=2.0, ci_low=1.5, ci_high=2.5)
    assert (s.case, s.variant, s.kind, s.verdict, s.ratio, s.ci_low, s.ci_high, s.detail,
            s.fails_gate) == ("case", "v", "structural", "warning", 2.0, 1.5, 2.5, "why", False)
    assert structural_finding("c", "v", False, "", as_error=True).fails_gate


def test_correctness_finding_details():
    ok, bad = GateCheck(True, 1.5, 2.0), GateCheck(False, 3.0, 2.0, "ratio 3 > 2")
    f = correctness_finding("case", "v", ok, bad)
    assert (f.case, f.variant, f.kind, f.verdict, f.ratio, f.fails_gate) == \
        ("case", "v", "correctness", "regressed", 3.0, True)
    assert f.detail == "error ratio 1.5 -> 3 (bound 2); ratio 3 > 2"
    assert correctness_finding("c", "v", None, GateCheck(False)).detail == \
        "error ratio n/a -> n/a (bound n/a); check failed"
    fixed = correctness_finding("c", "v", GateCheck(False), ok)
    assert fixed.verdict == "improved" and not fixed.fails_gate
    assert fixed.detail == "error ratio n/a -> 1.5 (bound 2); fixed (base: failed)"
    assert correctness_finding("c", "v", GateCheck(False, reason="r"), ok).detail.endswith(
        "fixed (base: r)")
    assert correctness_finding("c", "v", ok, ok).detail == "error ratio 1.5 -> 1.5 (bound 2)"


def test_as_dict_writes_non_finite_numbers_as_null():
    f = GateFinding("c", "v", "time", "regressed", ratio=math.inf, ci_low=math.nan, ci_high=1.25,
                    p_value=None)
    d = f.as_dict()
    assert (d["ratio"], d["ci_low"], d["ci_high"], d["p_value"]) == (None, None, 1.25, None)
    assert d["case"] == "c" and d["fails_gate"] is False and d["extra"] == {}


def test_worst_first_orders_by_failure_verdict_kind_and_size():
    def f(verdict, kind="time", ratio=None, fails=False, case="c"):
        return GateFinding(case, "v", kind, verdict, ratio, fails_gate=fails)

    findings = [f("unchanged", ratio=1.0), f("odd", case="d"), f("warning", "structural"),
                f("improved", ratio=0.5), f("regressed", ratio=1.2, fails=True, case="a"),
                f("regressed", ratio=1.5, fails=True, case="b"),
                f("failing", "correctness"), f("inconclusive", ratio=math.inf)]
    order = [(x.verdict, x.case) for x in worst_first(findings)]
    assert order == [("regressed", "b"), ("regressed", "a"), ("failing", "c"),
                     ("warning", "c"), ("inconclusive", "c"), ("odd", "d"), ("improved", "c"),
                     ("unchanged", "c")]
    sized = worst_first([f("inconclusive", ratio=math.inf, case="x"),
                         f("inconclusive", ratio=0.5, case="y"),
                         f("inconclusive", case="z")])
    assert [x.case for x in sized] == ["y", "x", "z"]  # no or infinite ratio: size 0
