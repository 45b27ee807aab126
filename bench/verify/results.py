"""Verification results: the printed tables, the JSON summary and the results directory.

The library's side of ``attnbench verify`` (the command line only parses arguments and calls
these), so that other front ends (``attnbench.gpu_check``) record and print results the same way.

Tables: one per dtype (rows: checks, columns: attention variants) and one for blocks (rows:
attention variants, columns: blocks). A cell is the worst measured error ratio
max|out - ref| / max|pt - ref| when the check passed (``ok`` for checks without a ratio), ``FAIL
<ratio>`` when it failed, ``ERROR`` when it raised, ``-`` when it does not apply, and ends in
``*`` when some of its sub-cases were skipped.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from attnbench.variants.registry import dtype_name
from attnbench.verify.result import CheckResult
from attnbench.verify.runner import ATTENTION_CHECKS, CHECK_NAMES
from tabulate import tabulate

# Block checks and the reference each compares with (attnbench.verify.blocks).
BLOCK_CHECKS = {"encoder_layer": "TransformerEncoderLayer",
                "float64_block": "their own float64 computation"}


def _shown_ratio(r: CheckResult) -> float | None:
    """The error ratio worth printing; None when the check passed only because the error sits
    within the rounding-noise floor (the ratio to the textbook then means nothing)."""
    if not r.agreements:
        return r.value
    worst = max(r.agreements, key=lambda a: a.closeness)
    if worst.passed and worst.ratio > worst.budget.C:
        return None
    return worst.ratio


def _cell(found: list[CheckResult]) -> str:
    """Collapse a check's sub-cases into one table cell."""
    if not found:
        return ""
    ran = [r for r in found if r.status != "skipped"]
    if not ran:
        return "-"
    star = "*" if len(ran) < len(found) else ""
    if any(r.status == "error" for r in ran):
        return "ERROR" + star
    failed = [r for r in ran if r.passed is False]
    if failed:
        values = [r.value for r in failed if r.value is not None]
        return f"FAIL{' ' + _fmt(max(values)) if values else ''}{star}"
    values = [v for v in map(_shown_ratio, ran) if v is not None]
    if values:
        return _fmt(max(values)) + star
    has_agreements = any(r.agreements for r in ran)
    return ("floor" if has_agreements else "ok") + star


def _fmt(x: float) -> str:
    if math.isinf(x) or math.isnan(x):
        return str(x)
    return f"{x:.2g}" if x < 100 else f"{x:.3g}"


def _skip_summary(results: list[CheckResult]) -> list[str]:
    """Variants that ran nothing, once each; then each other reason once, with whom it hit."""
    lines, by_reason = [], defaultdict(lambda: defaultdict(list))
    ran = {r.variant for r in results if r.status != "skipped"}
    idle: dict[str, list[str]] = defaultdict(list)
    for r in results:
        if r.status == "skipped" and r.variant not in ran:
            for reason in r.message.split("; "):
                if reason.removeprefix("attention: ") not in idle[r.variant]:
                    idle[r.variant].append(reason.removeprefix("attention: "))
    lines += [f"  {name}: nothing ran: {'; '.join(why)}" for name, why in idle.items()]
    for r in results:
        if r.status != "skipped" or r.variant in idle or r.extra.get("attention") in idle:
            continue
        for reason in r.message.split("; "):
            who = r.variant
            if reason.startswith("attention: "):
                reason, who = reason.removeprefix("attention: "), f"on {r.extra['attention']}"
            if r.check not in by_reason[reason.removeprefix("block: ")][who]:
                by_reason[reason.removeprefix("block: ")][who].append(r.check)
    for reason, whom in by_reason.items():
        lines.append(f"  {reason}: " + "; ".join(f"{who} ({', '.join(checks)})"
                                                 for who, checks in whom.items()))
    return lines


