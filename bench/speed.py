"""Speed calls that survive the noise: replicated times, paired ratios, the A/A noise floor.

Every timed case is measured in R worker processes (``throughput.replicate``). Two processes
running the same code can differ by several per cent for their whole life (memory placement
on a shared machine), so no number of samples from one process averages that out; R processes
do. Hence:

    time          the median over processes of each process's median sample, with a bootstrap
                  interval over processes (``replicated_time``)
    comparison    per process, the ratio of two variants' medians (both measured in that
                  process, interleaved A B B A, so the process's bias cancels); the median of
                  those ratios with a bootstrap interval over processes (``ratio_interval``)
    noise floor   the same comparison between one variant and itself (an A/A control, in every
                  run): the 90th percentile of |ratio - 1| over the run's controls
                  (``noise_floor``)
    call          "faster" or "slower" only when the whole interval clears 1 by more than the
                  noise floor; otherwise "tie" (``speed_call``)

Pure numpy (the report imports it without torch).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from attnbench.gate.stats import bootstrap_median_ci

Call = Literal["faster", "slower", "tie"]
MAX_PROCESSES = 64
NOISE_QUANTILE = 90  # the noise floor is this percentile of |A/A ratio - 1|
CONFIDENCE = 0.95


def process_medians(per_process: Sequence[Sequence[float]]) -> list[float]:
    """One median per process that produced samples."""
    return [float(np.median(s)) for s in per_process if len(s)]


def per_process_medians(lookup: Callable[[str], Sequence[float] | None],
                        prefix: str = "time_s") -> list[float]:
    """Per-process medians read back from samples.jsonl entries ``<prefix>:p<r>`` (``lookup``
    maps such a metric name to its samples or None), NaN for a process without samples, so
    index r is process r on every case of the run."""
    medians = [float(np.median(s)) if s else math.nan
               for s in (lookup(f"{prefix}:p{r}") for r in range(MAX_PROCESSES))]
    while medians and medians[-1] != medians[-1]:  # trailing NaN: processes never started
        medians.pop()
    return medians


def replicated_time(per_process: Sequence[Sequence[float]]) -> dict[str, float]:
    """The time metrics of one case from its per-process samples (``attnbench.metrics``)."""
    medians = process_medians(per_process)
    if not medians:
        raise ValueError("replicated_time: no process produced samples")
    pooled = np.concatenate([np.asarray(s, dtype=float) for s in per_process if len(s)])
    low, high = bootstrap_median_ci(medians, confidence=CONFIDENCE)
    q1, q3 = np.percentile(pooled, [25, 75])
    return {"time_median_s": float(np.median(medians)), "time_ci_low_s": low,
            "time_ci_high_s": high, "time_iqr_s": float(q3 - q1),
            "time_n": float(pooled.size), "time_processes": float(len(medians)),
            "time_process_spread": max(medians) / min(medians) - 1,
            "time_min_s": float(np.median([min(s) for s in per_process if len(s)]))}


def ratio_interval(numerator: Sequence[float], denominator: Sequence[float]
                   ) -> tuple[float, float, float]:
    """(ratio, low, high) of numerator / denominator from per-process medians measured in the
    same processes (index r = process r; a process missing on either side is dropped):
    the median of the per-process ratios and its bootstrap interval over processes."""
    pairs = [(a, b) for a, b in zip(numerator, denominator, strict=False)
             if a == a and b == b and a > 0 and b > 0]  # a == a: not NaN
    if not pairs:
        return math.nan, math.nan, math.nan
    ratios = [a / b for a, b in pairs]
    low, high = bootstrap_median_ci(ratios, confidence=CONFIDENCE)
    return float(np.median(ratios)), low, high


def noise_floor(aa_ratios: Sequence[float]) -> dict[str, float]:
    """The run's noise floor from its A/A ratios: ``noise_floor`` (the NOISE_QUANTILE-th
    percentile of |ratio - 1|), the median and worst deviation, and how many controls."""
    dev = np.abs(np.asarray([r for r in aa_ratios if r == r], dtype=float) - 1)
    if dev.size == 0:
        return {"noise_floor": math.nan, "aa_median_dev": math.nan, "aa_worst_dev": math.nan,
                "aa_controls": 0.0}
    return {"noise_floor": float(np.percentile(dev, NOISE_QUANTILE)),
            "aa_median_dev": float(np.median(dev)), "aa_worst_dev": float(dev.max()),
            "aa_controls": float(dev.size)}


def speed_call(interval: tuple[float, float], noise_floor: float) -> Call:
    """"faster" when the speed-up interval (above 1 = faster) lies wholly above 1 + floor,
    "slower" when it lies wholly below 1 / (1 + floor), else "tie". A missing or NaN floor
    (no A/A control in the run) calls nothing: without a measured floor a difference cannot
    be told from noise."""
    low, high = interval
    if not (noise_floor == noise_floor and noise_floor >= 0) or low != low or high != high:
        return "tie"
    if low > 1 + noise_floor:
        return "faster"
    if high < 1 / (1 + noise_floor):
        return "slower"
    return "tie"


def speedup(base: Sequence[float], variant: Sequence[float], floor: float
            ) -> dict[str, float | str]:
    """One speed comparison from per-process medians of the same processes: the speed-up
    time(base) / time(variant) (above 1: the variant is faster), its interval and the call."""
    ratio, low, high = ratio_interval(base, variant)
    return {"speedup": ratio, "low": low, "high": high,
            "call": speed_call((low, high), floor)}
