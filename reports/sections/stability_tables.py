"""The stability section's tables: the best configuration of each block at each depth, the
divergence map over learning rate x warm-up with seeds, and the init diagnostics' depth trends
(for a caption that says what the plotted data do, not what a paper predicts).

Every number is read from the rows: final losses and verdicts of the training runs, the
``lr_sensitivity`` rows the suite derived, the init diagnostics' values by depth.
"""

from __future__ import annotations

import math

import pandas as pd
from attnbench.reports.document import Cell, Table, fmt, fmt_lr, fmt_range, table
from attnbench.reports.load import Bundle
from attnbench.reports.sections.common import groups, run_column

SETTING = ["warmup", "beta2", "init"]  # what a user picks besides the lr
SHORT = {"healthy": "ok", "unigram_collapse": "unigram", "blowup": "blowup", "nan": "NaN"}


def warmup_text(warmup: float, steps: float) -> str:
    """'30 (10 %)' when the run recorded its steps, else '30'."""
    if warmup != warmup:
        return "–"
    share = f" ({100 * warmup / steps:.0f} %)" if steps == steps and steps else ""
    return f"{int(warmup)}{share}"


def setting_text(row: pd.Series | dict, varied: list[str]) -> str:
    """'warm-up 30 (10 %), beta2 0.999' naming only the settings the run varied."""
    words = {"warmup": lambda r: f"warm-up {warmup_text(r['warmup'], r.get('steps'))}",
             "beta2": lambda r: f"beta2 {fmt(r['beta2'])}",
             "init": lambda r: f"init {r['init']}"}
    return ", ".join(words[k](row) for k in varied) or "–"


def varied_settings(trained: pd.DataFrame) -> list[str]:
    return [k for k in SETTING if k in trained and trained[k].dropna().nunique() > 1]


def _mean_loss(g: pd.DataFrame) -> float:
    """Mean final loss over seeds; a failed or missing run makes the configuration ineligible
    for "best" (inf), so a lucky seed cannot carry a configuration that diverges."""
    losses = pd.to_numeric(g["final_val_loss"], errors="coerce")
    if losses.isna().any() or not g["healthy"].all():
        return math.inf
    return float(losses.mean())


def best_configurations(bundle: Bundle, trained: pd.DataFrame, sensitivity: pd.DataFrame
                        ) -> Table:
    """Per block and depth: the configuration with the lowest mean final loss over seeds
    (every seed healthy), its lr and settings, the learning-rate sensitivity of that setting,
    and how many of the block's runs at that depth failed."""
    rows = []
    for (run, block, depth), g in groups(trained, ["run", "block", "depth"]):
        configs = [(key, c, _mean_loss(c)) for key, c in groups(g, ["lr", *SETTING])]
        key, best, loss = min(configs, key=lambda kcl: kcl[2])
        chosen = dict(zip(["lr", *SETTING], key, strict=True))
        sens = sensitivity
        for column, value in (("run", run), ("block", block), ("depth", depth),
                              *((k, chosen[k]) for k in SETTING)):
            if column in sens:
                sens = sens[(sens[column] == value) | (sens[column].isna() & (value != value))]
        failed = int((~g["healthy"]).sum())
        rows.append([*([run] if bundle.several_runs else []), block, fmt(depth),
                     Cell(fmt_range(list(best["final_val_loss"])) if loss < math.inf else
                          "none healthy in every seed", "good" if loss < math.inf else "bad"),
                     fmt_lr(chosen["lr"]) if loss < math.inf else "–",
                     warmup_text(chosen["warmup"], best["steps"].iloc[0]),
                     fmt(chosen["beta2"]), str(chosen["init"]), str(len(best)),
                     fmt(sens["lr_sensitivity"].iloc[0]) if len(sens) else "–",
                     Cell(f"{failed}/{len(g)}", "good" if failed == 0 else "warn")])
    return table([*run_column(bundle), "block", "depth", "best final loss (range over seeds)",
                  "lr", "warm-up", "beta2", "init", "seeds", "lr sensitivity (nats)",
                  "failed runs at this depth"], rows,
                 "Best configuration per block and depth: lowest mean final validation loss "
                 "over seeds among configurations healthy in every seed; lr sensitivity "
                 "(Wortsman et al. 2023) over the lr grid at that warm-up/beta2/init")