def render(results: list[CheckResult], dtypes: list[torch.dtype]) -> str:
    """Tables per dtype, then the failures and the reasons for skips, in words."""
    cells: dict[tuple, list[CheckResult]] = defaultdict(list)
    for r in results:
        key = (r.dtype, r.check, r.extra.get("attention", r.variant), r.variant)
        cells[key].append(r)
    lines = []
    gradcheck = [r for r in results if r.variant == "reference"]
    for r in gradcheck:
        lines.append(f"reference (float64) {r.check}: {'pass' if r.passed else 'FAIL'}")
    for dtype in map(dtype_name, dtypes):
        attn = sorted({r.variant for r in results if r.dtype == dtype
                       and r.check in CHECK_NAMES and r.status != "skipped"})
        if attn:
            rows = [[c.name] + [_cell(cells[(dtype, c.name, v, v)]) for v in attn]
                    for c in ATTENTION_CHECKS]
            rows = [row for row in rows if any(row[1:])]
            lines += ["", f"attention, {dtype}: worst error ratio max|out-ref|/max|pt-ref| "
                      "per check", tabulate(rows, headers=["check"] + attn)]
        lines += _pattern_table(dtype, [r for r in results if r.dtype == dtype
                                        and r.check == "pattern"])
        for check, title in BLOCK_CHECKS.items():
            block_rows = [r for r in results if r.dtype == dtype and r.check == check
                          and r.status != "skipped"]
            if block_rows:
                names = sorted({r.variant for r in block_rows})
                attns = sorted({r.extra["attention"] for r in block_rows})
                rows = [[a] + [_cell(cells[(dtype, check, a, b)]) for b in names]
                        for a in attns]
                lines += ["", f"blocks vs {title}, {dtype} (rows: attention)",
                          tabulate(rows, headers=["attention"] + names)]
    failed = [r for r in results if r.failed]
    if failed:
        lines += ["", "FAILED:"]
        lines += [f"  {_who(r)} {r.dtype} {r.check} [{r.case}]: {r.message}" for r in failed]
    skips = _skip_summary(results)
    if skips:
        lines += ["", "not applicable (- in the tables; * = some sub-cases):"] + skips
    lines += ["", "cells: worst error ratio max|out-ref|/max|pt-ref| (pass); 'floor': passed "
              "within the rounding-noise floor; FAIL <ratio>; ERROR: the check raised; "
              "variants that ran nothing are listed above, not tabled"]
    return "\n".join(lines)


def _pattern_table(dtype: str, found: list[CheckResult]) -> list[str]:
    """The ``pattern`` check per pattern (rows) and variant (columns)."""
    attn = sorted({r.variant for r in found if r.status != "skipped"})
    if not attn:
        return []
    cells: dict[tuple, list[CheckResult]] = defaultdict(list)
    for r in found:
        cells[(r.extra.get("pattern", ""), r.variant)].append(r)
    patterns = list(dict.fromkeys(r.extra.get("pattern", "") for r in found))
    rows = [[p] + [_cell(cells[(p, v)]) for v in attn] for p in patterns]
    return ["", f"patterns, {dtype}: worst error ratio per pattern (out, gradients, lse)",
            tabulate(rows, headers=["pattern"] + attn)]


def _who(r: CheckResult) -> str:
    return f"{r.variant}[{r.extra['attention']}]" if "attention" in r.extra else r.variant


def summary(results: list[CheckResult], dtypes: list[torch.dtype], device: str,
            elapsed: float) -> dict:
    failed = [r for r in results if r.failed]
    return {"passed": not failed, "failed": len(failed),
            "ran": sum(r.status != "skipped" for r in results),
            "skipped": sum(r.status == "skipped" for r in results),
            "dtypes": [dtype_name(d) for d in dtypes], "device": device,
            "seconds": round(elapsed, 2), "results": [r.as_dict() for r in results]}


def strict_json(data: Any) -> Any:
    """Standard JSON has no inf/nan: write them as the strings "inf", "-inf", "nan"."""
    if isinstance(data, dict):
        return {k: strict_json(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [strict_json(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return str(data)
    return data


def open_results(out: str | Path, seed: int, *, plugins: list[str] | None = None,
                 force: bool = False, argv: list[str] | None = None) -> Callable[..., None]:
    """A results directory (suite "verify") and a function recording results into it: one
    case per result (named by ``CheckResult.case_id``), metric ``passed`` (1/0) and, when
    measured, ``error_ratio`` (with column ``bound``); skipped results are status "skipped"
    + reason, raised ones "error" + reason. Calling it again with a longer list records only
    the results not yet written. ``force`` replaces a previous run in ``out``; ``argv`` is
    recorded (default sys.argv)."""
    from attnbench.results import ResultsWriter, check_restart_flags, variant_catalog

    check_restart_flags(out, resume=False, force=force)
    writer = ResultsWriter(out, "verify", argv=sys.argv if argv is None else argv,
                           seeds={"seed": seed},
                           extra={"variants": variant_catalog(), "plugins": plugins or []})
    seen: dict[str, int] = defaultdict(int)
    written = 0

    def record(results: list[CheckResult], finish: bool = False) -> None:
        nonlocal written
        for r in results[written:]:
            seen[r.case_id()] += 1
            writer.add_case(r.case_id(seen[r.case_id()]), _rows(r))
        written = len(results)
        if finish:
            failed = sum(r.failed for r in results)
            writer.finish(passed=not failed, failed=failed)

    return record


def _rows(r: CheckResult) -> list[dict]:
    common = {"variant": r.variant, "check": r.check, "dtype": r.dtype, "case": r.case,
              "direction": r.direction, "attention": r.extra.get("attention", ""),
              "pattern": r.extra.get("pattern", "")}
    if r.status == "skipped":
        return [{**common, "status": "skipped", "reason": r.message, "metric": "passed"}]
    reason = r.message if r.status == "error" else ""
    rows = [{**common, "status": r.status, "reason": reason, "metric": "passed",
             "value": int(bool(r.passed))}]
    if r.value is not None:
        rows.append({**common, "status": r.status, "metric": "error_ratio", "value": r.value,
                     "bound": r.bound})
    return rows
