"""Speed calls: "faster", "slower" or "tie", with the noise-aware rule.

A difference is called only when the interval of the time ratio clears 1 by more than the
run's noise floor; anything else is a tie. The interval is a percentile bootstrap of the ratio
of median times (resampling each side's timing samples; a fixed generator seed keeps the
report byte-identical). The noise floor is the run's own A/A measurement when it recorded one
(metric ``noise_floor``: the spread of the ratio between two identical callables), else
``ASSUMED_FLOOR``, and the report says which.

Two identical runs therefore produce no call: their ratio is 1 with an interval around it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from attnbench.reports.load import Bundle
from attnbench.reports.sections.common import SHAPE

ASSUMED_FLOOR = 0.05  # |ratio - 1| a run without an A/A control is assumed to show from noise
CONFIDENCE = 0.95
RESAMPLES = 2000
TIME_SAMPLES = ("time_s", "times_s", "time_samples_s", "time")  # samples.jsonl metric names


def call(low: float, high: float, floor: float) -> str:
    """Speed-up interval [low, high] (baseline time / variant time) to a call."""
    if not (low == low and high == high):
        return "tie"
    if low > 1 + floor:
        return "faster"
    if high < 1 / (1 + floor):
        return "slower"
    return "tie"


def ratio_interval(base: Sequence[float], other: Sequence[float],
                   seed: int = 0) -> tuple[float, float, float]:
    """median(base) / median(other) and its bootstrap interval (NaNs when a side is empty)."""
    a = np.asarray([x for x in base if x == x and x > 0], dtype=float)
    b = np.asarray([x for x in other if x == x and x > 0], dtype=float)
    if not len(a) or not len(b):
        return math.nan, math.nan, math.nan
    ratio = float(np.median(a) / np.median(b))
    if len(a) < 2 or len(b) < 2:
        return ratio, math.nan, math.nan
    rng = np.random.default_rng(seed)
    ma = np.median(rng.choice(a, size=(RESAMPLES, len(a))), axis=1)
    mb = np.median(rng.choice(b, size=(RESAMPLES, len(b))), axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(ma / mb, [tail, 100 - tail])
    return ratio, float(low), float(high)


def median_interval(samples: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
    """Median and its percentile-bootstrap interval (NaN bounds with fewer than 2 samples)."""
    a = np.asarray([x for x in samples if x == x], dtype=float)
    if not len(a):
        return math.nan, math.nan, math.nan
    if len(a) < 2:
        return float(a[0]), math.nan, math.nan
    medians = np.median(np.random.default_rng(seed).choice(a, size=(RESAMPLES, len(a))), axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(np.median(a)), float(low), float(high)


def time_samples(bundle: Bundle, run: str, case_id: str, median: float) -> list[float]:
    """A case's timing samples; its median alone when the run kept none (no interval then)."""
    for metric in TIME_SAMPLES:
        samples = bundle.samples(run, case_id, metric)
        if samples:
            return samples
    return [median] if median == median else []


def noise_floor(bundle: Bundle, run: str) -> tuple[float, bool]:
    """(floor, measured): the run's A/A noise floor if recorded, else the assumed one."""
    frame = bundle.table
    rows = frame[(frame["run"] == run) & (frame["metric"] == "noise_floor")
                 & (frame["status"] == "ok")]["value"].dropna()
    if len(rows):
        return float(rows.max()), True
    return ASSUMED_FLOOR, False


def floor_text(bundle: Bundle) -> str:
    """One sentence for a reader: which floor the calls used."""
    floors = {noise_floor(bundle, label) for label in bundle.labels}
    if all(measured for _, measured in floors):
        return ("noise floor measured by the run's A/A control: "
                + ", ".join(f"{f:.0%}" for f, _ in sorted(floors)))
    return (f"noise floor {ASSUMED_FLOOR:.0%} assumed (the run recorded no A/A control): a "
            f"call needs the 95 % interval of the speed-up beyond 1 ± {ASSUMED_FLOOR:.0%}")


def speedups(bundle: Bundle, cases: pd.DataFrame) -> pd.DataFrame:
    """Every non-baseline case joined with the baseline's case on the same problem in the same
    run: speedup (baseline time / variant time), its interval, and the call."""
    keys = ["run", *SHAPE]
    base = cases[cases["variant"] == bundle.baseline][[*keys, "case_id", "time_median_s"]]
    joined = cases[cases["variant"] != bundle.baseline].merge(base, on=keys,
                                                               suffixes=("", "_base"))
    if joined.empty:
        return joined.assign(speedup=[], speedup_low=[], speedup_high=[], call=[])
    found = [ratio_interval(time_samples(bundle, r["run"], r["case_id_base"],
                                         r["time_median_s_base"]),
                            time_samples(bundle, r["run"], r["case_id"], r["time_median_s"]))
             for _, r in joined.iterrows()]
    joined = joined.assign(speedup=[f[0] for f in found], speedup_low=[f[1] for f in found],
                           speedup_high=[f[2] for f in found])
    calls = [call(r["speedup_low"], r["speedup_high"], noise_floor(bundle, r["run"])[0])
             for _, r in joined.iterrows()]
    return joined.assign(call=calls)


def clear_winner(bundle: Bundle, problem: pd.DataFrame) -> pd.Series | None:
    """The variant with the lowest median time on one problem, if it is called faster than
    every other variant there; None when any comparison is a tie."""
    problem = problem[problem["time_median_s"].notna()]
    if problem["variant"].nunique() < 2:
        return None
    best = problem.loc[problem["time_median_s"].idxmin()]
    run = best["run"]
    floor = noise_floor(bundle, run)[0]
    mine = time_samples(bundle, run, best["case_id"], best["time_median_s"])
    for _, other in problem[problem["case_id"] != best["case_id"]].iterrows():
        _, low, _ = ratio_interval(time_samples(bundle, run, other["case_id"],
                                                other["time_median_s"]), mine)
        if call(low, math.inf, floor) != "faster":
            return None
    return best
