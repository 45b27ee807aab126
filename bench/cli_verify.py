"""``attnbench verify``: run the verification library on the chosen variants and dtypes.

Prints one table per dtype and one for blocks (``attnbench.verify.results`` says how to read a
cell), optionally writes a JSON summary and a results directory. Exit 1 if any applicable check
failed.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch
from attnbench.variants.patterns import BUILTIN_PATTERNS, parse_pattern
from attnbench.variants.registry import get, list_variants, parse_dtype
from attnbench.verify.results import open_results, render, strict_json, summary
from attnbench.verify.runner import (
    CHECK_NAMES,
    reference_gradcheck,
    verify_attention,
    verify_blocks,
)

DEFAULT_DTYPES = ("float32", "float16", "bfloat16")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("verify", help="check variants against a float64 reference, "
                            "metamorphic properties and adversarial inputs")
    parser.add_argument("--variant", nargs="+", action="extend", default=[], metavar="NAME",
                        help="variants to verify (default: every registered one)")
    parser.add_argument("--dtype", nargs="+", action="extend", default=[], metavar="DTYPE",
                        help=f"dtypes (default: {', '.join(DEFAULT_DTYPES)}; commas allowed)")
    parser.add_argument("--check", nargs="+", action="extend", default=[], metavar="CHECK",
                        help=f"only these attention checks: {', '.join(CHECK_NAMES)}")
    parser.add_argument("--pattern", action="append", default=[], metavar="PATTERN",
                        help="attention pattern(s) for the pattern check, e.g. "
                        "'sliding_window:window=16' or 'causal+softcap:cap=20' (repeatable; "
                        "default: every built-in: "
                        f"{', '.join(p.text for p in BUILTIN_PATTERNS)})")
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
    patterns = ([parse_pattern(text) for text in dict.fromkeys(args.pattern)]
                or list(BUILTIN_PATTERNS))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    block_attention = attention or list_variants("attention")
    record = (open_results(args.out, args.seed, plugins=args.plugins_loaded, force=args.force)
              if args.out else None)  # fail on a bad --out before running
    # The Triton interpreter evaluates exp2 on masked-out lanes too; numpy's overflow warning
    # there is noise (the lanes are discarded), not a finding.
    warnings.filterwarnings("ignore", "overflow encountered in exp2", RuntimeWarning)
    start = time.perf_counter()
    results = [reference_gradcheck(args.seed)]
    for dtype in dtypes:
        for variant in attention:
            results += verify_attention(variant, dtype, device, args.seed, checks, patterns)
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
        Path(args.json).write_text(json.dumps(strict_json(summary(results, dtypes, device,
                                                                  elapsed)),
                                              indent=2, default=str) + "\n")
    if record:
        record(results, finish=True)
    return 1 if failed else 0


