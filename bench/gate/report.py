"""The gate's two outputs: a JSON verdict file for machines and a Markdown summary for people.

JSON (``gate.json``; ``attnbench report --gate PATH`` renders it):
    schema      "attnbench-gate/1"
    verdict     "pass" | "fail" | "skipped";  exit_code 0 | 1
    mode        "trees" (both sides measured in this job) | "results" (stored directories)
    base, head  what was compared (commit, description, root or directory)
    settings    thresholds and budget used
    findings    [{case, variant, kind, verdict, ratio, ci_low, ci_high, p_value, detail,
                  fails_gate}], worst first
    notes       things a reader should know that are not findings (skipped variants, ...)
    samples     raw per-call seconds per timed case: {case: {inner, base, head, confirm_*}}

Markdown (``gate.md``, also printed): fit for a pull-request comment. The headline says pass or
fail; then one line per finding that is not "unchanged"/"passed", worst first; the unchanged
ones folded away; then the notes.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench.errors import UsageError
from attnbench.gate.verdicts import GateFinding, exit_code, worst_first

SCHEMA = "attnbench-gate/1"
QUIET_VERDICTS = ("unchanged", "passed")


@dataclass
class GateReport:
    mode: str  # "trees" | "results"
    base: dict[str, Any]
    head: dict[str, Any]
    findings: list[GateFinding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict)
    wall_s: float | None = None
    skipped: bool = False  # nothing was compared (e.g. no base revision); passes

    @property
    def exit_code(self) -> int:
        return 0 if self.skipped else exit_code(self.findings)

    @property
    def verdict(self) -> str:
        return "skipped" if self.skipped else "fail" if self.exit_code else "pass"

    def as_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "verdict": self.verdict, "exit_code": self.exit_code,
                "mode": self.mode, "base": self.base, "head": self.head,
                "settings": self.settings, "wall_s": self.wall_s,
                "findings": [f.as_dict() for f in worst_first(self.findings)],
                "notes": self.notes, "samples": self.samples}


def _change(f: GateFinding) -> str:
    if f.ratio is None:
        return ""
    if f.kind == "structural":
        return f"{f.ratio:.2f}"
    if f.kind == "correctness":
        return f"err ratio {f.ratio:.3g}"
    interval = f" [{f.ci_low:.2f}, {f.ci_high:.2f}]" if f.ci_low is not None else ""
    return f"{f.ratio:.2f}x{interval}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(f: GateFinding) -> str:
    mark = "❌" if f.fails_gate else "⚠️" if f.verdict in ("warning", "failing") else \
        "✅" if f.verdict == "improved" else "·"
    return "| " + " | ".join(_cell(x) for x in (mark, f.verdict, f.kind, f"`{f.case}`",
                                                   _change(f), f.detail)) + " |"


def _side(side: dict[str, Any]) -> str:
    return side.get("description") or side.get("commit") or side.get("path") or "?"


def render_markdown(report: GateReport) -> str:
    findings = worst_first(report.findings)
    failing = [f for f in findings if f.fails_gate]
    headline = {"pass": "PASS", "skipped": "SKIPPED (nothing to compare)",
                "fail": f"FAIL ({len(failing)} finding{'s' * (len(failing) != 1)} "
                        "fail the gate)"}[report.verdict]
    counts = Counter((f.kind, f.verdict) for f in findings)
    tally = ", ".join(f"{n} {kind} {verdict}" for (kind, verdict), n in sorted(counts.items()))
    lines = [f"### attnbench gate: {headline}", "",
             f"base `{_side(report.base)}` vs head `{_side(report.head)}`"
             + (f" · {report.wall_s:.0f} s" if report.wall_s else ""), ""]
    if tally:
        lines += [tally, ""]
    loud = [f for f in findings if f.verdict not in QUIET_VERDICTS]
    quiet = [f for f in findings if f.verdict in QUIET_VERDICTS]
    header = ["| | verdict | kind | case | change | detail |", "|---|---|---|---|---|---|"]
    if loud:
        lines += header + [_row(f) for f in loud] + [""]
    elif findings:
        lines += ["Every comparison is unchanged or passed.", ""]
    if quiet:
        lines += [f"<details><summary>{len(quiet)} unchanged or passed</summary>", "",
                  *header, *(_row(f) for f in quiet), "", "</details>", ""]
    if report.notes:
        lines += ["Notes:", *(f"- {_cell(n)}" for n in report.notes), ""]
    threshold = report.settings.get("threshold", 0.10)
    lines += ["<sub>time: median ratio head/base [95% bootstrap CI]; regressed = ratio above "
              f"{1 + threshold:.2f}, CI above 1 and rank test significant, reproduced in fresh "
              "processes. memory: allocator-level peak, fails above max(5 %, 256 KiB). "
              "correctness: the FlashAttention tolerance rule, error ratio = "
              "max\\|out-ref\\| / max\\|textbook-ref\\|.</sub>"]
    return "\n".join(lines) + "\n"


def write_outputs(report: GateReport, out_dir: str | Path) -> tuple[Path, Path]:
    """``gate.json`` and ``gate.md`` in ``out_dir`` (created); returns their paths."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        json_path, md_path = out / "gate.json", out / "gate.md"
        json_path.write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
        md_path.write_text(render_markdown(report))
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write the gate's outputs ({exc.strerror})"
                         ) from None
    return json_path, md_path


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a gate.json back (for tests and tools), checking its schema."""
    data = json.loads(Path(path).read_text())
    if data.get("schema") != SCHEMA:
        raise UsageError(f"{path}: schema {data.get('schema')!r}, expected {SCHEMA!r}")
    return data
