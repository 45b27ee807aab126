"""``attnbench stability``: train small GPTs built from each block variant over learning rate x
warm-up x depth x seed, measure them at initialisation, and say which published findings this
run reproduced. See ``attnbench.stability.sweep`` for running it on a cluster."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import textwrap
from collections.abc import Iterator
from concurrent.futures import Executor

from attnbench.stability.presets import PRESETS


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "stability", help="training stability of block variants: divergence, warm-up, logits",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="quick", metavar="NAME|PATH",
                        help=f"one of {', '.join(PRESETS)} or a JSON preset file "
                             "(default: quick)")
    parser.add_argument("--variant", action="append", metavar="BLOCK",
                        help="block variant to run instead of the preset's (repeatable)")
    parser.add_argument("--attention", metavar="NAME",
                        help="attention variant inside every block (default: the preset's)")
    parser.add_argument("--corpus", metavar="PATH",
                        help="UTF-8 text file to train on (default: the text of the standard "
                             "library's pydoc_data.topics)")
    parser.add_argument("--out", default="results/stability", metavar="DIR",
                        help="results directory (default: results/stability)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out, skipping finished runs")
    parser.add_argument("--force", action="store_true",
                        help="replace a previous run's results in --out")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="local worker processes (default: CPU count; 0: this process)")
    parser.add_argument("--executor", metavar="dask|MODULE:FUNCTION",
                        help="'dask': run jobs on a local Dask cluster of --workers processes "
                             "(needs the dask extra); MODULE:FUNCTION: on the "
                             "concurrent.futures.Executor FUNCTION() returns")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run jobs on an existing Dask cluster, e.g. tcp://host:8786 "
                             "(workers: dask worker ADDRESS --nthreads 1)")
    parser.set_defaults(func=run)
    return parser


def check_variants(blocks: list[str] | None, attention: str | None) -> None:
    """Every named variant exists, has the right kind, and trains on this CPU."""
    from attnbench.cli import UsageError
    from attnbench.variants.registry import Case, get, not_supported_reasons

    for name, kind in [*((b, "block") for b in blocks or []), (attention, "attention")]:
        if name is None:
            continue
        variant = get(name)  # KeyError names the registered variants
        flag = "--variant" if kind == "block" else "--attention"
        if variant.kind != kind:
            article = "an" if kind == "attention" else "a"
            raise UsageError(f"{flag} {name}: expected {article} {kind} variant, got "
                             f"{variant.kind}")
        reasons = not_supported_reasons(variant, Case(device="cpu", causal=True, backward=True))
        if reasons:
            raise UsageError(f"{flag} {name}: cannot train on cpu: {'; '.join(reasons)}")


def load_executor(spec: str) -> Executor:
    from attnbench.cli import UsageError

    module_name, _, function = spec.partition(":")
    if not module_name or not function:
        raise UsageError(f"--executor: expected MODULE:FUNCTION, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"--executor {spec}: cannot load ({exc})") from None
    executor = factory()
    if not isinstance(executor, Executor):
        raise UsageError(f"--executor {spec}: expected a concurrent.futures.Executor, got "
                         f"{type(executor).__name__}")
    return executor


@contextlib.contextmanager
def engine(args: argparse.Namespace) -> Iterator[Executor | None]:
    """The executor the options ask for (None: the sweep's local process pool)."""
    from attnbench.cli import UsageError
    from attnbench.stability.engines import EngineError, dask_executor

    if args.scheduler or args.executor == "dask":
        import os

        workers = args.workers if args.workers is not None else os.cpu_count() or 1
        try:
            with dask_executor(args.scheduler, workers) as executor:
                yield executor
        except EngineError as exc:
            raise UsageError(str(exc)) from None
    else:
        yield load_executor(args.executor) if args.executor else None


def run(args: argparse.Namespace) -> int:
    import sys

    from attnbench.cli import UsageError
    from attnbench.stability.presets import StabilityPreset
    from attnbench.stability.sweep import run_stability

    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers: expected 0 or more, got {args.workers}")
    check_variants(args.variant, args.attention)
    preset = StabilityPreset.load(args.preset).with_overrides(args.variant, args.attention)
    check_variants(preset.blocks(), preset.data["attention"])
    if args.scheduler and args.executor:
        raise UsageError(f"--scheduler {args.scheduler} and --executor {args.executor}: give "
                         "one (--scheduler already means a Dask executor)")
    with engine(args) as executor:
        findings = run_stability(preset, args.out, corpus=args.corpus, executor=executor,
                                 workers=args.workers, resume=args.resume, force=args.force,
                                 plugins=tuple(args.plugin), argv=sys.argv)
    print("\nFindings (criterion fixed in advance, decided over seeds; evidence from this run):")
    for f in findings:
        print(f"- {f.slug}: {f.verdict.upper()}. {f.claim} [{f.source}]")
        print(textwrap.fill(f.evidence, width=100, initial_indent="    ",
                            subsequent_indent="    "))
    from attnbench.results import load_results

    frame = load_results(args.out)
    return 1 if (frame["status"] == "error").any() else 0
