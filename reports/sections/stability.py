"""Section 9: does each block train? Loss against learning rate per depth, where training fails
(the divergence map), how sensitive each block is to the learning rate, what the
initialisation already predicts, and the loss curves themselves.

A failed run is any verdict other than "healthy": NaN, a blow-up, or the quiet collapse to the
unigram plateau (loss near the corpus unigram entropy), which a NaN check alone misses.
"""

from __future__ import annotations

import pandas as pd
from attnbench.reports.document import Details, Section, fmt, fmt_lr, not_measured, table
from attnbench.reports.load import Bundle, ensure, wide
from attnbench.reports.sections import register_section
from attnbench.reports.sections import stability_figures as draw
from attnbench.reports.sections import stability_tables as tables
from attnbench.reports.sections.common import groups, run_column, stability_configs

TRAINING = ("final_val_loss", "init_loss", "unigram_loss", "diverged", "max_logit", "spikes")
PER_DEPTH = ("lr_sensitivity", "lowest_diverging_lr")
INIT = tuple(p[0] for p in draw.INIT_PANELS)
CURVES = ("val_loss", "train_loss")  # preferred first


def with_config(frame: pd.DataFrame) -> pd.DataFrame:
    frame = ensure(frame, "block", "attention", "warmup", "depth", "lr", "seed", "steps",
                   "beta2", "init")
    return frame.assign(config=stability_configs(frame))


def with_defaults(frame: pd.DataFrame) -> pd.DataFrame:
    """beta2 and init for runs recorded before they were swept (AdamW beta2 0.95, the scaled
    GPT-2 init: what every run used then)."""
    frame = ensure(frame, "beta2", "init")
    init = frame["init"].astype(object)
    return frame.assign(beta2=pd.to_numeric(frame["beta2"]).fillna(0.95),
                        init=init.where(init.notna(), "scaled"))


def trained_runs(bundle: Bundle) -> pd.DataFrame:
    """One row per training run: configuration, depth, lr, seed, losses and verdict."""
    frame = bundle.rows("stability")
    if frame.empty:
        return frame
    frame = with_config(frame)
    ids = set(frame[frame["metric"].isin(("final_val_loss", "diverged"))]["case_id"])
    frame = frame[frame["case_id"].isin(ids) & frame["metric"].isin(TRAINING)]
    runs = ensure(wide(frame, ("run", "case_id", "variant", "config")), *TRAINING, "verdict",
                  "depth", "lr", "seed", "steps", "eval_every", "block", "warmup", "beta2",
                  "init")
    runs = with_defaults(runs.assign(
        block=runs["block"].where(runs["block"].notna(), runs["variant"])))
    from_flag = runs["diverged"].map(lambda d: None if d != d else
                                     ("healthy" if d == 0 else "nan"))
    verdict = runs["verdict"].where(runs["verdict"].notna(), from_flag).fillna("healthy")
    return runs.assign(verdict=verdict.astype(str), healthy=verdict == "healthy")


def divergence_cells(trained: pd.DataFrame) -> pd.DataFrame:
    """One cell per (run, config, depth, lr): the verdict, or "mixed" when seeds disagree."""
    cells = []
    for (run, config, depth, lr), g in groups(trained, ["run", "config", "depth", "lr"]):
        verdicts = sorted(set(g["verdict"]))
        failed = int((~g["healthy"]).sum())
        if len(verdicts) == 1:  # a verdict this report does not know keeps its own name
            verdict = verdicts[0]
            text = draw.SHORT.get(verdict, verdict) + (f" ×{len(g)}" if len(g) > 1 else "")
        else:
            verdict, text = "mixed", f"{failed}/{len(g)} failed"
        cells.append({"run": run, "config": config, "depth": depth, "lr": lr,
                      "verdict": verdict, "text": text})
    return pd.DataFrame(cells)


def per_depth_rows(bundle: Bundle) -> pd.DataFrame:
    frame = bundle.rows("stability")
    frame = frame[frame["metric"].isin(PER_DEPTH)] if not frame.empty else frame
    if frame.empty:
        return frame
    frame = with_config(frame)
    keys = ("run", "config", "block", "depth", "warmup", "beta2", "init")
    return with_defaults(ensure(wide(frame, keys), *PER_DEPTH))


def curves(bundle: Bundle, trained: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The first seed's loss curve of every run, and which metric it is."""
    for metric in CURVES:
        rows = []
        for _, r in trained.iterrows():
            values = bundle.samples(r["run"], r["case_id"], metric)
            if values:
                rows.append({**r.to_dict(), "curve": values})
        if rows:
            frame = pd.DataFrame(rows)
            first = frame.groupby(["run", "config", "depth", "lr"], dropna=False)["seed"]
            return frame[frame["seed"].isna() | (frame["seed"] == first.transform("min"))], metric
    return pd.DataFrame(), ""


@register_section(order=90)
def build(bundle: Bundle) -> Section:
    section = Section("stability", "Training stability", (
        "Small GPTs built from each block, trained over depths × learning rates. A run fails "
        "on NaN, blow-up, or collapse to the unigram plateau (orange line: the loss of "
        "predicting character frequencies only). Good blocks stay green over more learning "
        "rates and depths."))
    trained = trained_runs(bundle)
    if trained.empty:
        section.items.append(not_measured("training stability", "no stability suite results"))
        return section
    section.items.append(draw.loss_vs_lr(bundle, trained))
    cells = divergence_cells(trained)
    section.items.append(draw.divergence_map(bundle, cells))
    depth_rows = per_depth_rows(bundle)
    section.items.append(tables.best_configurations(bundle, trained, depth_rows))
    section.items += tables.divergence_tables(bundle, trained)
    if depth_rows.empty:
        section.items.append(not_measured("learning-rate sensitivity", "no lr_sensitivity rows"))
    else:
        if depth_rows["lr_sensitivity"].notna().any() and depth_rows["depth"].nunique() > 1:
            section.items.append(draw.sensitivity(bundle, depth_rows))  # a trend over depth
        rows = [[*([r["run"]] if bundle.several_runs else []), r["config"], fmt(r["depth"]),
                 fmt(r["lr_sensitivity"]),
                 fmt_lr(r["lowest_diverging_lr"]) if r["lowest_diverging_lr"] == r[
                     "lowest_diverging_lr"] else "none"]
                for _, r in depth_rows.sort_values(["run", "config", "depth"]).iterrows()]
        section.items.append(table([*run_column(bundle), "block", "depth",
                                    "lr sensitivity (nats)", "lowest diverging lr"], rows,
                                   "Learning-rate sensitivity (Wortsman et al. 2023)"))
    init = bundle.rows("stability")
    init = init[init["metric"].isin(INIT)]
    if init.empty:
        section.items.append(not_measured("initialisation diagnostics"))
    else:
        init = with_config(ensure(init, "layer"))
        section.items.append(Details("Initialisation diagnostics vs depth (figure)", [
            draw.init_diagnostics(bundle, init, tables.init_caption(init))]))
    found, metric = curves(bundle, trained)
    if found.empty:
        section.items.append(not_measured("loss curves", "no train_loss/val_loss samples"))
    else:
        section.items.append(Details("Loss curves of every run (figure)",
                                     [draw.loss_curves(bundle, found, metric)]))
    return section
