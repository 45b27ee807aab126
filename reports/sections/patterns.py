"""Attention patterns: time and peak memory of each variant on each pattern, against the
baseline run with the pattern's dense mask, and where block sparsity starts to pay.

Reads the ``patterns`` suite (``attnbench bench --preset patterns``): the throughput benchmark
on pattern cases, timed the same way (replicated over worker processes, interleaved, with an
A/A control giving the run's noise floor). A variant runs a pattern natively (``flex``: a
block mask, so fully masked blocks are skipped) or through a dense boolean mask (``sdpa``),
or evaluates it densely (``naive``); the column "runs it" says which. Speed-up = baseline
time / variant time, paired by process, called faster or slower only when its interval
clears 1 by more than the run's noise floor (``attnbench.speed.speed_call``). Compile time is
its own number (``compile_s``): time is measured after warm-up and never includes it.
"""

from __future__ import annotations

import math

import pandas as pd
from attnbench.reports import figures
from attnbench.reports.document import (
    Cell,
    Figure,
    Note,
    Section,
    fmt,
    fmt_bytes,
    not_measured,
    table,
)
from attnbench.reports.load import Bundle, ensure
from attnbench.reports.sections import register_section
from attnbench.reports.sections.common import SHAPE, attention_cases, groups, run_column
from attnbench.reports.sections.shapes import CALL_TONES, latency_text
from attnbench.reports.sections.throughput import noise_floors, process_medians
from attnbench.speed import speedup

SUITE = "patterns"
FAMILY = ["run", "pattern", "mode", "dtype", "device", "B", "Hq", "Hkv", "D", "Dv"]
VIA = {"native": "native (pattern=)", "dense_mask": "dense attn_mask"}


def pattern_cases(bundle: Bundle) -> pd.DataFrame:
    """One row per timed pattern case (wide), with the columns this section reads."""
    cases = attention_cases(bundle, SUITE)
    if cases.empty:
        return cases
    cases = ensure(cases, "pattern", "pattern_via", "compile_s", "time_ci_low_s",
                   "time_ci_high_s")
    return cases[cases["time_median_s"].notna() & cases["pattern"].notna()]


