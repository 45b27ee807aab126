"""Section 10: the verdicts of ``attnbench gate`` (A/B comparison of two commits), if given."""

from __future__ import annotations

from typing import Any

from reports.document import Cell, Note, Section, fmt, not_measured, table
from reports.load import GATE_FIELDS, Bundle, sort_key

BAD = ("regression", "fail", "failed", "slower")
GOOD = ("pass", "ok", "improvement", "faster", "no change")


def tone(verdict: str) -> str:
    verdict = verdict.lower()
    return "bad" if verdict in BAD else ("good" if verdict in GOOD else "warn")


def interval(finding: dict[str, Any]) -> str:
    lo, hi = finding.get("ci_low"), finding.get("ci_high")
    return "–" if lo is None or hi is None else f"[{fmt(lo)}, {fmt(hi)}]"


def build(bundle: Bundle) -> Section:
    section = Section("gate", "10. Gate verdicts", (
        "Ratio = new / old for the measured quantity (time: above 1 is slower), with its "
        "confidence interval and p-value; a regression needs the whole interval past the "
        "threshold, so noise alone should rarely fail the gate."))
    if bundle.gate is None:
        section.items.append(not_measured("gate verdicts", "no --gate file given"))
        return section
    if not bundle.gate:
        section.items.append(Note(f"{bundle.gate_path}: no findings.", "muted"))
        return section
    order = sorted(bundle.gate, key=lambda f: (tone(str(f.get("verdict"))) != "bad",
                                               sort_key(f.get("case"))))
    rows = [[f.get("case"), Cell(str(f.get("verdict")), tone(str(f.get("verdict")))),
             f.get("kind", "–"), fmt(f.get("ratio")), interval(f), fmt(f.get("p_value"))]
            for f in order]
    section.items.append(table(["case", "verdict", "kind", "ratio", "95 % CI", "p-value"], rows,
                               f"Gate findings from {bundle.gate_path}"))
    extra = sorted({k for f in bundle.gate for k in f} - set(GATE_FIELDS))
    if extra:
        section.items.append(Note("Fields not shown (see the file): " + ", ".join(extra) + "."))
    return section
