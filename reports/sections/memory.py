"""Section 7: peak memory against sequence length, with fitted exponents and the analytic model.

On log-log axes a power law is a straight line whose slope is the exponent k in peak ∝ N^k:
k ≈ 2 means the N × S score matrix is materialised (naive), k ≈ 1 means O(N) memory (flash).
"""

from __future__ import annotations

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
from attnbench.reports.load import Bundle
from attnbench.reports.sections import register_section
from attnbench.reports.sections.common import (
    as_bool,
    attention_cases,
    case_text,
    groups,
    memory_fits,
    run_column,
)

MIB = 2**20
PANEL_KEYS = ["run", "device", "mode", "dtype", "B", "Hq", "Hkv", "D", "Dv"]


def fitted_exponents(bundle: Bundle) -> dict[tuple, float]:
    """The suite's own fits (mem_exponent rows, over its memory sweep) by (run, variant, mode,
    dtype, causal): the one exponent the legend, the table and the summary all show."""
    fits = memory_fits(bundle)
    return {(r["run"], r["variant"], r["mode"], r["dtype"], as_bool(r["causal"])):
            float(r["value"]) for _, r in fits.iterrows() if r["value"] == r["value"]}


EXCESS = 2.0  # measured / model above this is called out


def model_excess(cases: pd.DataFrame) -> list[str]:
    """"tiled fwd 6.1x" for each variant and mode whose peak at its largest N exceeds the
    analytic model by more than EXCESS."""
    found = []
    usable = cases[(cases["mem_model_bytes"] > 0) & (cases["mem_peak_bytes"] > 0)]
    for (run, variant, mode), g in groups(usable, ["run", "variant", "mode"]):
        top = g.loc[g["N"].idxmax()]
        ratio = top["mem_peak_bytes"] / top["mem_model_bytes"]
        if ratio > EXCESS:
            found.append(f"{variant} {mode} {ratio:.1f}× (N {fmt(top['N'])}"
                         + (f", {run})" if cases["run"].nunique() > 1 else ")"))
    return found


def scaling_panels(cases: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """Problem families measured at two or more lengths: a single length shows no scaling."""
    return [(key, g) for key, g in groups(cases, PANEL_KEYS)
            if g.groupby(["variant", "causal"], dropna=False)["N"].nunique().max() >= 2]


def memory_figure(bundle: Bundle, found: list[tuple[tuple, pd.DataFrame]]) -> Figure:
    colors = bundle.colors()
    exponents = fitted_exponents(bundle)
    fig, axes = figures.grid(len(found), ncols=2)  # two per row: room for the legend
    for ax, (key, g) in zip(axes, found, strict=False):
        panel = dict(zip(PANEL_KEYS, key, strict=True))
        both = g["causal"].map(as_bool).nunique() > 1
        for (variant, causal), line in groups(g, ["variant", "causal"]):
            line = line.sort_values("N")
            k = exponents.get((panel["run"], variant, panel["mode"], panel["dtype"],
                               as_bool(causal)))
            label = variant + (" causal" if both and as_bool(causal) else "") + (
                f" (k={k:.2f})" if k is not None else "")
            is_causal = both and as_bool(causal)
            measured = line[line["mem_peak_bytes"] > 0]
            look = (dict(marker="s", markersize=4.5, markerfacecolor="white", linestyle="-.")
                    if is_causal else dict(marker="o", markersize=3.5, linestyle="-"))
            ax.plot(measured["N"], measured["mem_peak_bytes"] / MIB, color=colors[variant],
                    label=figures.plain(label), **look)
            model = line[line["mem_model_bytes"] > 0]
            if len(model) and not is_causal:  # one model line per variant: thin, grey-dashed
                ax.plot(model["N"], model["mem_model_bytes"] / MIB, linestyle=(0, (4, 3)),
                        linewidth=1.0, color=colors[variant], alpha=0.55)
        title = f"{panel['mode']} {case_text(panel, ('dtype', 'device'))}, B{fmt(panel['B'])} " \
                f"Hq{fmt(panel['Hq'])} D{fmt(panel['D'])}"
        figures.label_axes(ax, title + (f"\n[{panel['run']}]" if bundle.several_runs else ""),
                           "sequence length N (= S)", "peak MiB above inputs", logx=True,
                           logy=True, base=2)
        figures.legend(ax, loc="upper left")
    return Figure("memory", figures.to_png(fig),
                  "Peak memory vs N, log-log (solid: measured, k = the suite's fitted exponent "
                  "over its memory sweep, as in the table; dash-dot with open squares: causal; "
                  "thin dashed: analytic model)")


@register_section(order=70)
def build(bundle: Bundle) -> Section:
    section = Section("memory", "Memory", (
        "Lower is better. Slope on these log-log axes = exponent k (peak ∝ N^k): 1 is linear, "
        "2 quadratic. Dashed lines are the analytic model; a measured line far above its model "
        "means an allocation the model does not explain."))
    cases = attention_cases(bundle)
    cases = cases[cases["mem_peak_bytes"].notna()] if not cases.empty else cases
    fits = memory_fits(bundle)
    if cases.empty and fits.empty:
        section.items.append(not_measured("memory", "no throughput suite results with memory"))
        return section
    found = scaling_panels(cases)
    if found:
        section.items.append(memory_figure(bundle, found))
    elif not cases.empty:
        section.items.append(Note("No problem was measured at two or more lengths: no scaling "
                                  "to draw; the peaks are in the table below."))
    if not cases.empty:
        zero = int((cases["mem_peak_bytes"] <= 0).sum())
        if zero:
            section.items.append(Note(f"{zero} case(s) measured 0 bytes above the inputs "
                                      "(not drawn on log axes; listed in the CSV)."))
    above = model_excess(cases) if not cases.empty else []
    if above:
        section.items.append(Note("Measured far above the analytic model at the largest N: "
                                  + "; ".join(above) + ". The model counts the tensors the "
                                  "algorithm needs; the excess is allocation it does not "
                                  "explain (temporaries of the implementation).", "warn"))
    if not fits.empty:
        rows = []
        for _, fit in fits.sort_values(["run", "variant", "mode", "dtype"]).iterrows():
            k = fit["value"]
            tone = "warn" if k == k and k > 1.5 else ("good" if k == k and k < 1.3 else "")
            rows.append([*([fit["run"]] if bundle.several_runs else []), fit["variant"],
                         fit["mode"], fit["dtype"],
                         "causal" if as_bool(fit["causal"]) else "non-causal",
                         Cell(f"{k:.2f}" if k == k else "–", tone)])
        section.items.append(table([*run_column(bundle), "variant", "mode", "dtype", "causal",
                                    "exponent k"], rows, "Fitted memory exponents"))
    else:
        section.items.append(not_measured("fitted exponents", "no memfit rows"))
    if not cases.empty:
        largest = cases.loc[cases.groupby(["run", "variant", "mode"])["N"].idxmax()]
        rows = [[*([r["run"]] if bundle.several_runs else []), r["variant"], r["mode"],
                 r["dtype"], fmt(r["N"]), fmt_bytes(r["mem_peak_bytes"]),
                 fmt_bytes(r["mem_model_bytes"])]
                for _, r in largest.sort_values(["run", "variant", "mode"]).iterrows()]
        section.items.append(table([*run_column(bundle), "variant", "mode", "dtype", "largest N",
                                    "peak measured", "model"], rows,
                                   "Peak at the largest N measured"))
    return section
