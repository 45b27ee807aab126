"""Section 5: achieved TFLOP/s against sequence length, and speed-up against a baseline.

Each line is the median over the timing samples of one case; the band is the interquartile
range, taken from the raw samples when the run kept them, else median ± IQR/2 from the table.
Speed-ups divide times measured in the same run only: a ratio across runs would mix machines.
Each speed-up carries its interval over worker processes and is called faster or slower only
when that interval clears 1 by more than the run's A/A noise floor (``attnbench.speed``);
otherwise it is a tie, shown neutral.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from attnbench.reports import figures
from attnbench.reports.document import (
    Cell,
    Details,
    Figure,
    Note,
    Section,
    fmt,
    not_measured,
    table,
)
from attnbench.reports.load import Bundle
from attnbench.reports.sections import register_section
from attnbench.reports.sections.common import (
    SHAPE,
    attention_cases,
    case_text,
    flop_convention,
    groups,
    run_column,
)
from attnbench.speed import per_process_medians, speedup

# Panels: one per problem family (everything but N and the variant); figures: one per mode.
PANEL_KEYS = ["run", "device", "dtype", "causal", "B", "Hq", "Hkv", "D", "Dv"]
MODES = ("fwd", "bwd", "fwd+bwd")
TIME_SAMPLES = ("time_s", "times_s", "time_samples_s", "time")  # samples.jsonl metric names
CALL_TONE = {"faster": "good", "slower": "warn", "tie": ""}  # a tie is neutral


def noise_floors(bundle: Bundle, suite: str = "throughput") -> dict[str, float]:
    """Each throughput run's A/A noise floor (its ``noise_floor`` row); absent: no floor."""
    frame = bundle.rows(suite)
    if frame.empty or "metric" not in frame:
        return {}
    rows = frame[frame["metric"] == "noise_floor"]
    return {r["run"]: float(r["value"]) for _, r in rows.iterrows() if r["value"] == r["value"]}


def process_medians(bundle: Bundle, run: str, case_id: str) -> list[float]:
    """One case's per-process medians, index r = worker process r (empty for old runs)."""
    return per_process_medians(lambda metric: bundle.samples(run, case_id, metric))


def quartile_tflops(bundle: Bundle, row: pd.Series) -> tuple[float, float]:
    """TFLOP/s at the 75th and 25th percentile of time (slow end, fast end)."""
    pooled = [x for r in range(64) for x in (bundle.samples(row["run"], row["case_id"],
                                                             f"time_s:p{r}") or [])]
    for metric in TIME_SAMPLES:
        samples = pooled or bundle.samples(row["run"], row["case_id"], metric)
        if samples:
            q25, q75 = np.percentile(np.asarray(samples, dtype=float), [25, 75])
            break
    else:
        half = (row["time_iqr_s"] if row["time_iqr_s"] == row["time_iqr_s"] else 0.0) / 2
        q25, q75 = row["time_median_s"] - half, row["time_median_s"] + half
    flops = row["flops"] if row["flops"] == row["flops"] else row["tflops"] * 1e12 * row[
        "time_median_s"]
    return flops / q75 / 1e12, (flops / q25 / 1e12 if q25 > 0 else math.nan)


def panel_title(bundle: Bundle, key: dict) -> str:
    shape = f"B{fmt(key['B'])} Hq{fmt(key['Hq'])}/Hkv{fmt(key['Hkv'])} D{fmt(key['D'])}"
    if key.get("Dv") == key.get("Dv") and key.get("Dv") != key.get("D"):
        shape += f"/Dv{fmt(key['Dv'])}"
    title = f"{case_text(key, ('dtype', 'causal', 'device'))}, {shape}"
    return title + (f"\n[{key['run']}]" if bundle.several_runs else "")


def panels(frame: pd.DataFrame) -> list[tuple[dict, pd.DataFrame]]:
    return [(dict(zip(PANEL_KEYS, key, strict=True)), g) for key, g in groups(frame, PANEL_KEYS)]