def pattern_speedups(bundle: Bundle, cases: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Each non-baseline case joined with the baseline on the same pattern and problem of the
    same run: speed-up, its interval over processes and the call against the noise floor."""
    keys = ["run", "pattern", *SHAPE]
    base = cases[cases["variant"] == baseline][keys + ["case_id", "mem_peak_bytes"]]
    joined = cases[cases["variant"] != baseline].merge(base, on=keys, suffixes=("", "_base"))
    floors = noise_floors(bundle, SUITE)
    found = [speedup(process_medians(bundle, r["run"], r["case_id_base"]),
                     process_medians(bundle, r["run"], r["case_id"]),
                     floors.get(r["run"], math.nan)) for _, r in joined.iterrows()]
    extra = pd.DataFrame(found, index=joined.index, columns=["speedup", "low", "high", "call"])
    return pd.concat([joined, extra], axis=1)


def pays_from(line: pd.DataFrame) -> str:
    """Where a variant's speed-up against the baseline clears the noise floor for good: the
    smallest N from which every longer N measured is called faster."""
    line = line.sort_values("N")
    calls = list(line["call"])
    low, high = fmt(line["N"].min()), fmt(line["N"].max())
    for i in range(len(calls)):
        if all(c == "faster" for c in calls[i:]):
            r = line.iloc[i]
            got = f"{r['speedup']:.2f}× [{r['low']:.2f}, {r['high']:.2f}]"
            if len(calls) == 1:
                return f"faster at N {low}, the only length measured ({got})"
            if i == 0:
                return (f"pays at every N measured (N {low}–{high}; {got} at N {low}): the "
                        "crossover lies below this range")
            return f"pays from N = {fmt(r['N'])} ({got}) in N {low}–{high}"
    counted = ", ".join(f"{calls.count(c)} {c}" for c in ("faster", "tie", "slower")
                        if c in calls)
    span = f"N {low}–{high}" if low != high else f"at N {low} only"
    return f"does not pay in this range ({span}; calls: {counted})"


def speed_cell(r: pd.Series | None) -> Cell:
    if r is None:
        return Cell("baseline", "muted")
    if r["speedup"] != r["speedup"]:
        return Cell("no interval (no per-process samples)", "muted")
    return Cell(f"{r['speedup']:.2f}× [{r['low']:.2f}, {r['high']:.2f}] {r['call']}",
                CALL_TONES[r["call"]])


def memory_ratio(r: pd.Series | None) -> str:
    if r is None or not (r["mem_peak_bytes"] > 0 and r["mem_peak_bytes_base"] > 0):
        return "–"
    return f"{r['mem_peak_bytes'] / r['mem_peak_bytes_base']:.2f}×"


def pattern_table(g: pd.DataFrame, joined: pd.DataFrame, baseline: str) -> list[list]:
    """One row per (N, variant) of one pattern family."""
    by_case = {r["case_id"]: r for _, r in joined.iterrows()}
    rows = []
    for _, r in g.sort_values(["N", "variant"]).iterrows():
        j = by_case.get(r["case_id"])
        is_base = r["variant"] == baseline
        speed = speed_cell(None) if is_base else (
            speed_cell(j) if j is not None else Cell(f"– ({baseline} not run)", "muted"))
        rows.append([fmt(r["N"]), r["variant"], VIA.get(r["pattern_via"], "–"),
                     latency_text(r), speed,
                     fmt_bytes(r["mem_peak_bytes"]),
                     "baseline" if is_base else memory_ratio(j),
                     fmt(r["compile_s"])])
    return rows


def pattern_label(text: str) -> str:
    """"causal + softcap: cap=20": the pattern's text with spaces a narrow screen can break at
    (``parse_pattern`` still reads it)."""
    return str(text).replace("+", " + ").replace(":", ": ").replace(",", ", ")


def family_title(key: dict) -> str:
    shape = f"B{fmt(key['B'])} Hq{fmt(key['Hq'])} D{fmt(key['D'])}"
    return f"{pattern_label(key['pattern'])}, {key['mode']} {key['dtype']}, {shape}"


def pattern_figure(bundle: Bundle, lines: list[tuple[dict, pd.DataFrame]]) -> Figure:
    """Per pattern measured at two or more lengths: time and peak memory against N."""
    colors = bundle.colors()
    fig, axes = figures.grid(2 * len(lines), ncols=2)
    for i, (key, g) in enumerate(lines):
        time_ax, mem_ax = axes[2 * i], axes[2 * i + 1]
        for (variant,), line in groups(g, ["variant"]):
            line = line.sort_values("N")
            ms = line["time_median_s"] * 1e3
            low = line["time_ci_low_s"].fillna(line["time_median_s"]) * 1e3
            high = line["time_ci_high_s"].fillna(line["time_median_s"]) * 1e3
            figures.line_with_band(time_ax, line["N"], ms, low, high, label=variant,
                                   color=colors.get(variant, "#555555"))
            mem = line[line["mem_peak_bytes"] > 0]
            mem_ax.plot(mem["N"], mem["mem_peak_bytes"] / 2**20, marker="o", markersize=3.5,
                        color=colors.get(variant, "#555555"), label=figures.plain(variant))
        title, run = family_title(key), (f"\n[{key['run']}]" if bundle.several_runs else "")
        figures.label_axes(time_ax, f"{title}: time{run}", "sequence length N (= S)",
                           "ms per call (band: 95 % interval)", logx=True, logy=True, base=2)
        figures.label_axes(mem_ax, f"{title}: memory{run}", "sequence length N (= S)",
                           "peak memory (MiB)", logx=True, logy=True, base=2)
    figures.shared_legend(fig, axes)
    return Figure("patterns", figures.to_png(fig),
                  "Attention patterns: time per call (left) and peak memory above the inputs "
                  "(right) against N; lower is better")


def floor_note(bundle: Bundle) -> Note:
    floors = noise_floors(bundle, SUITE)
    if not floors:
        return Note("No A/A noise floor recorded for the patterns run: nothing is called "
                    "(every comparison reads 'tie').", "warn")
    said = ", ".join(f"{f:.1%}" + (f" [{run}]" if bundle.several_runs else "")
                     for run, f in sorted(floors.items()))
    return Note(f"A/A noise floor of the patterns run: {said}. A speed-up is called faster "
                "or slower only when its whole interval clears 1 by more than this.")


def not_run_rows(bundle: Bundle) -> list[list]:
    """Pattern cases a variant could not run here (skipped) or that failed, with the reason."""
    frame = bundle.table
    frame = ensure(frame[(frame["suite"] == SUITE) & (frame["status"] != "ok")
                         & (frame["metric"] == "run")], "pattern", "mode")
    return [[*([run] if bundle.several_runs else []), variant, pattern, mode,
             Cell(status, "bad" if status == "error" else "muted"), g["case_id"].nunique(),
             reason or "–"]
            for (run, variant, pattern, mode, status, reason), g in groups(
                frame, ["run", "variant", "pattern", "mode", "status", "reason"])]


@register_section(order=58)
def build(bundle: Bundle) -> Section:
    baseline = bundle.baseline
    section = Section("patterns", "Attention patterns", (
        f"Lower is better. Each pattern (sliding window, documents, soft-cap, ...) is run by "
        f"each variant: natively (flex: block-sparse, skips fully masked blocks), through a "
        f"dense boolean mask ({baseline}), or evaluated densely (naive). Time: median of the "
        "worker processes' medians [95 % interval], after warm-up, so compilation is not in "
        f"it (compile s is its own column). Speed-up = {baseline} time / variant time, 'tie' "
        "unless its interval clears the A/A noise floor. Memory: peak bytes above the inputs "
        "in one call (the dense mask is an input). Compile s: the first call's compile cost "
        "in its worker; a worker's first compile also pays torch.compile's start-up."))
    cases = pattern_cases(bundle)
    if cases.empty:
        section.items.append(not_measured("attention patterns", "no patterns suite results; "
                                          "run attnbench bench --preset patterns"))
        return section
    section.items.append(floor_note(bundle))
    has_base = (cases["variant"] == baseline).any()
    joined = pattern_speedups(bundle, cases, baseline) if has_base else pd.DataFrame(
        columns=["case_id", "variant", "call"])
    if not has_base:
        section.items.append(Note(f"Baseline {baseline!r} was not measured on any pattern: no "
                                  "speed-ups (choose one with --baseline).", "warn"))
    families = [(dict(zip(FAMILY, k, strict=True)), g) for k, g in groups(cases, FAMILY)]
    pays = []
    for key, g in families:
        mine = joined.merge(g[["case_id"]], on="case_id") if has_base else joined
        for (variant,), line in groups(mine, ["variant"]):
            verdict = pays_from(line)
            pays.append([*([key["run"]] if bundle.several_runs else []), variant,
                         Cell(verdict, "" if verdict.startswith("does not") else "good"),
                         f"{pattern_label(key['pattern'])} ({key['mode']} {key['dtype']})"])
    if pays:  # the verdict second: on a phone it is what shows without scrolling
        section.items.append(table([*run_column(bundle), "variant",
                                    f"where it beats {baseline} (dense mask)", "pattern"], pays,
                                   f"Where each variant pays against {baseline}'s dense mask"))
    drawn = [(k, g) for k, g in families if g["N"].nunique() >= 2]
    if drawn:
        section.items.append(pattern_figure(bundle, drawn[:figures.MAX_PANELS // 2]))
    for key, g in families:
        where = f" [{key['run']}]" if bundle.several_runs else ""
        section.items.append(table(
            ["N", "variant", "runs it", "ms [95 %]", f"speed-up vs {baseline} [95 %]",
             "peak memory", f"memory vs {baseline}", "compile s"],
            pattern_table(g, joined, baseline), family_title(key) + where))
    not_run = not_run_rows(bundle)
    if not_run:
        section.items.append(table([*run_column(bundle), "variant", "pattern", "mode",
                                    "status", "cases", "reason"], not_run,
                                   "Pattern cases not measured"))
    return section
