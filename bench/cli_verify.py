"""``attnbench verify``: run the verification library on the chosen variants and dtypes.

Prints one table per dtype (rows: checks, columns: attention variants) and one for blocks
(rows: attention variants, columns: blocks). A cell is the worst measured error ratio
max|out - ref| / max|pt - ref| when the check passed (``ok`` for checks without a ratio), ``FAIL
<ratio>`` when it failed, ``ERROR`` when it raised, ``-`` when it does not apply, and ends in
``*`` when some of its sub-cases were skipped. Exit 1 if any applicable check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from attnbench.variants.registry import dtype_name, get, list_variants, parse_dtype
from attnbench.verify.result import CheckResult
from attnbench.verify.runner import (
    ATTENTION_CHECKS,
    CHECK_NAMES,
    reference_gradcheck,
    verify_attention,
    verify_blocks,
)
from tabulate import tabulate

DEFAULT_DTYPES = ("float32", "float16", "bfloat16")


# Block checks and the reference each compares with (bench.verify.blocks).
BLOCK_CHECKS = {"encoder_layer": "TransformerEncoderLayer",
                "float64_block": "their own float64 computation"}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("verify", help="check variants against a float64 reference, "
                            "metamorphic properties and adversarial inputs")
    parser.add_argument("--variant", nargs="+", action="extend", default=[], metavar="NAME",
                        help="variants to verify (default: every registered one)")
    parser.add_argument("--dtype", nargs="+", action="extend", default=[], metavar="DTYPE",
                        help=f"dtypes (default: {', '.join(DEFAULT_DTYPES)}; commas allowed)")
    parser.add_argument("--check", nargs="+", action="extend", default=[], metavar="CHECK",
                        help=f"only these attention checks: {', '.join(CHECK_NAMES)}")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of every random input")
    parser.add_argument("--json", metavar="PATH", help="write a machine-readable summary")
    parser.add_argument("--out", metavar="DIR", help="write a results directory (suite verify)")
    parser.add_argument("--force", action="store_true",
                        help="replace a previous run's results in --out")
    parser.set_defaults(func=run)
    return parser


def _select(args: argparse.Namespace) -> tuple[list, list, list[torch.dtype], list[str] | None]:
    from attnbench.cli import UsageError

    names = [n for item in args.variant for n in item.split(",") if n]
    known = {v.name for v in list_variants()}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"unknown variant(s) {', '.join(unknown)}; registered: "
                         f"{', '.join(sorted(known))}")
    chosen = [get(n) for n in dict.fromkeys(names)] or list_variants()
    attention = [v for v in chosen if v.kind == "attention"]
    blocks = [v for v in chosen if v.kind == "block"]
    dtypes = [parse_dtype(d) for item in (args.dtype or DEFAULT_DTYPES)
              for d in item.split(",") if d]
    checks = [c for item in args.check for c in item.split(",") if c] or None
    bad = [c for c in checks or [] if c not in CHECK_NAMES]
    if bad:
        raise UsageError(f"unknown check(s) {', '.join(bad)}; known: {', '.join(CHECK_NAMES)}")
    return attention, blocks, list(dict.fromkeys(dtypes)), checks


def run(args: argparse.Namespace) -> int:
    attention, blocks, dtypes, checks = _select(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    block_attention = attention or list_variants("attention")
    record = open_results(args) if args.out else None  # fail on a bad --out before running
    # The Triton interpreter evaluates exp2 on masked-out lanes too; numpy's overflow warning
    # there is noise (the lanes are discarded), not a finding.
    warnings.filterwarnings("ignore", "overflow encountered in exp2", RuntimeWarning)
    start = time.perf_counter()
    results = [reference_gradcheck(args.seed)]
    for dtype in dtypes:
        for variant in attention:
            results += verify_attention(variant, dtype, device, args.seed, checks)
        if blocks:
            results += verify_blocks(blocks, block_attention, dtype, device, args.seed)
        if record:
            record(results)  # each dtype's cases are on disk as soon as they finish
    elapsed = time.perf_counter() - start
    print(render(results, dtypes))
    failed = [r for r in results if r.failed]
    ran = [r for r in results if r.status != "skipped"]
    print(f"\nverify: {len(ran)} checks ran, {len(failed)} failed, "
          f"{len(results) - len(ran)} skipped, {elapsed:.1f} s on {device}")
    if args.json:
        Path(args.json).write_text(json.dumps(_strict(summary(results, dtypes, device, elapsed)),
                                              indent=2, default=str) + "\n")
    if record:
        record(results, finish=True)
    return 1 if failed else 0


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


def _strict(data):
    """Standard JSON has no inf/nan: write them as the strings "inf", "-inf", "nan"."""
    if isinstance(data, dict):
        return {k: _strict(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_strict(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return str(data)
    return data


def open_results(args: argparse.Namespace) -> Callable[..., None]:
    """A results directory (suite "verify") and a function recording results into it: one
    case per result, metric ``passed`` (1/0) and, when measured, ``error_ratio`` (with column
    ``bound``); skipped results are status "skipped" + reason, raised ones "error" + reason.
    Calling it again with a longer list records only the results not yet written."""
    from attnbench.results import ResultsWriter, check_restart_flags, variant_catalog

    check_restart_flags(args.out, resume=False, force=getattr(args, "force", False))
    writer = ResultsWriter(args.out, "verify", argv=sys.argv, seeds={"seed": args.seed},
                           extra={"variants": variant_catalog(),
                                  "plugins": getattr(args, "plugins_loaded", [])})
    seen: dict[str, int] = defaultdict(int)
    written = 0

    def record(results: list[CheckResult], finish: bool = False) -> None:
        nonlocal written
        for r in results[written:]:
            case_id = ":".join([_who(r), r.check, r.dtype, r.case])
            seen[case_id] += 1
            if seen[case_id] > 1:
                case_id += f":{seen[case_id]}"
            writer.add_case(case_id, _rows(r))
        written = len(results)
        if finish:
            failed = sum(r.failed for r in results)
            writer.finish(passed=not failed, failed=failed)

    return record


def _rows(r: CheckResult) -> list[dict]:
    common = {"variant": r.variant, "check": r.check, "dtype": r.dtype, "case": r.case,
              "direction": r.direction, "attention": r.extra.get("attention", "")}
    if r.status == "skipped":
        return [{**common, "status": "skipped", "reason": r.message, "metric": "passed"}]
    reason = r.message if r.status == "error" else ""
    rows = [{**common, "status": r.status, "reason": reason, "metric": "passed",
             "value": int(bool(r.passed))}]
    if r.value is not None:
        rows.append({**common, "status": r.status, "metric": "error_ratio", "value": r.value,
                     "bound": r.bound})
    return rows
