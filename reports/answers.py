"""The summary's three answer blocks: one per reader, a few lines each, before any figure.

- Kernel author: per attention variant, is it right (verify suite), fast (speed calls against
  the baseline against the run's A/A noise floor, ``attnbench.speed``) and lean (memory exponent)?
- LM researcher: per block, the best learning rate and loss, where training fails, and the
  regime these numbers come from (width, depths, steps, seeds): a small-scale result is said
  to be one.
- CI owner: the verdict (verify, gate) and the single worst finding.

Each line is computed from the rows the sections draw; nothing here is measured anew.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from attnbench.reports.banner import gate_verdict, verify_counts
from attnbench.reports.document import Answer, Answers, Cell, fmt, fmt_lr
from attnbench.reports.load import Bundle, ensure, sort_key
from attnbench.reports.sections.common import attention_cases, groups
from attnbench.reports.sections.correctness import checks
from attnbench.reports.sections.stability import trained_runs
from attnbench.reports.sections.throughput import speedups

RunVariant = tuple[str, str]


# --- kernel author ----------------------------------------------------------------------------

def right_text(cell: Cell | None) -> tuple[str, str]:
    """The verify verdict shortened: "pass 84/84" or "FAIL 2 of 84"."""
    if cell is None:
        return "not checked", "muted"
    head = cell.text.split(";")[0]
    if head.startswith("pass: "):
        ran = head.removeprefix("pass: ").split(" of ")[0]
        return f"pass {ran}/{ran}", "good"
    if head.startswith("FAIL"):
        return head.replace("FAIL: ", "FAIL ", 1), "bad"
    return "not checked", "muted"


def fast_text(bundle: Bundle, calls: pd.DataFrame, variant: str, run: str,
              not_timed: dict[RunVariant, str]) -> str:
    if variant == bundle.baseline:
        return "the baseline"
    mine = calls[(calls["variant"] == variant) & (calls["run"] == run)] if not calls.empty \
        else calls
    if mine.empty:
        why = not_timed.get((run, variant))
        return f"not timed ({why})" if why else "not timed"
    tally = mine["call"].value_counts()
    parts = [f"{int(tally[c])} {c}" for c in ("faster", "tie", "slower") if tally.get(c)]
    median = float(mine["speedup"].median())
    return (f"vs {bundle.baseline}: " + ", ".join(parts) + f" of {len(mine)} "
            f"(median {median:.2f}×)")


def lean_text(exponent: str) -> str:
    """Memory exponent in words: "k 0.92 (linear)"; per-mode fits condensed to the forward."""
    if exponent == "not measured":
        return "memory not measured"
    first = exponent.split(";")[0].split()  # ["fwd", "0.92"] or ["fwd", "1.98–2.00"]
    value = first[-1]
    try:
        k = float(value.split("–")[-1])
    except ValueError:
        return f"memory k {value}"
    shape = "linear" if k < 1.3 else "quadratic" if k > 1.7 else "between"
    return f"memory ∝ N^{value} ({first[0]}, {shape})"


def not_timed_reasons(bundle: Bundle) -> dict[RunVariant, str]:
    """Why a variant has no timing: the throughput suite's skip reason, first clause."""
    frame = bundle.table
    frame = frame[(frame["suite"] == "throughput") & (frame["metric"] == "run")
                  & (frame["status"] == "skipped")]
    out: dict[RunVariant, str] = {}
    for (run, variant), g in groups(frame, ["run", "variant"]):
        reasons = sorted(set(g["reason"]) - {""})
        if not reasons:
            continue
        first = reasons[0].split(";")[0]
        out[(run, variant)] = ("Triton interpreter only (TRITON_INTERPRET=1): checked, never "
                               "timed" if "interpret" in first.lower() else first)
    return out


def kernel_author(bundle: Bundle, verdicts: dict[RunVariant, Cell],
                  exponents: dict[RunVariant, str], attention_keys: list[RunVariant]) -> Answer:
    cases = attention_cases(bundle)
    cases = cases[cases["time_median_s"].notna()] if not cases.empty else cases
    calls = speedups(bundle, cases, bundle.baseline) if not cases.empty else pd.DataFrame()
    not_timed = not_timed_reasons(bundle)
    lines, unsupported = [], []
    for run, variant in attention_keys:
        right, tone = right_text(verdicts.get((run, variant)))
        timed = (run, variant) in exponents or (
            not calls.empty and (calls["variant"] == variant).any()) or (
            variant == bundle.baseline and not cases.empty)
        if not timed and (run, variant) not in not_timed:
            continue  # not in the benchmark (a verify-only oracle): fast and lean say nothing
        if not timed and right == "not checked":
            unsupported.append(variant)  # skipped everywhere: unsupported on this device
            continue
        prefix = f"[{run}] " if bundle.several_runs else ""
        fast = fast_text(bundle, calls, variant, run, not_timed)
        lean = lean_text(exponents.get((run, variant), "not measured"))
        text = f"{prefix}{variant}: right {right} · fast {fast} · lean {lean}"
        lines.append(Cell(text, tone if tone == "bad" else ""))
    if unsupported:
        lines.append(Cell("Not run here (unsupported on this device or dtype): "
                          + ", ".join(dict.fromkeys(unsupported)) + ".", "muted"))
    if not lines:
        lines = [Cell("No attention variant was verified or measured.", "muted")]
    return Answer("Kernel author", "Is each attention variant right, fast and lean?", lines)


# --- LM researcher -----------------------------------------------------------------------------

