"""Section 2: where every number came from, one column per results directory."""

from __future__ import annotations

from typing import Any

from attnbench.reports.document import Cell, Details, Note, Section, fmt, table
from attnbench.reports.load import Bundle, Run
from attnbench.reports.sections import register_section

# (row title, how to read it from a provenance record)
FIELDS: tuple[tuple[str, Any], ...] = (
    ("suite", lambda p: p.get("suite")),
    ("commit", lambda p: (str(p.get("git_commit") or "unknown")[:12]
                          + (" (uncommitted changes)" if p.get("git_dirty") else ""))),
    ("device", lambda p: p.get("gpu_name") if p.get("cuda_available") else "cpu"),
    ("GPU capability / CUDA", lambda p: (f"{p.get('gpu_capability')} / {p.get('cuda_version')}"
                                         if p.get("cuda_available") else "–")),
    ("CPU", lambda p: f"{p.get('cpu_model', '?')} ({p.get('cpu_count', '?')} cores)"),
    ("threads", lambda p: threads(p)),
    ("timer", lambda p: p.get("timer", "–")),
    ("preset", lambda p: p.get("preset", "–")),
    ("Triton interpreter", lambda p: p.get("triton_interpret")),
    ("python", lambda p: p.get("python")),
    ("torch", lambda p: (p.get("packages") or {}).get("torch")),
    ("triton", lambda p: (p.get("packages") or {}).get("triton")),
    ("platform", lambda p: p.get("platform")),
    ("host", lambda p: p.get("hostname")),
    ("started", lambda p: p.get("start_time")),
    ("finished", lambda p: p.get("end_time") or "not finished (interrupted?)"),
    ("resumed from", lambda p: p.get("resumed_from")),
    ("seeds", lambda p: ", ".join(f"{k}={v}" for k, v in sorted((p.get("seeds") or {}).items()))),
    ("command", lambda p: " ".join(str(a) for a in p.get("command_line") or [])),
)
# Fields that make two runs' numbers incomparable when they differ.
COMPARED = ("commit", "device", "CPU", "threads", "timer", "Triton interpreter", "torch", "triton",
            "python")


def threads(p: dict[str, Any]) -> str:
    """The threads the suite measured with ("threads"), else the process's torch threads."""
    used, default = p.get("threads"), p.get("torch_threads")
    if used is None:
        return fmt(default)
    return fmt(used) + (f" (process default {default})" if default not in (None, used) else "")


def counts(run: Run) -> str:
    """How many cases ran, were skipped or failed: a run with many errors reads differently."""
    if run.rows.empty:
        return "no rows"
    per_case = run.rows.groupby("case_id")["status"].agg(
        lambda s: "error" if (s == "error").any() else ("skipped" if (s == "skipped").all()
                                                       else "ok"))
    tally = per_case.value_counts()
    return ", ".join(f"{int(tally.get(k, 0))} {k}" for k in ("ok", "skipped", "error"))


@register_section(order=20)
def build(bundle: Bundle) -> Section:
    section = Section("environment", "Environment and provenance", (
        "One column per results directory. A run label (commit @ device) names each run in "
        "every later table and figure; runs that differ in the highlighted rows are not "
        "directly comparable."))
    if not bundle.runs:
        return section
    values = {title: [fmt(get(r.provenance)) for r in bundle.runs] for title, get in FIELDS}
    differing = [t for t in COMPARED if len(set(values[t])) > 1 and bundle.several_runs]
    rows = [["run label", *(r.label for r in bundle.runs)],
            ["cases (ok, skipped, error)", *(counts(r) for r in bundle.runs)]]
    for title, _ in FIELDS:
        tone = "warn" if title in differing else ""
        rows.append([Cell(title, tone), *(Cell(v, tone) for v in values[title])])
    section.items.append(Details(
        f"Provenance of {len(bundle.runs)} results directories: commit, device, CPU, threads, "
        "timer, library versions, times, command",
        [table(["", *(str(r.path) for r in bundle.runs)], rows)]))
    if differing:
        section.items.append(Note(
            "These runs differ in " + ", ".join(differing) + ": numbers are compared within a "
            "run only, and every row and line carries its run label.", "warn"))
    unfinished = [str(r.path) for r in bundle.runs if not r.provenance.get("end_time")]
    if unfinished:
        section.items.append(Note("Interrupted or still running (no end time): "
                                  + ", ".join(unfinished) + "; their finished cases are shown.",
                                  "warn"))
    return section
