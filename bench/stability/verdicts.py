"""Judging runs: the divergence verdict, loss spikes, learning-rate sensitivity, the lowest
diverging learning rate, and a finding's verdict over seeds. Pure functions of curves and
numbers, tested on synthetic curves.

Why the verdict looks beyond NaN: in a CPU pilot of this benchmark (depth 6, d 64, 300
steps; docs/methods.md, "Stability criteria") every failed Post-LN run collapsed to the
unigram plateau (the loss of predicting character frequencies and ignoring context) with
near-zero updates, and none produced a NaN. A NaN-only test called all of them healthy.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

# A run whose final validation loss is within this many nats of the unigram loss, or anywhere
# above it, learned nothing beyond character frequencies. Measured on the quick preset: healthy
# runs ended 0.44 to 1.13 nats below the unigram loss, collapsed ones within 0.02 of it.
COLLAPSE_MARGIN = 0.1
SPIKE_WINDOW = 20  # steps of history a spike is judged against
SPIKE_RATIO = 1.25  # a step whose loss exceeds the recent median by 25% starts a spike

VERDICTS = ("healthy", "nan", "blowup", "unigram_collapse")
# A finding is decided over seeds: "reproduced" only when at least MIN_SEEDS seeds ran and every
# one shows the effect; "not reproduced" when at least MIN_SEEDS ran and none does; otherwise
# "inconclusive" (seeds disagree, or too few ran to tell a regime from a lucky seed: the
# issue's probe had Post-LN at lr 3e-3, beta2 0.95 collapse in one seed and train in another).
MIN_SEEDS = 3
SEED_VERDICTS = ("reproduced", "not reproduced", "inconclusive")


def divergence_verdict(val_losses: Sequence[float], init_loss: float, unigram_loss: float, *,
                       train_losses: Sequence[float] = (),
                       margin: float = COLLAPSE_MARGIN) -> str:
    """Classify a run from its validation curve (last value = final loss), in order:
    ``nan`` (a non-finite loss anywhere), ``blowup`` (final loss above the initial loss),
    ``unigram_collapse`` (final loss not more than ``margin`` below the unigram loss),
    ``healthy`` otherwise."""
    if not val_losses:
        raise ValueError("val_losses: expected at least the final validation loss, got none")
    if not all(math.isfinite(v) for v in (*val_losses, *train_losses)):
        return "nan"
    final = val_losses[-1]
    if final > init_loss:
        return "blowup"
    if final >= unigram_loss - margin:
        return "unigram_collapse"
    return "healthy"


def count_spikes(losses: Sequence[float], *, window: int = SPIKE_WINDOW,
                 ratio: float = SPIKE_RATIO) -> int:
    """Loss spikes: maximal runs of steps whose loss exceeds ``ratio`` times the median of the
    ``window`` steps before the run began. A falling curve never spikes; a sustained climb
    counts once."""
    spikes, inside, reference = 0, False, math.inf
    for t in range(window, len(losses)):
        if not inside:
            reference = statistics.median(losses[t - window:t])
        above = not math.isfinite(losses[t]) or losses[t] > ratio * reference
        if above and not inside:
            spikes += 1
        inside = above
    return spikes


def lr_sensitivity(final_losses: Mapping[float, float], init_loss: float) -> float:
    """Wortsman et al. 2023: E_eta[min(loss(eta), loss_init) - loss_best] over the swept
    learning rates, loss_best the lowest final loss among them. A non-finite loss counts as
    loss_init (the min caps every failure at "learned nothing")."""
    if not final_losses:
        raise ValueError("final_losses: expected one final loss per learning rate, got none")
    capped = [min(v, init_loss) if math.isfinite(v) else init_loss
              for v in final_losses.values()]
    best = min(capped)
    return sum(v - best for v in capped) / len(capped)


def lowest_diverging_lr(diverged: Mapping[float, Sequence[bool]]) -> float | None:
    """The lowest learning rate at which any seed diverged, among the learning rates at or
    above the one where the fewest seeds diverged (so "too small to learn in the budget", at
    the low end of a grid, is not counted as divergence). None if no run diverged there."""
    if not diverged:
        raise ValueError("diverged: expected verdicts per learning rate, got none")
    rates = sorted(diverged)
    empty = [r for r in rates if not diverged[r]]
    if empty:  # was a ZeroDivisionError
        raise ValueError(f"diverged: expected at least one seed per learning rate, got none "
                         f"at {empty}")
    fractions = [sum(diverged[r]) / len(diverged[r]) for r in rates]
    best = fractions.index(min(fractions))
    return next((r for r in rates[best:] if any(diverged[r])), None)


def seed_verdict(showing: int, seeds: int, *, min_seeds: int = MIN_SEEDS) -> str:
    """A finding's verdict in one regime from how many of ``seeds`` seeds showed the effect."""
    if seeds < 1 or not 0 <= showing <= seeds:
        raise ValueError(f"showing/seeds: expected 0 <= showing <= seeds and seeds >= 1, got "
                         f"{showing}/{seeds}")
    if seeds >= min_seeds and showing == seeds:
        return "reproduced"
    if seeds >= min_seeds and showing == 0:
        return "not reproduced"
    return "inconclusive"


def overall_verdict(verdicts: Sequence[str]) -> str:
    """Over the regimes a finding was tested in: reproduced if it was in any (the text names
    which), not reproduced if it was in none and every regime said so, else inconclusive."""
    if not verdicts:
        raise ValueError("verdicts: expected one verdict per tested regime, got none")
    if "reproduced" in verdicts:
        return "reproduced"
    return "not reproduced" if set(verdicts) == {"not reproduced"} else "inconclusive"
