"""The stability section's figures: loss vs learning rate, divergence map, sensitivity, init
diagnostics and loss curves. Data shaping lives in ``stability.py``; this file only draws."""

from __future__ import annotations

import numpy as np
import pandas as pd
from attnbench.reports import figures
from attnbench.reports.document import Figure, fmt, fmt_lr
from attnbench.reports.load import Bundle
from attnbench.reports.sections.common import groups
from matplotlib.colors import ListedColormap

VERDICTS = ("healthy", "unigram_collapse", "blowup", "nan", "mixed")  # others drawn as mixed
VERDICT_COLORS = ("#009E73", "#E69F00", "#C0392B", "#4A0000", "#999999")
SHORT = {"healthy": "ok", "unigram_collapse": "unigram", "blowup": "blowup", "nan": "NaN"}


def title(bundle: Bundle, text: str, run: str) -> str:
    return text + (f"\n[{run}]" if bundle.several_runs else "")


def depth_colors(depths: list) -> dict:
    return {d: figures.COLORS[i % len(figures.COLORS)] for i, d in enumerate(sorted(depths))}


def loss_vs_lr(bundle: Bundle, trained: pd.DataFrame) -> Figure:
    """Final validation loss against learning rate: one panel per configuration, one line per
    depth; failed runs drawn as red crosses; unigram plateau and initial loss as references."""
    found = groups(trained, ["run", "config"])
    fig, axes = figures.grid(len(found), sharey=True)  # blocks compared on one loss scale
    colors = depth_colors(list(trained["depth"].dropna().unique()))
    for ax, ((run, config), g) in zip(axes, found, strict=False):
        init = g["init_loss"].median()
        cap = init * 1.25 if init == init else g["final_val_loss"].replace(np.inf, np.nan).max()
        for (depth,), line in groups(g, ["depth"]):
            per_lr = line.groupby("lr").agg(loss=("final_val_loss", "median"),
                                            failed=("healthy", lambda h: not h.all()))
            loss = per_lr["loss"]
            shown = loss.where(np.isfinite(loss) & (loss <= cap), cap)
            ax.plot(per_lr.index, shown, marker="o", markersize=3.5, color=colors[depth],
                    label=f"depth {fmt(depth)}")
            failed = per_lr[per_lr["failed"]]
            ax.scatter(failed.index, shown[failed.index], marker="x", s=45, color="#C00000",
                       zorder=3)
        unigram = g["unigram_loss"].median()
        if unigram == unigram:
            ax.axhline(unigram, color="#E69F00", linestyle="--", linewidth=1,
                       label="unigram plateau")
        if init == init:
            ax.axhline(init, color="#555555", linestyle=":", linewidth=1, label="initial loss")
        figures.label_axes(ax, title(bundle, config, run), "learning rate",
                           "final validation loss (nats)", logx=True)
        figures.legend(ax)
    return Figure("loss-vs-lr", figures.to_png(fig),
                  "Final validation loss vs learning rate per block and depth (x: run failed; "
                  "losses above 1.25× the initial loss are drawn at that cap)")


def divergence_map(bundle: Bundle, cells: pd.DataFrame) -> Figure:
    """Depth × learning rate, coloured by verdict; cell text = verdict (or failed/total)."""
    found = groups(cells, ["run", "config"])
    depth_count = max(g["depth"].nunique() for _, g in found) if found else 1
    fig, axes = figures.grid(len(found), size=(4.4, 1.0 + 0.45 * depth_count))  # rows: depths
    cmap = ListedColormap(VERDICT_COLORS)
    for ax, ((run, config), g) in zip(axes, found, strict=False):
        depths, lrs = sorted(g["depth"].unique()), sorted(g["lr"].unique())
        image = np.full((len(depths), len(lrs)), np.nan)
        for _, c in g.iterrows():
            i, j = depths.index(c["depth"]), lrs.index(c["lr"])
            image[i, j] = VERDICTS.index(c["verdict"] if c["verdict"] in VERDICTS else "mixed")
            ax.text(j, i, c["text"], ha="center", va="center", fontsize=figures.SMALLEST_TEXT + 1,
                    color="white" if c["verdict"] in ("blowup", "nan") else "black")
        ax.imshow(image, cmap=cmap, vmin=-0.5, vmax=len(VERDICTS) - 0.5, aspect="auto",
                  origin="lower")
        ax.set_xticks(range(len(lrs)), [fmt_lr(x) for x in lrs])
        ax.set_yticks(range(len(depths)), [fmt(d) for d in depths])
        ax.grid(False)
        figures.label_axes(ax, title(bundle, config, run), "learning rate", "depth (layers)")
    return Figure("divergence-map", figures.to_png(fig),
                  "Divergence map: verdict per depth and learning rate (green healthy, orange "
                  "unigram collapse, red blow-up, dark red NaN, grey mixed across seeds)")


