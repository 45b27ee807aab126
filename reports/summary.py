"""Section 1: the answers at a glance, computed from the same rows the later sections draw.

Per attention variant: is it right (verify suite), where is it fastest and how fast (throughput),
how does its memory grow (fitted exponent). Per block: does it train (stability verdicts).
Then the literature findings the stability suite set out to reproduce, and the gate verdicts.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from attnbench.reports.document import (
    Cell,
    Note,
    Paragraph,
    Section,
    fmt,
    fmt_lr,
    not_measured,
    table,
)
from attnbench.reports.load import Bundle, ensure, sort_key, wide
from attnbench.reports.sections import register_section
from attnbench.reports.sections.common import (
    SHAPE,
    attention_cases,
    case_text,
    groups,
    memory_fits,
    run_column,
    stability_configs,
)

RunVariant = tuple[str, str]
MODE_ORDER = {"fwd": 0, "bwd": 1, "fwd+bwd": 2}


def verification(bundle: Bundle) -> dict[RunVariant, Cell]:
    """Verdict per (run, variant) over every check the verify suite ran."""
    frame = ensure(bundle.rows("verify", status=None), "bound")
    out: dict[RunVariant, Cell] = {}
    for (run, variant), rows in groups(frame, ["run", "variant"]):
        outcomes = {"pass": 0, "fail": 0, "error": 0, "skipped": 0}
        for _, check in rows.groupby("case_id", sort=True):
            outcomes[check_outcome(check)] += 1
        ratios = rows[(rows["metric"] == "error_ratio") & (rows["bound"] > 0)
                      & (rows["status"] == "ok")]  # a bound of 0 (exact checks) has no scale
        worst = (ratios["value"] / ratios["bound"]).max() if not ratios.empty else None
        ran = outcomes["pass"] + outcomes["fail"] + outcomes["error"]
        if outcomes["fail"] or outcomes["error"]:
            text = f"FAIL: {outcomes['fail']} failed, {outcomes['error']} raised, of {ran} checks"
            tone = "bad"
        elif ran:
            text, tone = f"pass: {ran} of {ran} checks", "good"
        else:
            text, tone = f"not measured ({outcomes['skipped']} skipped)", "muted"
        if worst is not None and worst == worst:
            text += (f"; worst error {worst:.0%} of bound" if worst <= 10
                     else f"; worst error {worst:.3g}× its bound")
        out[(run, variant)] = Cell(text, tone)
    return out


def check_outcome(rows: pd.DataFrame) -> str:
    """One check (all rows of one case_id): error > skipped > the passed flag > the ratio."""
    if (rows["status"] == "error").any():
        return "error"
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return "skipped"
    passed = ok[ok["metric"] == "passed"]["value"]
    if not passed.empty:
        return "pass" if (passed == 1).all() else "fail"
    ratio = ok[(ok["metric"] == "error_ratio") & ok["bound"].notna()]
    if not ratio.empty:
        return "pass" if (ratio["value"] <= ratio["bound"]).all() else "fail"
    return "pass"


def fastest(bundle: Bundle) -> tuple[dict[RunVariant, str], dict[RunVariant, str]]:
    """Where each variant wins, and its best TFLOP/s with the case it was reached on.

    A variant wins a problem (the variants measured on the same shape in the same run) when it
    has the lowest median time AND its speed-up over the runner-up is called "faster": the
    interval over worker processes clears 1 by more than the run's A/A noise floor
    (``attnbench.speed``). Otherwise the problem is a tie and nobody wins it."""
    from attnbench.reports.sections.throughput import noise_floors, process_medians
    from attnbench.speed import speedup

    cases = attention_cases(bundle)
    cases = cases[cases["time_median_s"].notna()] if not cases.empty else cases
    floors = noise_floors(bundle)
    wins: dict[RunVariant, list[pd.Series]] = {}
    compared: dict[RunVariant, int] = {}
    ties: dict[RunVariant, int] = {}
    for _, problem in groups(cases, ["run", *SHAPE]):
        if problem["variant"].nunique() < 2:
            continue
        ranked = problem.sort_values("time_median_s")
        winner, second = ranked.iloc[0], ranked.iloc[1]
        run = winner["run"]
        for variant in problem["variant"].unique():
            compared[(run, variant)] = compared.get((run, variant), 0) + 1
        call = speedup(process_medians(bundle, run, second["case_id"]),
                       process_medians(bundle, run, winner["case_id"]),
                       floors.get(run, float("nan")))["call"]
        if call == "faster":
            wins.setdefault((run, winner["variant"]), []).append(winner)
        else:
            for variant in problem["variant"].unique():
                ties[(run, variant)] = ties.get((run, variant), 0) + 1
    regimes: dict[RunVariant, str] = {}
    for key, n in compared.items():
        won = pd.DataFrame(wins.get(key, []))
        tied = f"; {ties[key]} within noise (tie)" if ties.get(key) else ""
        if won.empty:
            regimes[key] = f"never called fastest ({n} problems compared{tied})"
            continue
        regimes[key] = (f"all {n} problems" if len(won) == n else
                        f"{len(won)} of {n}: " + "; ".join(regime_words(won))) + tied
    best: dict[RunVariant, str] = {}
    for (run, variant), rows in groups(cases[cases["tflops"].notna()] if not cases.empty
                                       else cases, ["run", "variant"]):
        top = rows.loc[rows["tflops"].idxmax()]
        where = case_text(top, ("dtype", "mode", "causal"))
        device = "GPU" if str(top.get("device")) == "cuda" else str(top.get("device")).upper()
        share = top.get("peak_fraction")
        peak = f", {share:.0%} of the measured matmul peak" if share == share and share else ""
        best[(run, variant)] = (f"{fmt(top['tflops'])} on {device}{peak} ({where} "
                                f"N {fmt(top['N'])})")
    return regimes, best


def regime_words(won: pd.DataFrame) -> list[str]:
    """"bfloat16 fwd causal N 1024–8192": the problems won, per dtype and mode."""
    parts = []
    for _, g in groups(won, ["dtype", "mode"]):
        causal = set(g["causal"].dropna().map(bool))
        only = "" if len(causal) != 1 else (" causal" if True in causal else " non-causal")
        low, high = fmt(g["N"].min()), fmt(g["N"].max())
        parts.append(f"{case_text(g.iloc[0], ('dtype', 'mode'))}{only} N {low}"
                     + ("" if low == high else f"–{high}"))
    return parts


def memory_exponents(bundle: Bundle) -> dict[RunVariant, str]:
    out: dict[RunVariant, str] = {}
    for (run, variant), rows in groups(memory_fits(bundle), ["run", "variant"]):
        parts = []
        for (mode,), g in sorted(groups(rows, ["mode"]), key=lambda mg: MODE_ORDER.get(
                mg[0][0], 9)):
            values = sorted(float(v) for v in g["value"].dropna())
            if values:
                low, high = f"{values[0]:.2f}", f"{values[-1]:.2f}"
                parts.append(f"{mode} {low}" + ("" if low == high else f"–{high}"))
        out[(run, variant)] = "; ".join(parts) or "not measured"
    return out


def stability_rows(bundle: Bundle) -> list[list[Any]]:
    """Per (run, trained configuration): verdict counts, failures, lowest diverging learning
    rate and learning-rate sensitivity by depth."""
    frame = bundle.rows("stability")
    if frame.empty:
        return []
    frame = ensure(frame, "verdict", "depth", "lr", "block")
    frame = frame.assign(config=stability_configs(frame))
    trained = wide(frame[frame["metric"].isin(["final_val_loss", "diverged"])],
                   ("run", "case_id", "variant", "config"))
    trained = ensure(trained, "verdict", "diverged", "depth", "lr")
    verdict = trained["verdict"].where(trained["verdict"].notna(), trained["diverged"].map(
        lambda d: None if d != d else ("healthy" if d == 0 else "diverged")))
    trained = trained.assign(verdict=verdict)
    per_depth = frame[frame["metric"].isin(["lowest_diverging_lr", "lr_sensitivity"])]
    out = []
    for (run, config), runs in groups(trained, ["run", "config"]):
        healthy = int((runs["verdict"] == "healthy").sum())
        failed = runs[runs["verdict"] != "healthy"].sort_values(["depth", "lr"])
        failures = [f"{v} {len(g)}× (depth {fmt_depths(g['depth'])})"
                    for (v,), g in groups(failed, ["verdict"])]
        # the config names come from the whole frame: a subset's may differ (an axis that
        # varies in the frame, e.g. init over the init diagnostics, may not vary in the subset)
        mine = per_depth[(per_depth["run"] == run) & (per_depth["config"] == config)] \
            if not per_depth.empty else per_depth
        lowest = by_depth(mine, "lowest_diverging_lr", fmt_lr, "none")
        sensitivity = by_depth(mine, "lr_sensitivity", fmt, "–")
        verdict = Cell(f"{healthy} of {len(runs)} healthy" + (
            "; " + "; ".join(failures) if failures else ""), "good" if not failures else "warn")
        out.append([run, config, verdict, lowest, sensitivity])
    return out


def fmt_depths(depths: pd.Series) -> str:
    return ", ".join(fmt(d) for d in sorted(set(depths.dropna()), key=float))


def by_depth(frame: pd.DataFrame, metric: str, style: Any, missing: str) -> str:
    rows = frame[frame["metric"] == metric] if not frame.empty else frame
    if rows.empty:
        return "not measured"
    rows = ensure(rows, "depth")
    parts = [f"L{fmt(depth)}: {style(g['value'].iloc[0]) if g['value'].notna().any() else missing}"
             for (depth,), g in groups(rows, ["depth"])]
    return ", ".join(parts)


def findings(bundle: Bundle) -> list[list[Any]]:
    """The literature claims the stability suite tested: reproduced, not reproduced,
    inconclusive (seeds disagree) or not measured."""
    frame = bundle.rows("stability", status=None)
    if frame.empty:
        return []
    frame = frame[frame["case_id"].astype(str).str.startswith("finding:")
                  & (frame["metric"] == "reproduced")]
    out = []
    frame = ensure(frame, "claim", "source")
    for _, row in frame.sort_values(["run", "case_id"]).iterrows():
        named = row.get("verdict")  # reproduced / not reproduced / inconclusive / not measured
        if named == "inconclusive":
            verdict = Cell("inconclusive", "warn")
        elif row["status"] != "ok" or row["value"] != row["value"]:
            verdict = Cell("not measured", "muted")
        else:
            verdict = Cell("reproduced", "good") if row["value"] == 1 else Cell(
                "not reproduced", "bad")
        claim = str(row["claim"]) if row["claim"] == row["claim"] and row["claim"] else "–"
        if row["source"] == row["source"] and row["source"]:
            claim += f" ({row['source']})"
        out.append([row["run"], str(row["case_id"]).removeprefix("finding:"), claim,
                    verdict, row["reason"] or "–"])
    return out


def gate_line(bundle: Bundle) -> Note:
    if bundle.gate is None:
        return not_measured("performance gate", "no --gate verdict file given")
    from attnbench.reports.sections.gate import tone

    bad = sum(tone(f) == "bad" for f in bundle.gate)
    verdict = bundle.gate_meta.get("verdict") or ("fail" if bad else "pass")
    return Note(f"Gate: {verdict}; {bad} failing finding(s) among {len(bundle.gate)} "
                "(see Gate verdicts).", "bad" if bad or verdict == "fail" else "good")


@register_section(order=10)
def build(bundle: Bundle) -> Section:
    from attnbench.reports import answers  # imports sections that import this module

    section = Section("summary", "Summary", (
        "First the short answer for each reader, then one row per variant and run: right "
        "(verify suite, error against the float64 reference as a fraction of the allowed "
        "bound), fast (problems where it had the lowest median time and beat the runner-up "
        "by more than the run's A/A noise floor; closer is a tie), lean (memory exponent k "
        "in peak ∝ N^k: 1 linear, 2 quadratic)."))
    verdicts, (regimes, best), exponents = verification(bundle), fastest(bundle), \
        memory_exponents(bundle)
    keys = sorted(set(verdicts) | set(regimes) | set(best) | set(exponents),
                  key=lambda k: (sort_key(k[1]), k[0]))
    catalog = bundle.catalog()
    is_block = {name for name, entries in catalog.items()
                if any(e.get("kind") == "block" for e in entries.values())}
    attention_keys = [k for k in keys if k[1] not in is_block]
    block_keys = [k for k in keys if k[1] in is_block]
    section.items.append(answers.build(bundle, verdicts, exponents, attention_keys))
    not_timed = answers.not_timed_reasons(bundle)
    if attention_keys:
        rows = [[*([run] if bundle.several_runs else []), variant,
                 verdicts.get((run, variant), Cell("not measured", "muted")),
                 regimes.get((run, variant), f"not timed: {not_timed[(run, variant)]}"
                             if (run, variant) in not_timed else "not measured"),
                 best.get((run, variant), "–"),
                 exponents.get((run, variant), "not measured")]
                for run, variant in attention_keys]
        section.items.append(table(
            [*run_column(bundle), "variant", "verified (verify suite)", "fastest in (problems)",
             "best TFLOP/s (where)", "memory exponent k"], rows, "Attention variants"))
    else:
        section.items.append(not_measured("attention variants", "no verify or throughput runs"))
    if block_keys:
        rows = [[*([run] if bundle.several_runs else []), variant,
                 verdicts.get((run, variant), Cell("not measured", "muted"))]
                for run, variant in block_keys]
        section.items.append(table([*run_column(bundle), "block", "verified (verify suite)"],
                                   rows, "Block variants: correctness"))
    blocks = stability_rows(bundle)
    if blocks:
        section.items.append(table(
            [*run_column(bundle), "block", "training verdicts (depth × learning rate)",
             "lowest diverging lr", "lr sensitivity"],
            [row if bundle.several_runs else row[1:] for row in blocks], "Blocks: training"))
    else:
        section.items.append(not_measured("block training stability", "no stability run"))
    found = findings(bundle)
    if found:
        section.items.append(table([*run_column(bundle), "finding", "claim (source)", "verdict",
                                    "evidence"],
                                   [r if bundle.several_runs else r[1:] for r in found],
                                   "Findings from the literature"))
        quick = [r.label for r in bundle.runs
                 if r.suite == "stability" and r.provenance.get("preset") == "quick"]
        if quick:
            section.items.append(Note(
                "These findings come from the quick preset (small models, few depths and "
                "seeds, a few hundred steps): 'not reproduced' at this scale is weak "
                "evidence either way; attnbench stability --preset full tests them at scale.",
                "warn"))
    section.items.append(gate_line(bundle))
    if bundle.several_runs:
        section.items.append(Paragraph(
            "Runs shown: " + "; ".join(bundle.labels) + ". Numbers are compared only within a "
            "run; each row and line names its run."))
    return section
