"""Section 4: agreement with the float64 reference, per variant, dtype and direction.

The error ratio is max|out - ref| / max|pt - ref|: the variant's error measured in units of the
error of the textbook implementation run in the same dtype (FlashAttention's rule). A check
passes when the ratio stays under its bound (2 for outputs, 3 for gradients by default).
"""

from __future__ import annotations

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
from attnbench.reports.load import Bundle, ensure
from attnbench.reports.sections import register_section
from attnbench.reports.sections.common import attention_cases, groups, run_column
from attnbench.reports.summary import check_outcome

CHECK_KEYS = ("run", "variant", "dtype", "direction")


def checks(bundle: Bundle) -> pd.DataFrame:
    """One row per check (case_id) with its outcome, ratio, bound and reason."""
    frame = ensure(bundle.rows("verify", status=None), "check", "dtype", "case", "direction",
                   "bound")
    out = []
    for (run, case_id), rows in groups(frame, ["run", "case_id"]):
        first = rows.iloc[0]
        ratio = rows[(rows["metric"] == "error_ratio") & (rows["status"] == "ok")]
        reasons = sorted({r for r in rows["reason"] if r})
        out.append({"run": run, "case_id": case_id, "variant": first["variant"],
                    "check": first["check"], "dtype": first["dtype"], "case": first["case"],
                    "direction": first["direction"], "outcome": check_outcome(rows),
                    "ratio": ratio["value"].max() if not ratio.empty else None,
                    "bound": ratio["bound"].max() if not ratio.empty else None,
                    "reason": "; ".join(reasons)})
    return pd.DataFrame(out)


def summary_table(bundle: Bundle, found: pd.DataFrame) -> list[list]:
    """One row per (run, variant, dtype, direction) in which at least one check ran; groups
    where everything was skipped are named in the skip notes instead ("0 of 0" says nothing).
    The worst check is the one closest to (or furthest past) its own bound."""
    rows = []
    for key, g in groups(found, list(CHECK_KEYS)):
        ran = g[g["outcome"] != "skipped"]
        if ran.empty:
            continue
        bad = int((ran["outcome"] != "pass").sum())
        verdict = Cell(f"FAIL ({bad})", "bad") if bad else Cell("pass", "good")
        scaled = ran[ran["ratio"].notna() & (ran["bound"] > 0)]
        scaled = scaled.assign(share=scaled["ratio"] / scaled["bound"])
        if scaled.empty:
            worst = "exact checks only"
        else:
            top = scaled.loc[scaled["share"].idxmax()]
            worst = Cell(f"{fmt(top['ratio'])} ≤ {fmt(top['bound'])} ({top['share']:.0%})"
                         if top["share"] <= 1 else
                         f"{fmt(top['ratio'])} > {fmt(top['bound'])} ({top['share']:.0%})",
                         "" if top["share"] <= 1 else "bad")
        skipped = int((g["outcome"] == "skipped").sum())
        rows.append([*(key if bundle.several_runs else key[1:]), verdict,
                     f"{len(ran) - bad} of {len(ran)}" + (f" ({skipped} skipped)" if skipped
                                                          else ""), worst])
    return rows


def ratio_figure(bundle: Bundle, found: pd.DataFrame) -> Figure | None:
    """Each check's error as a fraction of its own bound (the rule's bound differs per case,
    through its rounding floor), per variant; one panel per direction (and run), dtypes as
    markers, failures as red crosses. Above 1 is a failure."""
    usable = found["ratio"].notna() & (found["bound"] > 0) & np.isfinite(found["bound"])
    found = found[usable].assign(fraction=found["ratio"] / found["bound"])
    found = found[found["fraction"] > 0]
    if found.empty:
        return None
    panels = groups(found, ["run", "direction"])
    fig, axes = figures.grid(len(panels), ncols=2, sharey=True)
    dtypes = sorted(found["dtype"].dropna().astype(str).unique())
    for ax, ((run, direction), g) in zip(axes, panels, strict=False):
        names = sorted(g["variant"].astype(str).unique())
        for i, dtype in enumerate(dtypes):
            d = g[g["dtype"].astype(str) == dtype]
            x = np.array([names.index(v) + (i - (len(dtypes) - 1) / 2) * 0.15
                          for v in d["variant"]])
            bad = (d["outcome"] != "pass").to_numpy()
            ax.scatter(x[~bad], d["fraction"][~bad], marker=figures.MARKERS[i % 8], s=22,
                       color=figures.COLORS[i], label=dtype, alpha=0.8)
            if bad.any():
                ax.scatter(x[bad], d["fraction"][bad], marker="x", s=40, color="#C00000",
                           label=f"{dtype} failed")
        ax.axhline(1.0, color="#C00000", linestyle="--", linewidth=1)
        ax.annotate("bound", (1, 1), xycoords=("axes fraction", "data"), ha="right",
                    va="bottom", fontsize=figures.SMALLEST_TEXT, color="#C00000")
        ax.set_xticks(range(len(names)), [figures.plain(n) for n in names], rotation=30,
                      ha="right", rotation_mode="anchor")
        title = f"{direction}: error as a fraction of its bound"
        figures.label_axes(ax, title + (f"\n[{run}]" if bundle.several_runs else ""),
                           "variant", "error ratio / bound", logy=True)
        figures.legend(ax)
    return Figure("correctness-error-ratio", figures.to_png(fig),
                  "Each check's error ratio divided by its bound, per variant (below the dashed "
                  "line at 1: passed; x: failed check)")