def divergence_tables(bundle: Bundle, trained: pd.DataFrame) -> list[Table]:
    """Per block: rows depth x the varied settings, columns lr, cells the verdict over seeds
    ("ok ×3", "unigram ×3", or "2/3 failed" when seeds disagree)."""
    tones = {"healthy": "good", "unigram_collapse": "warn", "blowup": "bad", "nan": "bad"}
    varied = varied_settings(trained)
    out = []
    for (run, block), g in groups(trained, ["run", "block"]):
        lrs = sorted(g["lr"].unique())
        rows = []
        for (depth, *setting), by_row in groups(g, ["depth", *varied]):
            cells = {}
            for (lr,), runs in groups(by_row, ["lr"]):
                verdicts = sorted(set(runs["verdict"]))
                failed = int((~runs["healthy"]).sum())
                if len(verdicts) == 1:
                    seeds = f" ×{len(runs)}" if len(runs) > 1 else ""
                    cells[lr] = Cell(SHORT.get(verdicts[0], verdicts[0]) + seeds,
                                     tones.get(verdicts[0], "warn"))
                else:
                    cells[lr] = Cell(f"{failed}/{len(runs)} failed", "warn")
            label = setting_text({**dict(zip(varied, setting, strict=True)),
                                  "steps": by_row["steps"].iloc[0]}, varied)
            rows.append([fmt(depth), label, *(cells.get(lr, Cell("–", "muted")) for lr in lrs)])
        caption = (f"{block}: divergence map over learning rate × warm-up, verdict over seeds"
                   + (f" [{run}]" if bundle.several_runs else ""))
        out.append(table(["depth", "setting", *(fmt_lr(lr) for lr in lrs)], rows, caption))
    return out


def depth_trends(init: pd.DataFrame, metric: str) -> list[tuple[str, float, float, float]]:
    """(label, exponent of the seed-mean vs depth, value at the smallest and largest depth)
    for every configuration that measured ``metric`` at 3 or more depths."""
    rows = init[(init["metric"] == metric) & init["layer"].isna()]
    out = []
    for (config,), g in groups(rows, ["config"]):
        means = g.groupby("depth")["value"].mean()
        if len(means) < 3 or not (means > 0).all():
            continue
        xs = [math.log(d) for d in means.index]
        ys = [math.log(v) for v in means.values]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = (sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
                 / sum((x - mx) ** 2 for x in xs))
        out.append((str(config), slope, float(means.values[0]), float(means.values[-1])))
    return out


def init_caption(init: pd.DataFrame) -> str:
    """What the init figure's data show: each block's log-log slope against depth."""
    seeds = init["seed"].nunique() if "seed" in init else 1
    parts = []
    for metric, name in (("last_ffn_grad_norm", "last-FFN gradient"),
                         ("output_change", "Admin output change")):
        trends = depth_trends(init, metric)
        if trends:
            parts.append(f"{name} slope vs depth (log-log): " + ", ".join(
                f"{label} {slope:+.2f}" for label, slope, _, _ in trends))
    return (f"Initialisation diagnostics vs depth, mean over {seeds} seed(s). "
            + "; ".join(parts) + ". For reference, Xiong et al. predict a flat (0) last-FFN "
            "gradient for Post-LN and -0.5 (1/√L) for Pre-LN, Admin O(N) (+1) for Post-LN "
            "and O(log N) (about +0.5 here) for Pre-LN, both under an init without depth "
            "scaling; the findings table says which held.")