def sensitivity(bundle: Bundle, per_depth: pd.DataFrame) -> Figure:
    """Learning-rate sensitivity (Wortsman et al.) against depth, one line per configuration."""
    found = groups(per_depth, ["run"])
    fig, axes = figures.grid(len(found))
    for ax, ((run,), g) in zip(axes, found, strict=False):
        for (config,), line in groups(g, ["config"]):
            line = line.sort_values("depth")
            ax.plot(line["depth"], line["lr_sensitivity"], marker="o", markersize=3.5,
                    label=figures.plain(config))
        figures.label_axes(ax, title(bundle, "learning-rate sensitivity", run), "depth (layers)",
                           "E_lr[min(loss, init) − best] (nats)")
        ax.set_xticks(sorted(g["depth"].dropna().unique()))
        figures.legend(ax)
    return Figure("lr-sensitivity", figures.to_png(fig),
                  "Learning-rate sensitivity vs depth (lower: trains well over more learning "
                  "rates)")


INIT_PANELS = (  # (metric, x column, panel title, y label, log y)
    ("last_ffn_grad_norm", "depth", "last FFN weight gradient (Xiong et al.)", "gradient norm",
     True),
    ("output_change", "depth", "output change, sublayer weights perturbed (Admin)",
     "E||ΔF||² per token", True),
    ("one_step_change", "depth", "output change after one AdamW step", "||ΔF||² per token",
     True),
    ("grad_norm", "layer", "gradient norm per layer, deepest model", "gradient norm", True),
    ("hidden_norm", "layer", "hidden-state norm per layer, deepest model", "norm", False),
)


def init_diagnostics(bundle: Bundle, init: pd.DataFrame, caption: str) -> Figure:
    """Xiong et al. / Admin diagnostics: how gradients and sensitivity scale with depth, the
    mean over seeds; ``caption`` says what these data show."""
    present = [p for p in INIT_PANELS if (init["metric"] == p[0]).any()]
    runs = sorted(init["run"].unique())
    fig, axes = figures.grid(len(present) * len(runs))
    panels = [(run, p) for run in runs for p in present]
    for ax, (run, (metric, x, heading, ylabel, logy)) in zip(axes, panels, strict=False):
        rows = init[(init["run"] == run) & (init["metric"] == metric)]
        for (config,), line in groups(rows, ["config"]):
            if x == "layer":  # per-layer profile of the deepest model only
                line = line[line["depth"] == line["depth"].max()]
            depth = line["depth"].max()
            line = line.groupby(x, as_index=False)["value"].mean()  # over seeds
            line["depth"] = depth
            suffix = f" (L{fmt(line['depth'].max())})" if x == "layer" else ""
            ax.plot(line[x], line["value"], marker="o", markersize=3.5,
                    label=figures.plain(config + suffix))
        figures.label_axes(ax, title(bundle, heading, run),
                           "depth (layers)" if x == "depth" else "layer index", ylabel,
                           logx=x == "depth", logy=logy)
        figures.legend(ax)
    return Figure("init-diagnostics", figures.to_png(fig), caption)


def step_axis(run: pd.Series, n: int) -> np.ndarray:
    """Steps of a curve's points: every eval_every steps when recorded, else spread evenly."""
    every = run.get("eval_every")
    if every == every and every and n > 1 and (n - 1) * every <= (run.get("steps") or np.inf):
        return np.arange(n) * every
    steps = run.get("steps")
    return np.linspace(0, steps, n) if steps == steps and steps else np.arange(n)


def loss_curves(bundle: Bundle, curves: pd.DataFrame, metric: str) -> Figure:
    """Loss per step: one panel per configuration and depth, one line per learning rate."""
    found = groups(curves, ["run", "config", "depth"])
    fig, axes = figures.grid(len(found), size=(4.4, 2.9))
    lrs = sorted(curves["lr"].dropna().unique())
    colors = {lr: figures.COLORS[i % len(figures.COLORS)] for i, lr in enumerate(lrs)}
    for ax, ((run, config, depth), g) in zip(axes, found, strict=False):
        top = 0.0
        for _, c in g.sort_values("lr").iterrows():
            y = np.asarray(c["curve"], dtype=float)
            x = step_axis(c, len(y))
            ax.plot(x, y, color=colors.get(c["lr"], "#333333"), linewidth=1.1,
                    linestyle="-" if c["healthy"] else "--", label=f"lr {fmt_lr(c['lr'])}")
            finite = y[np.isfinite(y)]
            top = max(top, float(finite[0]) * 1.3 if len(finite) else 0.0)
        if top:
            ax.set_ylim(0, top)
        figures.label_axes(ax, title(bundle, f"{config}, depth {fmt(depth)}", run), "step",
                           metric.replace("_", " "))
        figures.legend(ax)
    return Figure("loss-curves", figures.to_png(fig),
                  f"{metric.replace('_', ' ').capitalize()} curves per block and depth, one "
                  "line per learning rate (dashed: the run failed)")