SPOT_BOUNDS = {"out": 2.0}  # the rule's default multiples; every gradient (dq, ...) gets 3
GRAD_BOUND = 3.0


def spot_checks(bundle: Bundle) -> list[list]:
    """The throughput suite's own error ratios on sampled rows of the benchmarked cases
    (metric sampled_error_ratio: not the verify suite's error_ratio, see attnbench.metrics),
    with the FlashAttention rule's default bound for what was checked (output 2, gradient 3)."""
    cases = ensure(attention_cases(bundle), "checked")
    if cases.empty or cases["sampled_error_ratio"].isna().all():
        return []
    cases = cases[cases["sampled_error_ratio"].notna()]
    rows = []
    for key, g in groups(cases, ["run", "variant", "dtype", "mode", "checked"]):
        checked = str(key[-1]) if key[-1] == key[-1] else "out"
        bound = SPOT_BOUNDS.get(checked, GRAD_BOUND)
        worst = float(g["sampled_error_ratio"].max())
        rows.append([*(key[:-1] if bundle.several_runs else key[1:-1]), checked, len(g),
                     Cell(fmt(worst), "" if worst <= bound else "warn"),
                     fmt(g["sampled_error_ratio"].median()), fmt(bound)])
    return rows


@register_section(order=40)
def build(bundle: Bundle) -> Section:
    section = Section("correctness", "Correctness", (
        "Error ratio = max|out − ref| / max|pt − ref|, with ref the float64 reference and pt "
        "the textbook implementation in the tested dtype: 1 means 'as accurate as the textbook "
        "code', the bound is the allowed multiple. Failures are red and listed below."))
    found = checks(bundle)
    if found.empty:
        section.items.append(not_measured("verification", "no verify suite results given"))
    else:
        head = [*run_column(bundle), "variant", "dtype", "direction", "verdict", "passed",
                "worst check: error ratio vs its bound (% of bound)"]
        rows = summary_table(bundle, found)
        section.items.append(Details(f"Checks per variant, dtype and direction ({len(rows)} "
                                     "rows)", [table(head, rows), Note(BOUND_NOTE)]))
        failed = found[found["outcome"].isin(["fail", "error"])]
        if failed.empty:
            section.items.append(Note("No check failed or raised.", "good"))
        else:
            rows = [[*([r["run"]] if bundle.several_runs else []), r["variant"], r["check"],
                     r["dtype"], r["case"], r["direction"], Cell(r["outcome"].upper(), "bad"),
                     fmt(r["ratio"]), fmt(r["bound"]), r["reason"] or "–"]
                    for _, r in failed.iterrows()]
            section.items.append(table([*run_column(bundle), "variant", "check", "dtype", "case",
                                        "direction", "outcome", "ratio", "bound", "reason"],
                                       rows, "Failed checks"))
        notes = skip_notes(found)
        if notes:
            section.items.append(Details(
                f"Skipped checks (the variant declares the case unsupported): {len(notes)} "
                "variants", notes))
        figure = ratio_figure(bundle, found)
        if figure:
            section.items.append(figure)
    spots = spot_checks(bundle)
    if spots:
        section.items.append(Details(
            f"Spot checks inside the throughput run: error ratio on {len(spots)} groups of "
            "sampled rows, with the rule's default bound",
            [table([*run_column(bundle), "variant", "dtype", "mode", "checked", "cases",
                    "max ratio", "median ratio", "bound"], spots)]))
    return section


BOUND_NOTE = (
    "Error ratio = the variant's error / the textbook implementation's error in the same dtype "
    "(1: as accurate as textbook code). The bound is 2 for outputs and 3 for gradients, raised "
    "where the textbook error is below the dtype's rounding floor (then both errors are "
    "rounding noise and the ratio of two tiny numbers can be large: a ratio in the thousands "
    "under a bound in the tens of thousands is such a case, and passes). The percentage is "
    "ratio / bound: above 100 % fails.")


def skip_notes(found: pd.DataFrame) -> list[Note]:
    """One note per variant and distinct reason set: counts, not one line per check."""
    notes = []
    skipped = found[found["outcome"] == "skipped"]
    for (variant,), g in groups(skipped, ["variant"]):
        reasons = sorted(set(g["reason"]) - {""})
        unique = sorted({part.strip() for r in reasons for part in r.split(";")})
        text = "; ".join(unique) or "no reason recorded"
        notes.append(Note(f"{variant}: {len(g)} of {int((found['variant'] == variant).sum())} "
                          f"check(s) skipped: {text}."))
    return notes

