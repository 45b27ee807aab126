"""Per-shape results: every timed attention case as one row, the table TritonBench prints.

Per run, mode and dtype, one collapsed table: the problem, latency (median of per-process
medians with its 95 % interval over worker processes), useful TFLOP/s, speed-up against the
baseline with its interval and call (faster / slower / tie against the run's A/A noise floor,
``attnbench.speed`` through the throughput section's ``speedups``), and the accuracy the
throughput run spot-checked on the same case (sampled_error_ratio, 1 = as accurate as
textbook attention in that dtype).
"""

from __future__ import annotations

import pandas as pd
from attnbench.reports.document import Cell, Details, Note, Section, fmt, not_measured, table
from attnbench.reports.load import Bundle, ensure
from attnbench.reports.sections import register_section
from attnbench.reports.sections.common import SHAPE, attention_cases, groups
from attnbench.reports.sections.throughput import noise_floors, speedups

CALL_TONES = {"faster": "good", "slower": "warn", "tie": ""}


def shape_text(row: pd.Series) -> str:
    """"B1 H4/2 N512 S512 D64 causal": the problem in the suite's own words."""
    heads = f"H{fmt(row['Hq'])}" + (f"/{fmt(row['Hkv'])}" if row["Hkv"] != row["Hq"] else "")
    text = f"B{fmt(row['B'])} {heads} N{fmt(row['N'])}"
    text += f" S{fmt(row['S'])}" if row["S"] == row["S"] and row["S"] != row["N"] else ""
    text += f" D{fmt(row['D'])}" + (f" Dv{fmt(row['Dv'])}" if row["Dv"] == row["Dv"]
                                    and row["Dv"] != row["D"] else "")
    return text + (" causal" if row["causal"] is True or row["causal"] == 1 else "")


def latency_text(row: pd.Series) -> str:
    """"2.14 [2.10, 2.22]": ms, with the interval over worker processes when recorded."""
    text = fmt(row["time_median_s"] * 1e3)
    low, high = row["time_ci_low_s"], row["time_ci_high_s"]
    return text + (f" [{fmt(low * 1e3)}, {fmt(high * 1e3)}]" if low == low and high == high
                   else "")


def speedup_cell(found: pd.DataFrame, case_id: str, baseline: str, variant: str) -> Cell:
    if variant == baseline:
        return Cell("baseline", "muted")
    row = found[found["case_id"] == case_id]
    if row.empty:
        return Cell("–", "muted")
    r = row.iloc[0]
    interval = f" [{r['low']:.2f}, {r['high']:.2f}]" if r["low"] == r["low"] else ""
    return Cell(f"{r['speedup']:.2f}×{interval} {r['call']}", CALL_TONES[r["call"]])


def floor_text(bundle: Bundle) -> str:
    """Which noise floor the calls used, per run; without one nothing is called."""
    floors = noise_floors(bundle)
    missing = [label for label in bundle.labels if label not in floors]
    said = [f"{f:.1%}" + (f" [{run}]" if bundle.several_runs else "")
            for run, f in sorted(floors.items())]
    text = ("A/A noise floor (90th percentile of |ratio − 1| over the run's A/A controls): "
            + ", ".join(said) + "." if said else "")
    if missing:
        text += (" No A/A noise floor recorded" + (f" for {', '.join(missing)}"
                                                  if bundle.several_runs else "")
                 + ": nothing is called there (every comparison reads 'tie').")
    return text.strip()


@register_section(order=55)
def build(bundle: Bundle) -> Section:
    section = Section("per-shape", "Per-shape results", (
        "One row per timed case. Latency in ms: median of the worker processes' medians, "
        "[95 % interval over processes]. Speed-up = baseline time / variant time with its "
        "interval; 'tie' unless the interval clears 1 by more than the run's A/A noise floor. "
        "Accuracy: the run's sampled error ratio on sampled output rows (1 = as accurate as "
        "textbook attention in that dtype). Click a table to open it."))
    cases = attention_cases(bundle)
    cases = cases[cases["time_median_s"].notna()] if not cases.empty else cases
    if cases.empty:
        section.items.append(not_measured("per-shape results", "no timed attention cases"))
        return section
    cases = ensure(cases, "time_ci_low_s", "time_ci_high_s", "sampled_error_ratio")
    found = speedups(bundle, cases, bundle.baseline)
    section.items.append(Note(floor_text(bundle)))
    for (run, mode, dtype), g in groups(cases, ["run", "mode", "dtype"]):
        g = g.sort_values([*SHAPE, "variant"], key=lambda s: s.astype(str)
                          if s.dtype == object else s)
        rows = [[r["variant"], shape_text(r), latency_text(r), fmt(r["tflops"]),
                 speedup_cell(found, r["case_id"], bundle.baseline, r["variant"]),
                 fmt(r["sampled_error_ratio"])] for _, r in g.iterrows()]
        t = table(["variant", "problem", "latency ms [95 %]", "TFLOP/s",
                   f"speed-up vs {bundle.baseline} [95 %]", "accuracy (sampled error ratio)"],
                  rows)
        where = f" [{run}]" if bundle.several_runs else ""
        section.items.append(Details(f"{mode}, {dtype}: {len(rows)} cases{where}", [t]))
    return section
