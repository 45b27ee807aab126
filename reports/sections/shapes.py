"""Per-shape results: every timed attention case as one row, the table TritonBench prints.

Per run, mode and dtype, one collapsed table: the problem, latency (median, with its 95 %
bootstrap interval over the timing samples), useful TFLOP/s, speed-up against the baseline
with its interval and call (faster / slower / tie by the noise-aware rule of ``speed.py``),
and the accuracy the throughput run spot-checked on the same case (error ratio, 1 = as
accurate as textbook attention in that dtype).
"""

from __future__ import annotations

import pandas as pd
from attnbench.reports.document import Cell, Details, Note, Section, fmt, not_measured, table
from attnbench.reports.load import Bundle
from attnbench.reports.sections import register_section
from attnbench.reports.sections.common import SHAPE, attention_cases, groups
from attnbench.reports.speed import floor_text, median_interval, speedups, time_samples

CALL_TONES = {"faster": "good", "slower": "warn", "tie": ""}


def shape_text(row: pd.Series) -> str:
    """"B1 H4/2 N512 S512 D64 causal": the problem in the suite's own words."""
    heads = f"H{fmt(row['Hq'])}" + (f"/{fmt(row['Hkv'])}" if row["Hkv"] != row["Hq"] else "")
    text = f"B{fmt(row['B'])} {heads} N{fmt(row['N'])}"
    text += f" S{fmt(row['S'])}" if row["S"] == row["S"] and row["S"] != row["N"] else ""
    text += f" D{fmt(row['D'])}" + (f" Dv{fmt(row['Dv'])}" if row["Dv"] == row["Dv"]
                                    and row["Dv"] != row["D"] else "")
    return text + (" causal" if row["causal"] is True or row["causal"] == 1 else "")


def latency_text(bundle: Bundle, row: pd.Series) -> str:
    median, low, high = median_interval(time_samples(bundle, row["run"], row["case_id"],
                                                     row["time_median_s"]))
    if low != low:
        return f"{fmt(median * 1e3)}"
    return f"{fmt(median * 1e3)} [{fmt(low * 1e3)}, {fmt(high * 1e3)}]"


def speedup_cell(found: pd.DataFrame, case_id: str, baseline: str, variant: str) -> Cell:
    if variant == baseline:
        return Cell("baseline", "muted")
    row = found[found["case_id"] == case_id]
    if row.empty:
        return Cell("–", "muted")
    r = row.iloc[0]
    interval = (f" [{r['speedup_low']:.2f}, {r['speedup_high']:.2f}]"
                if r["speedup_low"] == r["speedup_low"] else "")
    return Cell(f"{r['speedup']:.2f}×{interval} {r['call']}", CALL_TONES[r["call"]])


@register_section(order=55)
def build(bundle: Bundle) -> Section:
    section = Section("per-shape", "Per-shape results", (
        "One row per timed case. Latency in ms: median over the timing samples, [95 % "
        "interval]. Speed-up = baseline time / variant time with its interval; 'tie' unless "
        "the interval clears 1 by more than the noise floor. Accuracy: the run's error ratio "
        "on sampled output rows (1 = as accurate as textbook attention in that dtype). "
        "Click a table to open it."))
    cases = attention_cases(bundle)
    cases = cases[cases["time_median_s"].notna()] if not cases.empty else cases
    if cases.empty:
        section.items.append(not_measured("per-shape results", "no timed attention cases"))
        return section
    found = speedups(bundle, cases)
    section.items.append(Note(floor_text(bundle).capitalize() + "."))
    for (run, mode, dtype), g in groups(cases, ["run", "mode", "dtype"]):
        g = g.sort_values([*SHAPE, "variant"], key=lambda s: s.astype(str)
                          if s.dtype == object else s)
        rows = [[r["variant"], shape_text(r), latency_text(bundle, r), fmt(r["tflops"]),
                 speedup_cell(found, r["case_id"], bundle.baseline, r["variant"]),
                 fmt(r["error_ratio"])] for _, r in g.iterrows()]
        t = table(["variant", "problem", "latency ms [95 %]", "TFLOP/s",
                   f"speed-up vs {bundle.baseline} [95 %]", "accuracy (error ratio)"], rows)
        where = f" [{run}]" if bundle.several_runs else ""
        section.items.append(Details(f"{mode}, {dtype}: {len(rows)} cases{where}", [t]))
    return section
