"""The divergence verdict on synthetic curves, spike counting, Wortsman's learning-rate
sensitivity and the lowest diverging learning rate."""

from __future__ import annotations

import math

import pytest
from attnbench.stability.verdicts import (
    count_spikes,
    divergence_verdict,
    lowest_diverging_lr,
    lr_sensitivity,
)

INIT, UNIGRAM = 4.6, 3.24  # ln(100)-ish initial loss; English character unigram entropy


def falling(start: float, end: float, n: int = 30) -> list[float]:
    return [start + (end - start) * (1 - math.exp(-5 * t / n)) for t in range(n + 1)]


def test_healthy() -> None:
    assert divergence_verdict(falling(INIT, 2.3), INIT, UNIGRAM) == "healthy"


def test_nan_anywhere() -> None:
    curve = falling(INIT, 2.3)
    curve[10] = math.nan
    assert divergence_verdict(curve, INIT, UNIGRAM) == "nan"
    assert divergence_verdict([INIT, 2.5, math.inf], INIT, UNIGRAM) == "nan"


def test_nan_in_training_loss_only() -> None:
    assert divergence_verdict(falling(INIT, 2.3), INIT, UNIGRAM,
                              train_losses=[4.0, 3.0, math.nan]) == "nan"


def test_blowup_above_initial_loss() -> None:
    assert divergence_verdict([INIT, 3.0, 5.5, 7.0], INIT, UNIGRAM) == "blowup"


def test_unigram_collapse_without_nan() -> None:
    """The failure that actually happens: finite, below the initial loss, stuck at the
    plateau. A NaN check calls this healthy."""
    curve = falling(INIT, UNIGRAM + 0.01)
    assert all(math.isfinite(v) for v in curve) and curve[-1] < INIT
    assert divergence_verdict(curve, INIT, UNIGRAM) == "unigram_collapse"


def test_collapse_after_learning() -> None:
    """Learned, then fell back to the plateau: judged by the final loss."""
    assert divergence_verdict([INIT, 2.6, 2.5, 3.2, UNIGRAM], INIT, UNIGRAM) == "unigram_collapse"


def test_margin_boundary() -> None:
    assert divergence_verdict([INIT, UNIGRAM - 0.09], INIT, UNIGRAM) == "unigram_collapse"
    assert divergence_verdict([INIT, UNIGRAM - 0.11], INIT, UNIGRAM) == "healthy"


def test_empty_curve_is_an_error() -> None:
    with pytest.raises(ValueError, match="val_losses"):
        divergence_verdict([], INIT, UNIGRAM)


def test_spikes() -> None:
    base = falling(INIT, 2.3, 60)
    assert count_spikes(base) == 0
    one = base[:40] + [4.0, 4.2, 3.9] + base[43:]
    assert count_spikes(one) == 1
    two = one[:50] + [5.0] + one[51:]
    assert count_spikes(two) == 2
    climb = base[:30] + [3.0 + 0.05 * i for i in range(31)]  # sustained rise: one event
    assert count_spikes(climb) == 1
    assert count_spikes(base[:30] + [math.nan]) == 1


def test_lr_sensitivity_formula() -> None:
    """E_eta[min(loss(eta), loss_init) - loss_best]: NaN and losses above init count as init."""
    losses = {1e-3: 2.0, 1e-2: 1.5, 1e-1: math.nan, 3e-1: 9.0}
    capped = [2.0, 1.5, 4.0, 4.0]
    expected = sum(v - 1.5 for v in capped) / 4
    assert lr_sensitivity(losses, init_loss=4.0) == pytest.approx(expected)
    assert lr_sensitivity({1e-3: 2.0, 1e-2: 2.0}, 4.0) == 0.0


def test_lr_sensitivity_all_failed() -> None:
    assert lr_sensitivity({1e-3: math.nan, 1e-2: 7.0}, init_loss=4.0) == 0.0


def test_lowest_diverging_lr() -> None:
    grid = {1e-3: [False, False], 1e-2: [False, True], 1e-1: [True, True]}
    assert lowest_diverging_lr(grid) == 1e-2
    assert lowest_diverging_lr({1e-3: [False], 1e-2: [False]}) is None
    # Too small to learn in the budget at the bottom of the grid is not divergence.
    assert lowest_diverging_lr({3e-4: [True], 1e-3: [False], 1e-2: [True]}) == 1e-2
    assert lowest_diverging_lr({1e-3: [True], 1e-2: [True]}) == 1e-3


def test_seed_verdict_needs_every_seed_and_enough_seeds() -> None:
    from attnbench.stability.verdicts import MIN_SEEDS, overall_verdict, seed_verdict

    assert MIN_SEEDS == 3
    assert seed_verdict(3, 3) == "reproduced" and seed_verdict(0, 3) == "not reproduced"
    assert seed_verdict(2, 3) == "inconclusive" and seed_verdict(1, 3) == "inconclusive"
    assert seed_verdict(2, 2) == "inconclusive" and seed_verdict(0, 1) == "inconclusive"
    assert seed_verdict(4, 4) == "reproduced"
    with pytest.raises(ValueError, match="showing"):
        seed_verdict(4, 3)
    assert overall_verdict(["not reproduced", "reproduced"]) == "reproduced"
    assert overall_verdict(["not reproduced", "not reproduced"]) == "not reproduced"
    assert overall_verdict(["not reproduced", "inconclusive"]) == "inconclusive"
    with pytest.raises(ValueError, match="^verdicts: expected one verdict per tested regime, "
                                         "got none$"):
        overall_verdict([])
