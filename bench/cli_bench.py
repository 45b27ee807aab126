"""``attnbench bench``: throughput, memory and accuracy of every variant on a preset's cases.

    attnbench bench                                  # quick preset -> results/throughput/<time>
    attnbench bench --preset gpu --out results/h200
    attnbench bench --preset patterns                # attention patterns -> results/patterns/<time>
    attnbench bench --variant naive,tiled --mode fwd -k "N1024 and not causal"
    attnbench bench --out DIR --resume               # continue an interrupted run
    attnbench bench --out DIR --force                # replace the previous run in DIR
    attnbench bench --list                           # the selected cases; nothing is written
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from attnbench.provenance import now_iso
from attnbench.throughput.cases import MODES
from attnbench.throughput.models import FLOP_CONVENTION
from attnbench.throughput.presets import available_presets, load_preset
from attnbench.throughput.runner import RunConfig, plan, run_throughput, triage
from attnbench.throughput.selection import Selection
from attnbench.variants.registry import dtype_name, get, parse_dtype
from tabulate import tabulate


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "bench", help="throughput, peak memory and accuracy of every variant on a preset",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick", metavar="NAME",
                        help=f"{', '.join(available_presets())} or a .toml path "
                             "(default: quick)")
    parser.add_argument("--out", metavar="DIR",
                        help="results directory (default: results/throughput/<UTC time>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out, skipping finished cases")
    parser.add_argument("--force", action="store_true",
                        help="replace a previous run's results in --out")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME[,NAME]",
                        help="only these attention and/or block variants (repeatable)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="override the preset's device")
    parser.add_argument("--mode", action="append", choices=MODES, default=[],
                        help="only these modes (repeatable)")
    parser.add_argument("--dtype", action="append", default=[], metavar="DTYPE",
                        help="only these dtypes: fp32, bf16, fp16, fp64 (repeatable)")
    parser.add_argument("-k", dest="keyword", metavar="EXPR",
                        help="filter case ids like pytest -k: 'naive and not causal'")
    parser.add_argument("--threads", type=int, help="torch threads (default: the preset's, 1)")
    parser.add_argument("--time-limit", type=float, metavar="S",
                        help="per-case limit in seconds (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="input seed (default 0)")
    parser.add_argument("--list", action="store_true",
                        help="print the selected cases and skip reasons; run nothing")
    parser.set_defaults(func=run)
    return parser


def _selection(args: argparse.Namespace) -> Selection:
    attention, blocks = [], []
    for name in (n.strip() for arg in args.variant for n in arg.split(",") if n.strip()):
        (blocks if get(name).kind == "block" else attention).append(name)  # KeyError: unknown
    return Selection(attention=tuple(attention), blocks=tuple(blocks), modes=tuple(args.mode),
                     dtypes=tuple(dtype_name(parse_dtype(d)) for d in args.dtype),
                     device=args.device, keyword=args.keyword)


def run(args: argparse.Namespace) -> int:
    from attnbench.cli import UsageError

    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads: expected an integer >= 1, got {args.threads}")
    if args.time_limit is not None and not args.time_limit > 0:
        raise UsageError(f"--time-limit: expected seconds > 0, got {args.time_limit}")
    preset = load_preset(args.preset)
    stamp = now_iso().replace(":", "").replace("+0000", "Z")
    out = Path(args.out) if args.out else Path("results") / preset.suite / stamp
    if args.resume and not args.out:
        raise UsageError("--resume needs --out DIR: the directory of the run to continue")
    config = RunConfig(preset=preset, out=out, selection=_selection(args), resume=args.resume,
                       force=args.force, threads=args.threads, time_limit_s=args.time_limit,
                       seed=args.seed, plugins=list(getattr(args, "plugins_loaded", [])))
    if args.list:
        for case in plan(config):
            measured, why = triage(case, preset)
            print(f"{measured.case_id}  [skipped: {why}]" if why else measured.case_id)
        return 0
    started = time.monotonic()
    summary = run_throughput(config)
    minutes, seconds = divmod(int(time.monotonic() - started), 60)
    print(f"{preset.suite}: {summary['cases']} cases ({summary['ok']} measured now, "
          f"{summary['errors']} errors, {summary['skipped']} skipped) in {minutes}m{seconds:02d}s")
    fits = [r for r in summary["fits"] if r["status"] == "ok"]
    if fits:
        print("peak memory ~ N^k over the preset's lengths:")
        print(tabulate([[r["variant"], r["mode"], r["dtype"], "causal" if r["causal"] else "",
                         f"{r['N_min']}..{r['N_max']}", f"{r['value']:.2f}"] for r in fits],
                       headers=["variant", "mode", "dtype", "", "N", "k"]))
    noise = summary.get("noise") or {}
    if noise.get("status") == "ok":
        print(f"A/A noise floor: {noise['value']:.1%} (90th percentile of |ratio - 1| over "
              f"{int(noise['aa_controls'])} controls; median {noise['aa_median_dev']:.1%}, "
              f"worst {noise['aa_worst_dev']:.1%}); speed differences inside it are ties")
    print(f"FLOPs: {FLOP_CONVENTION}")
    print(f"results: {summary['out']}  (attnbench.results.load_results reads it)")
    if summary["errors"]:
        print(f"note: {summary['errors']} case(s) failed; their error rows say why "
              "(a failing variant is a result, not a failed run)")
    return 0
