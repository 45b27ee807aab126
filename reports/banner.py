"""The verdict banner at the top of the page: did it pass, and what ran where.

Verdicts, one line each: the verify suite (checks run, failed, raised, skipped), the regression
gate (its verdict when a gate file was given, else how to produce one), the stability suite's
literature findings and training verdicts. Badges: the facts a reader needs before reading
any number (CPU threads, GPU model, whether Triton ran in its interpreter, presets, seeds), so
that a CPU figure is never mistaken for a GPU one.

Every count here is computed from the same rows the sections draw; tests compare them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from attnbench.reports.document import Banner, Cell, fmt
from attnbench.reports.load import Bundle, Run
from attnbench.reports.summary import check_outcome, findings

GATE_HOWTO = ("Gate: not run. To produce one: attnbench gate --base main (writes "
              "results/gate/gate.json), then attnbench report ... --gate results/gate/gate.json")


def verify_counts(bundle: Bundle) -> Counter[str]:
    """Checks of the verify suite by outcome: pass, fail, error (raised), skipped."""
    frame = bundle.rows("verify", status=None)
    tally: Counter[str] = Counter()
    if not frame.empty:
        for _, rows in frame.groupby(["run", "case_id"], sort=True):
            tally[check_outcome(rows)] += 1
    return tally


def verify_line(bundle: Bundle) -> Cell:
    tally = verify_counts(bundle)
    ran = tally["pass"] + tally["fail"] + tally["error"]
    if not ran and not tally["skipped"]:
        return Cell("Verify: not run (no verify results given); attnbench verify --out DIR",
                    "muted")
    failed = tally["fail"] + tally["error"]
    text = (f"Verify: {'FAIL' if failed else 'pass'}, {ran} checks run, {tally['fail']} failed, "
            f"{tally['error']} raised, {tally['skipped']} skipped (unsupported by the variant)")
    return Cell(text, "bad" if failed else "good")


def gate_verdict(bundle: Bundle) -> tuple[str, int] | None:
    """The gate's verdict ("pass"/"fail"/...) and its failing findings, when a file was given."""
    if bundle.gate is None:
        return None
    from attnbench.reports.sections.gate import tone

    bad = sum(tone(f) == "bad" for f in bundle.gate)
    return str(bundle.gate_meta.get("verdict") or ("fail" if bad else "pass")), bad


def gate_line(bundle: Bundle) -> Cell:
    found = gate_verdict(bundle)
    if found is None:
        return Cell(GATE_HOWTO, "muted")
    verdict, bad = found
    text = (f"Gate: {verdict.upper()}, {bad} failing finding(s) among {len(bundle.gate or [])}"
            f" ({bundle.gate_path})")
    return Cell(text, "bad" if bad or verdict.lower() == "fail" else "good")


def finding_counts(bundle: Bundle) -> Counter[str]:
    """Literature findings by verdict text: reproduced, not reproduced, not measured."""
    return Counter(row[3].text for row in findings(bundle))


def stability_line(bundle: Bundle) -> Cell:
    from attnbench.reports.sections.stability import trained_runs

    tally = finding_counts(bundle)
    trained = trained_runs(bundle)
    runs = (f"{int(trained['healthy'].sum())} of {len(trained)} training runs healthy"
            if not trained.empty else "")
    if not tally:
        if runs:
            return Cell(f"Stability: {runs}; literature findings not evaluated (the run "
                        "wrote none: interrupted?)", "warn")
        return Cell("Stability: not run (no stability results given)", "muted")
    parts = [f"{tally[k]} {k}" for k in ("reproduced", "not reproduced", "not measured")
             if tally[k]]
    presets = sorted({str(r.provenance.get("preset")) for r in bundle.runs
                      if r.suite == "stability" and r.provenance.get("preset")})
    scale = (f"; preset {', '.join(presets)}" + (": small scale, a 'not reproduced' is weak "
                                                   "evidence" if "quick" in presets else "")
             if presets else "")
    runs = f"; {runs}" if runs else ""
    return Cell(f"Stability findings: {', '.join(parts)} of {sum(tally.values())}{runs}{scale}",
                "warn" if tally["not reproduced"] else "good" if tally["reproduced"] else "muted")


# --- badges ---------------------------------------------------------------------------------

def joined(values: list[Any]) -> str:
    return ", ".join(dict.fromkeys(str(v) for v in values if v not in (None, ""))) or "–"


def threads_badge(runs: list[Run]) -> str:
    """Threads the timings used (the throughput suite's "threads"), else torch's default."""
    timed = [r.provenance.get("threads") for r in runs if r.suite == "throughput"]
    if any(t is not None for t in timed):
        cores = joined([r.provenance.get("cpu_count") for r in runs])
        return f"{joined(timed)} timing thread(s) of {cores} cores"
    return joined([r.provenance.get("torch_threads") for r in runs]) + " (torch default)"


def triton_badge(runs: list[Run]) -> str:
    interpreted = {bool(r.provenance.get("triton_interpret")) for r in runs}
    if interpreted == {True}:
        return "interpreter (TRITON_INTERPRET=1): kernels checked, never timed"
    if interpreted == {False}:
        return "compiled"
    return "interpreter in some runs, compiled in others"


def seeds_badge(bundle: Bundle) -> str:
    """How many seeds each trained configuration had, and the suites' recorded seeds."""
    frame = bundle.rows("stability")
    parts = []
    if not frame.empty and "seed" in frame and frame["seed"].notna().any():
        keyed = frame[frame["metric"] == "final_val_loss"]
        per = keyed.groupby([c for c in ("run", "block", "depth", "lr", "warmup", "attention")
                             if c in keyed], dropna=False)["seed"].nunique()
        if len(per):
            low, high = int(per.min()), int(per.max())
            parts.append(f"training: {low}" + ("" if low == high else f"–{high}")
                         + " seed(s) per configuration")
    recorded = sorted({f"{k}={v}" for r in bundle.runs
                       for k, v in (r.provenance.get("seeds") or {}).items()})
    if recorded:
        parts.append("recorded: " + ", ".join(recorded))
    return "; ".join(parts) or "–"


def badges(bundle: Bundle) -> list[tuple[str, str]]:
    runs = bundle.runs
    gpus = [r.provenance.get("gpu_name") for r in runs if r.provenance.get("cuda_available")]
    presets = [f"{r.suite} {r.provenance['preset']}" for r in runs if r.provenance.get("preset")]
    return [
        ("device", "CPU only" if not gpus else joined(gpus)
         + (" and CPU" if len(gpus) < len(runs) else "")),
        ("GPU", joined(gpus) if gpus else "none"),
        ("CPU", joined([f"{r.provenance.get('cpu_model', '?')}" for r in runs])),
        ("CPU threads", threads_badge(runs)),
        ("Triton", triton_badge(runs)),
        ("preset", joined(presets) if presets else "–"),
        ("seeds", seeds_badge(bundle)),
        ("runs", fmt(len(bundle.labels)) + ": " + "; ".join(bundle.labels)),
    ]


def build(bundle: Bundle) -> Banner:
    return Banner([verify_line(bundle), gate_line(bundle), stability_line(bundle)],
                  badges(bundle))
