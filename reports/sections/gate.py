"""Section 10: the verdicts of ``attnbench gate`` (this tree against a base), when given.

The gate writes gate.json (schema attnbench-gate/1): an overall verdict, what was compared, and
one finding per case and kind (time, memory, correctness, structural), worst first. Quiet
findings (unchanged, passed) are counted rather than listed when there are many of them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from attnbench.reports.document import Cell, Note, Section, fmt, not_measured, table
from attnbench.reports.load import Bundle, sort_key
from attnbench.reports.sections import register_section

BAD = ("regressed", "regression", "failed", "failing", "fail")
WARN = ("warning", "inconclusive")
GOOD = ("improved", "unchanged", "passed", "pass", "ok")
QUIET = ("unchanged", "passed", "pass", "ok")
LIST_ALL_BELOW = 40  # findings; above this only the loud ones get a row


def tone(finding: dict[str, Any]) -> str:
    verdict = str(finding.get("verdict", "")).lower()
    if finding.get("fails_gate") or verdict in BAD:
        return "bad"
    return "warn" if verdict in WARN else ("good" if verdict in GOOD else "")


def interval(finding: dict[str, Any]) -> str:
    lo, hi = finding.get("ci_low"), finding.get("ci_high")
    return "–" if lo is None or hi is None else f"[{fmt(lo)}, {fmt(hi)}]"


def side(value: Any) -> str:
    """A compared side in words: its scalar fields ("commit=3f2a1c9, description=...")."""
    if not isinstance(value, dict):
        return fmt(value)
    return ", ".join(f"{k}={v}" for k, v in sorted(value.items())
                     if isinstance(v, str | int | float | bool) and v != "")


def headline(bundle: Bundle) -> Note | None:
    meta = bundle.gate_meta
    if "verdict" not in meta:
        return None
    verdict = str(meta["verdict"])
    text = f"Gate verdict: {verdict}" + (f" (exit {meta['exit_code']})" if "exit_code" in meta
                                         else "")
    if meta.get("base") or meta.get("head"):
        text += f"; base: {side(meta.get('base'))}; head: {side(meta.get('head'))}"
    return Note(text + ".", "bad" if verdict == "fail" else "good" if verdict == "pass"
                else "muted")


@register_section(order=100)
def build(bundle: Bundle) -> Section:
    section = Section("gate", "Gate verdicts", (
        "Ratio = head / base for the measured quantity (time: above 1 is slower), with its "
        "confidence interval and p-value; a regression needs the interval past the threshold, "
        "so noise alone should rarely fail the gate. Gate failures come first."))
    if bundle.gate is None:
        section.items.append(not_measured("gate verdicts", "no --gate file given"))
        return section
    line = headline(bundle)
    if line:
        section.items.append(line)
    if not bundle.gate:
        section.items.append(Note(f"{bundle.gate_path}: no findings.", "muted"))
    rank = {"bad": 0, "warn": 1, "": 2, "good": 3}
    order = sorted(bundle.gate, key=lambda f: (rank[tone(f)], sort_key(f.get("kind")),
                                               sort_key(f.get("case")),
                                               sort_key(f.get("variant"))))
    quiet = [f for f in order if str(f.get("verdict", "")).lower() in QUIET]
    shown = order if len(order) <= LIST_ALL_BELOW else [f for f in order if f not in quiet]
    rows = [[f.get("case"), f.get("variant", "–") or "–", f.get("kind", "–"),
             Cell(str(f.get("verdict")), tone(f)), fmt(f.get("ratio")), interval(f),
             fmt(f.get("p_value")), f.get("detail") or "–"] for f in shown]
    if rows:
        section.items.append(table(["case", "variant", "kind", "verdict", "ratio", "95 % CI",
                                    "p-value", "detail"], rows,
                                   f"Gate findings from {bundle.gate_path}"))
    if len(shown) < len(order):
        tally = Counter(f"{f.get('kind', '?')} {f.get('verdict')}" for f in quiet)
        section.items.append(Note(f"{len(quiet)} more findings unchanged or passed ("
                                  + ", ".join(f"{n} {k}" for k, n in sorted(tally.items()))
                                  + f"; listed in {bundle.gate_path})."))
    for note in bundle.gate_meta.get("notes") or []:
        section.items.append(Note(str(note)))
    return section