def regime(bundle: Bundle, trained: pd.DataFrame) -> str:
    """The scale the stability numbers come from, in one line."""
    trained = ensure(trained, "d_model", "steps", "depth", "seed")

    def values(column: str) -> str:
        found = sorted(set(trained[column].dropna()), key=sort_key)
        return ", ".join(fmt(v) for v in found) or "?"

    seeds = trained.groupby(["run", "config", "depth", "lr"], dropna=False)["seed"].nunique()
    presets = sorted({str(r.provenance.get("preset")) for r in bundle.runs
                      if r.suite == "stability" and r.provenance.get("preset")})
    devices = sorted({r.device for r in bundle.runs if r.suite == "stability"})
    text = (f"Regime: d_model {values('d_model')}, depth {values('depth')}, "
            f"{values('steps')} steps, {int(seeds.min()) if len(seeds) else 0} seed(s) per "
            f"point, on {', '.join(devices) or '?'}")
    if presets:
        text += f", preset {', '.join(presets)}"
    return text + ". Small models: the trend, not the value, carries to large ones."


def block_lines(bundle: Bundle, trained: pd.DataFrame) -> list[Cell]:
    lines = []
    for (run, config), g in groups(trained, ["run", "config"]):
        prefix = f"[{run}] " if bundle.several_runs else ""
        per_point = g.groupby(["depth", "lr"], dropna=False).agg(
            loss=("final_val_loss", "median"), healthy=("healthy", "all")).reset_index()
        good = per_point[per_point["healthy"] & per_point["loss"].notna()]
        if good.empty:
            best = "no healthy run"
        else:
            top = good.loc[good["loss"].idxmin()]
            best = (f"best lr {fmt_lr(top['lr'])}, loss {fmt(top['loss'])} nats "
                    f"(depth {fmt(top['depth'])})")
        failed = g[~g["healthy"]]
        if failed.empty:
            where, tone = "trains at every lr and depth tried", "good"
        else:
            parts = []
            for (depth,), d in groups(failed, ["depth"]):
                verdicts = ", ".join(sorted(set(d["verdict"].astype(str))))
                parts.append(f"depth {fmt(depth)} from lr {fmt_lr(d['lr'].min())} ({verdicts})")
            where, tone = "fails at " + "; ".join(parts), "warn"
        lines.append(Cell(f"{prefix}{config}: {best}; {where}", tone))
    return lines


def lm_researcher(bundle: Bundle) -> Answer:
    question = "Which block trains, at which learning rate, and where does it diverge?"
    trained = trained_runs(bundle)
    if trained.empty:
        return Answer("LM researcher", question, [Cell(
            "Not measured: no stability run (attnbench stability --preset quick).", "muted")])
    return Answer("LM researcher", question,
                  [*block_lines(bundle, trained), Cell(regime(bundle, trained), "muted")])


# --- CI owner -----------------------------------------------------------------------------------

def worst_finding(bundle: Bundle) -> Cell:
    """The one thing to look at first: a failed check, a gate regression, a raised case, a
    finding not reproduced; else a line saying nothing failed."""
    found = checks(bundle)
    if not found.empty:
        failed = found[found["outcome"].isin(["fail", "error"])].copy()
        if not failed.empty:
            failed["excess"] = (failed["ratio"] / failed["bound"]).fillna(float("inf"))
            worst = failed.sort_values("excess", ascending=False, kind="stable").iloc[0]
            how = (f"error ratio {fmt(worst['ratio'])} vs bound {fmt(worst['bound'])}"
                   if worst["outcome"] == "fail" else f"raised: {worst['reason'] or '?'}")
            return Cell(f"Worst: verify {worst['variant']} {worst['check']} {worst['dtype']} "
                        f"{worst['direction']} ({worst['case']}): {how}", "bad")
    from attnbench.reports.sections.gate import tone

    bad = [f for f in bundle.gate or [] if tone(f) == "bad"]
    if bad:
        worst_gate: dict[str, Any] = max(bad, key=lambda f: float(f.get("ratio") or 0))
        return Cell(f"Worst: gate {worst_gate.get('kind', '?')} {worst_gate.get('verdict')} on "
                    f"{worst_gate.get('case')} (ratio {fmt(worst_gate.get('ratio'))})", "bad")
    frame = bundle.table
    errors = frame[(frame["suite"] == "throughput") & (frame["status"] == "error")
                   & (frame["metric"] == "run")]
    if not errors.empty:
        first = errors.iloc[0]
        return Cell(f"Worst: {len(errors)} benchmark case(s) raised, e.g. {first['case_id']}: "
                    f"{first['reason'] or '?'}", "bad")
    return Cell("Worst: nothing failed or regressed in what was run.", "good")


def ci_owner(bundle: Bundle) -> Answer:
    tally = verify_counts(bundle)
    failed = tally["fail"] + tally["error"]
    gate = gate_verdict(bundle)
    gate_bad = gate is not None and (gate[1] > 0 or gate[0].lower() == "fail")
    if failed or gate_bad:
        verdict = Cell("Verdict: FAIL" + (f"; verify {failed} check(s) failed" if failed else "")
                       + ("; gate failed" if gate_bad else ""), "bad")
    elif sum(tally.values()) or gate is not None:
        verdict = Cell("Verdict: pass" + ("" if gate is not None else
                                          " (verify only; no gate file: run attnbench gate)"),
                       "good")
    else:
        verdict = Cell("Verdict: nothing to judge (no verify results, no gate file)", "muted")
    return Answer("CI owner", "Does this pass, and what is the worst finding?",
                  [verdict, worst_finding(bundle)])


def build(bundle: Bundle, verdicts: dict[RunVariant, Cell], exponents: dict[RunVariant, str],
          attention_keys: list[RunVariant]) -> Answers:
    return Answers([kernel_author(bundle, verdicts, exponents, attention_keys),
                    lm_researcher(bundle), ci_owner(bundle)])
