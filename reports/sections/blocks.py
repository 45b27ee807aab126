"""Section 8: Transformer blocks. Tokens per second and the share of time spent in attention."""

from __future__ import annotations

import pandas as pd
from attnbench.reports import figures
from attnbench.reports.document import Figure, Section, fmt, fmt_si, not_measured, table
from attnbench.reports.load import Bundle, ensure, wide
from attnbench.reports.sections import register_section
from attnbench.reports.sections.common import case_text, groups, run_column

PANEL_KEYS = ["run", "device", "dtype", "mode", "d_model", "n_heads"]


def block_cases(bundle: Bundle) -> pd.DataFrame:
    frame = ensure(bundle.rows("throughput"), "kind")
    frame = frame[frame["kind"] == "block"] if not frame.empty else frame
    if frame.empty:
        return frame
    cases = ensure(wide(frame), "block", "attention", "N", "tokens_per_s", "attention_share",
                   *PANEL_KEYS)
    cases["block"] = cases["block"].where(cases["block"].notna(), cases["variant"])
    return cases[cases["tokens_per_s"].notna() | cases["attention_share"].notna()]


def bars(ax, g: pd.DataFrame, column: str, scale: float, colors: dict[str, str]) -> None:
    """Grouped bars: one group per block, one bar per attention variant inside it."""
    blocks = sorted(g["block"].astype(str).unique())
    attentions = sorted(g["attention"].astype(str).unique())
    width = 0.8 / len(attentions)
    for j, attention in enumerate(attentions):
        mine = g[g["attention"].astype(str) == attention].set_index("block")[column]
        x = [i + (j - (len(attentions) - 1) / 2) * width for i in range(len(blocks))]
        ax.bar(x, [scale * mine.get(b, float("nan")) for b in blocks], width=width,
               color=colors.get(attention, "#777777"), label=figures.plain(attention))
    ax.set_xticks(range(len(blocks)), [figures.plain(b) for b in blocks], rotation=20)


def block_figure(bundle: Bundle, cases: pd.DataFrame) -> Figure:
    """Per problem family, at its largest N: tokens/s and attention share, bars per block
    coloured by the attention inside (blocks are usually measured at one or two lengths)."""
    colors = bundle.colors()
    found = groups(cases, PANEL_KEYS)[: figures.MAX_PANELS // 2]
    fig, axes = figures.grid(2 * len(found), ncols=2, size=(6.6, 3.4))
    for i, (key, g) in enumerate(found):
        panel = dict(zip(PANEL_KEYS, key, strict=True))
        g = g[g["N"] == g["N"].max()]
        where = f"{panel['mode']} {case_text(panel, ('dtype', 'device'))}, N {fmt(g['N'].max())}" \
                f", d_model {fmt(panel['d_model'])}, {fmt(panel['n_heads'])} heads"
        where += f"\n[{panel['run']}]" if bundle.several_runs else ""
        speed, share = axes[2 * i], axes[2 * i + 1]
        bars(speed, g, "tokens_per_s", 1.0, colors)
        bars(share, g, "attention_share", 100.0, colors)
        figures.label_axes(speed, "tokens/s, " + where, "", "tokens / s")
        figures.label_axes(share, "time in attention, " + where, "",
                           "attention share of block time (%)")
        share.set_ylim(0, 100)
    figures.shared_legend(fig, axes)
    return Figure("blocks", figures.to_png(fig),
                  "Blocks: tokens/s (higher is better) and the share of block time spent in "
                  "attention, per block, bars coloured by the attention variant inside")


@register_section(order=80)
def build(bundle: Bundle) -> Section:
    section = Section("blocks", "Blocks", (
        "Whole Transformer blocks (attention + feed-forward + norms). Tokens/s is the "
        "end-to-end rate; the attention share tells whether a faster attention would matter "
        "for this block at this length."))
    cases = block_cases(bundle)
    if cases.empty:
        section.items.append(not_measured("block throughput", "no block cases in the "
                                          "throughput results"))
        return section
    section.items.append(block_figure(bundle, cases))
    rows = [[*([r["run"]] if bundle.several_runs else []), r["block"], r["attention"],
             fmt(r["d_model"]), fmt(r["n_heads"]), fmt(r["N"]), r["mode"], r["dtype"],
             fmt_si(r["tokens_per_s"]),
             "–" if r["attention_share"] != r["attention_share"]
             else f"{100 * r['attention_share']:.0f} %"]
            for _, r in cases.sort_values(["run", "block", "attention", "mode", "N"]).iterrows()]
    section.items.append(table([*run_column(bundle), "block", "attention", "d_model", "heads",
                                "N", "mode", "dtype", "tokens/s", "attention share"], rows,
                               "Blocks per case"))
    return section