def tflops_figure(bundle: Bundle, cases: pd.DataFrame, mode: str,
                  colors: dict[str, str]) -> tuple[Figure, int]:
    found = panels(cases)
    fig, axes = figures.grid(len(found))
    for ax, (key, g) in zip(axes, found, strict=False):
        for (variant,), line in groups(g, ["variant"]):
            line = line.sort_values("N")
            bands = [quartile_tflops(bundle, r) for _, r in line.iterrows()]
            figures.line_with_band(ax, line["N"], line["tflops"], [b[0] for b in bands],
                                   [b[1] for b in bands], label=variant, color=colors[variant])
        figures.label_axes(ax, panel_title(bundle, key), "sequence length N (= S)",
                           "TFLOP/s (useful)", logx=True, base=2)
    figures.shared_legend(fig, axes)
    title = f"Throughput, {mode}: TFLOP/s vs N (median, band = interquartile range)"
    return Figure(f"throughput-{mode.replace('+', '-')}", figures.to_png(fig), title), \
        len(found)


def speedups(bundle: Bundle, cases: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """time(baseline) / time(variant) for each problem both ran in the same run: the median
    of per-process ratios, its interval over processes, and the call against the run's noise
    floor (``attnbench.speed.speedup``; a run without per-process samples or without an A/A
    control calls nothing)."""
    keys = ["run", *SHAPE]
    base = cases[cases["variant"] == baseline][keys + ["time_median_s", "case_id"]]
    joined = cases[cases["variant"] != baseline].merge(base, on=keys, suffixes=("", "_base"))
    floors = noise_floors(bundle)
    found = []
    for _, row in joined.iterrows():
        got = speedup(process_medians(bundle, row["run"], row["case_id_base"]),
                      process_medians(bundle, row["run"], row["case_id"]),
                      floors.get(row["run"], math.nan))
        if got["speedup"] != got["speedup"]:  # no per-process samples: the medians' ratio
            got["speedup"] = row["time_median_s_base"] / row["time_median_s"]
        found.append(got)
    extra = pd.DataFrame(found, index=joined.index, columns=["speedup", "low", "high", "call"])
    return pd.concat([joined, extra], axis=1)


def speedup_figure(bundle: Bundle, joined: pd.DataFrame, mode: str,
                   colors: dict[str, str]) -> Figure:
    found = panels(joined)
    fig, axes = figures.grid(len(found), sharey=True)
    for ax, (key, g) in zip(axes, found, strict=False):
        for (variant,), line in groups(g, ["variant"]):
            line = line.sort_values("N")
            ax.plot(line["N"], line["speedup"], marker="o", markersize=3.5,
                    color=colors[variant], label=figures.plain(variant))
        ax.axhline(1.0, color="#555555", linewidth=1, linestyle="--")
        figures.label_axes(ax, panel_title(bundle, key), "sequence length N (= S)",
                           f"speed-up vs {bundle.baseline} (×)", logx=True, base=2)
        figures.log_axis(ax, "y", base=2)
    figures.shared_legend(fig, axes)
    return Figure(f"speedup-{mode.replace('+', '-')}", figures.to_png(fig),
                  f"Speed-up against {bundle.baseline}, {mode} (above 1: faster than "
                  f"{bundle.baseline}; same run only)")


def speedup_table(bundle: Bundle, joined: pd.DataFrame) -> list[list]:
    """One row per (run, variant, dtype, causal, mode): the geometric-mean speed-up, the
    widest interval over its problems, and the calls. The row is coloured only when every
    problem was called the same way; anything else is neutral."""
    rows = []
    floors = noise_floors(bundle)
    for key, g in groups(joined, ["run", "variant", "dtype", "causal", "mode"]):
        values = g["speedup"].dropna()
        geo = float(np.exp(np.log(values).mean())) if len(values) else math.nan
        calls = g["call"].value_counts()
        unanimous = calls.index[0] if len(calls) == 1 else "tie"
        run, variant, dtype, causal, mode = key
        interval = (f"{g['low'].min():.2f}–{g['high'].max():.2f}×"
                    if g["low"].notna().any() else "no interval (no per-process samples)")
        floor = floors.get(run)
        rows.append([*([run] if bundle.several_runs else []), variant, dtype,
                     "causal" if causal else "non-causal", mode,
                     Cell(f"{geo:.2f}×", CALL_TONE[unanimous]), interval,
                     ", ".join(f"{int(calls.get(c, 0))} {c}" for c in ("faster", "tie", "slower")
                               if calls.get(c, 0)),
                     "none measured" if floor is None else f"±{floor:.1%}", len(values)])
    return rows


def not_run_table(bundle: Bundle) -> list[list]:
    """Cases that were skipped (unsupported) or raised, grouped by reason. Only whole cases
    (metric "run"): a case that ran but skipped one metric (no matmul peak for its dtype) is
    measured, and its skipped metric is in the CSV."""
    frame = bundle.table[(bundle.table["suite"] == "throughput")
                         & (bundle.table["status"] != "ok") & (bundle.table["metric"] == "run")]
    rows = []
    for (run, variant, status, reason), g in groups(frame, ["run", "variant", "status",
                                                            "reason"]):
        rows.append([*([run] if bundle.several_runs else []), variant,
                     Cell(status, "bad" if status == "error" else "muted"),
                     g["case_id"].nunique(), reason or "–"])
    return rows


@register_section(order=50)
def build(bundle: Bundle) -> Section:
    section = Section("throughput", "Throughput", (
        "Higher is better. One panel per problem family, one line per variant; the shaded band "
        "is the interquartile range of the timing samples. Speed-up = baseline time / variant "
        "time on the same problem in the same run."))
    section.items.append(Note(flop_convention(bundle)))
    cases = attention_cases(bundle)
    cases = cases[cases["time_median_s"].notna() & cases["tflops"].notna()] \
        if not cases.empty else cases
    if cases.empty:
        section.items.append(not_measured("attention throughput", "no throughput suite results"))
        return section
    colors = bundle.colors()
    base_present = (cases["variant"] == bundle.baseline).any()
    if not base_present:
        section.items.append(Note(f"Baseline {bundle.baseline!r} was not measured in these "
                                  "runs: no speed-ups (choose one with --baseline).", "warn"))
    speed_rows = []
    for mode in [m for m in MODES if (cases["mode"] == m).any()]:
        of_mode = cases[cases["mode"] == mode]
        figure, n = tflops_figure(bundle, of_mode, mode, colors)
        section.items.append(figure)
        if n > figures.MAX_PANELS:
            section.items.append(Note(f"{n} problem families; the first {figures.MAX_PANELS} "
                                      "are drawn, all are in the CSV.", "warn"))
        joined = speedups(bundle, of_mode, bundle.baseline) if base_present \
            else pd.DataFrame()
        if not joined.empty:
            section.items.append(Details(f"Speed-up against {bundle.baseline}, {mode} (figure)",
                                         [speedup_figure(bundle, joined, mode, colors)]))
            speed_rows += speedup_table(bundle, joined)
    if speed_rows:
        section.items.append(table(
            [*run_column(bundle), "variant", "dtype", "causal", "mode",
             f"speed-up vs {bundle.baseline} (geo. mean)", "interval over processes",
             "calls (interval beyond the noise floor)", "A/A noise floor", "problems"],
            speed_rows, f"Speed-up against {bundle.baseline}"))
    not_run = not_run_table(bundle)
    if not_run:
        section.items.append(table([*run_column(bundle), "variant", "status", "cases",
                                    "reason"], not_run, "Cases not measured"))
    return section
