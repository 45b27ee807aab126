"""Statistics for comparing two sets of timing samples: median ratio, its bootstrap interval and
a Mann-Whitney U rank test.

Why these three together: the median ratio is the effect size a person reads ("head is 1.3x
slower"); the bootstrap interval says how sure that number is without assuming a distribution
(timings are skewed and bursty); the rank test asks whether head samples are *systematically*
larger, which a few outliers cannot fake. A regression needs all three to agree (see
``bench.gate.verdicts``).

Pure numpy and the standard library: scipy is not a dependency of this project.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Alternative = Literal["greater", "less"]

# Exact rank-test distribution up to this many samples per side (and no ties); beyond it the
# normal approximation is accurate to well under 1e-3 in the tail probabilities used here.
EXACT_MAX = 50


def as_samples(values: Sequence[float], name: str) -> np.ndarray:
    """Finite, positive timings as a float array; anything else is a caller bug worth naming."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a flat list of samples, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        bad = [float(x) for x in array if not (math.isfinite(x) and x > 0)][:3]
        raise ValueError(f"{name}: samples must be finite and positive, got {bad}")
    return array


def median_ratio(base: Sequence[float], head: Sequence[float]) -> float:
    """median(head) / median(base): above 1 means head is slower."""
    return float(np.median(as_samples(head, "head")) / np.median(as_samples(base, "base")))


def bootstrap_ratio_ci(base: Sequence[float], head: Sequence[float], *,
                       confidence: float = 0.95, resamples: int = 2000, seed: int = 0
                       ) -> tuple[float, float]:
    """Percentile bootstrap interval of median(head) / median(base).

    Each side is resampled independently: the two sides' samples were interleaved in time, so
    drift and contention bursts fall on both sides alike and need no pairing to cancel.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a number in (0, 1), got {confidence}")
    if resamples < 1:  # zero resamples made a NaN interval, silently
        raise ValueError(f"resamples: expected at least 1, got {resamples}")
    a, b = as_samples(base, "base"), as_samples(head, "head")
    rng = np.random.default_rng(seed)
    med_a = np.median(a[rng.integers(0, a.size, (resamples, a.size))], axis=1)  # (resamples,)
    med_b = np.median(b[rng.integers(0, b.size, (resamples, b.size))], axis=1)  # (resamples,)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(med_b / med_a, [tail, 100 - tail])
    return float(low), float(high)


def _exact_u_distribution(m: int, n: int) -> list[int]:
    """Counts of each U value (0..m*n) over all C(m+n, m) orderings without ties.

    They are the coefficients of the Gaussian binomial [m+n choose m](q) =
    prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i), built by multiplying and dividing polynomials
    term by term in exact integers.
    """
    coeffs = [1] + [0] * (m * n)
    for i in range(1, m + 1):
        for k in range(m * n, n + i - 1, -1):  # multiply by (1 - q^(n+i))
            coeffs[k] -= coeffs[k - n - i]
        for k in range(i, m * n + 1):  # divide by (1 - q^i)
            coeffs[k] += coeffs[k - i]
    return coeffs


def mann_whitney_u(base: Sequence[float], head: Sequence[float],
                   alternative: Alternative = "greater") -> tuple[float, float]:
    """One-sided Mann-Whitney U test. Returns (U, p).

    U counts the (base, head) pairs where head is larger (ties count one half). With
    ``alternative="greater"`` the p-value is P(U >= observed) under "both sides come from one
    distribution", i.e. small when head is systematically slower; ``"less"`` the opposite.
    Exact distribution for small samples without ties, else the normal approximation with tie
    and continuity corrections.
    """
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative: expected 'greater' or 'less', got {alternative!r}")
    a, b = as_samples(base, "base"), as_samples(head, "head")
    m, n = a.size, b.size
    u = float(np.sum(b[:, None] > a[None, :]) + 0.5 * np.sum(b[:, None] == a[None, :]))
    u_tail = u if alternative == "greater" else m * n - u  # the tail we ask about is the upper
    pooled = np.concatenate([a, b])
    _, tie_sizes = np.unique(pooled, return_counts=True)
    ties = bool(np.any(tie_sizes > 1))
    if not ties and max(m, n) <= EXACT_MAX:
        counts = _exact_u_distribution(m, n)
        p = sum(counts[math.ceil(u_tail):]) / math.comb(m + n, m)
        return u, float(p)
    total = m + n
    tie_term = float(np.sum(tie_sizes.astype(float) ** 3 - tie_sizes)) / (total * (total - 1))
    sigma = math.sqrt(m * n / 12 * ((total + 1) - tie_term))
    if sigma == 0:  # every sample identical: no evidence either way
        return u, 1.0
    z = (u_tail - m * n / 2 - 0.5) / sigma
    return u, float(0.5 * math.erfc(z / math.sqrt(2)))


@dataclass(frozen=True)
class Comparison:
    """Everything the time verdict needs about one case, base vs head."""

    n_base: int
    n_head: int
    ratio: float  # median(head) / median(base)
    ci_low: float
    ci_high: float
    p_slower: float  # rank test, head systematically slower
    p_faster: float  # rank test, head systematically faster


def compare(base: Sequence[float], head: Sequence[float], *, confidence: float = 0.95,
            resamples: int = 2000, seed: int = 0) -> Comparison:
    """Median ratio, its bootstrap interval and both one-sided rank tests."""
    low, high = bootstrap_ratio_ci(base, head, confidence=confidence, resamples=resamples,
                                   seed=seed)
    return Comparison(n_base=len(base), n_head=len(head), ratio=median_ratio(base, head),
                      ci_low=low, ci_high=high,
                      p_slower=mann_whitney_u(base, head, "greater")[1],
                      p_faster=mann_whitney_u(base, head, "less")[1])


def bootstrap_median_ci(values: Sequence[float], *, confidence: float = 0.95,
                        resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``values`` (e.g. one median per worker
    process, or one ratio per process). With 3-5 values it is close to [min, max]: an honest
    width for so few independent processes."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a number in (0, 1), got {confidence}")
    x = as_samples(values, "values")
    rng = np.random.default_rng(seed)
    medians = np.median(x[rng.integers(0, x.size, (resamples, x.size))], axis=1)  # (resamples,)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)
