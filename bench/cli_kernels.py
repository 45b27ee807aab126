"""``attnbench kernels``: the compile report of our Triton kernels for GPU targets, on any
machine (see attnbench.kernel_report). Exit code 1 when a config fails to compile or exceeds
the device's shared memory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tabulate import tabulate

COLUMNS = ("arch", "kernel", "dtype", "head_dim", "causal", "config", "registers",
           "spill_stores", "spill_loads", "stack", "shared", "tensor_core", "main_loop", "status")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "kernels", help="compile every Triton kernel config for sm_80/sm_90 and report "
                        "registers, spills, shared memory and main-loop size (no GPU needed)")
    parser.add_argument("--arch", default="sm_80,sm_90", help="comma-separated: sm_80, sm_90")
    parser.add_argument("--dtype", default="bfloat16,float16", help="comma-separated dtypes")
    parser.add_argument("--head-dim", default="64,128,256", help="comma-separated head dims")
    parser.add_argument("--kernel", default="fwd,dkdv,dq,preprocess",
                        help="comma-separated: fwd, dkdv, dq, preprocess")
    parser.add_argument("--workers", type=int, default=None, help="compile processes")
    parser.add_argument("--json", type=Path, help="write the report (schema "
                        "attnbench-kernels/1) here, e.g. results/kernels.json")
    parser.set_defaults(func=run)
    return parser


def _split(text: str, arg: str, allowed: tuple, cast=str) -> tuple:
    from attnbench.cli import UsageError

    try:
        values = tuple(cast(x) for x in text.split(",") if x)
    except ValueError:
        raise UsageError(f"{arg}: expected a comma-separated list, got {text!r}") from None
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise UsageError(f"{arg}: expected some of {list(allowed)}, got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    from attnbench import kernel_report as kr

    archs = _split(args.arch, "--arch", tuple(kr.ARCHS))
    report = kr.run_report(
        list(archs), dtypes=_split(args.dtype, "--dtype", ("bfloat16", "float16")),
        head_dims=_split(args.head_dim, "--head-dim", (64, 128, 256), int),
        kernels=_split(args.kernel, "--kernel", kr.KERNELS), workers=args.workers)
    rows = report["rows"]
    print(tabulate([[r.get(c, "") for c in COLUMNS] for r in rows], headers=COLUMNS))
    errors = [r for r in rows if r["status"] != "ok"]
    spills = [r for r in rows if r["status"] == "ok" and r["spill_stores"]]
    print(f"\n{len(rows)} configs compiled in {report['seconds']} s (triton "
          f"{report['triton']}); {len(errors)} errors, {len(spills)} spilling")
    for r in errors:
        print(f"ERROR sm_{r['arch']} {r['kernel']} {r['dtype']} D={r['head_dim']} "
              f"causal={r['causal']} {r['config']}: {r['message']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    return 1 if errors else 0
