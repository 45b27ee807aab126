"""``attnbench gate``: the CI regression gate.

    attnbench gate --base REV [--head REV]         measure both trees in this job
    attnbench gate --baseline DIR --results DIR    compare stored results (hard gates only)
    attnbench gate --self-check                    measure the gate's false alarms and power

Exit codes: 0 pass, 1 a regression, 2 usage or environment error (unknown revision, dirty
working tree, missing or corrupted results, a worker that cannot start).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from attnbench.gate.measure import PRESETS, GatePreset, GateSettings, compare_sides
from attnbench.gate.report import GateReport, render_markdown, write_outputs
from attnbench.gate.sides import SideSpec, WorkerError
from attnbench.gate.verdicts import MEMORY_ABS, MEMORY_REL, TimePolicy
from attnbench.gate.worktree import (
    GitError,
    checked_out,
    describe,
    dirty_files,
    has_variants_package,
    repo_root,
    resolve_revision,
)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("gate", help="regression gate: this tree against a base revision",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to compare (one form)")
    what.add_argument("--base", metavar="REV", help="base revision, checked out in a worktree")
    what.add_argument("--head", metavar="REV",
                      help="head revision (default: the working tree as it is)")
    what.add_argument("--baseline", metavar="DIR", help="stored results of the base side")
    what.add_argument("--results", metavar="DIR", help="stored results of the head side")
    what.add_argument("--self-check", action="store_true",
                      help="A/A false-alarm rate and power against injected faults")
    how = p.add_argument_group("how")
    how.add_argument("--preset", choices=sorted(PRESETS), default="small",
                     help="small (default): B1 Hq4 N256 D64 fp32, causal or not, fwd and "
                          "fwd+bwd; tiny: one N=64 fwd shape (tests)")
    how.add_argument("--variants", default="", metavar="A,B",
                     help="only these attention variants (default: all present on both sides)")
    how.add_argument("--kinds", default="correctness,memory,time", metavar="K,K",
                     help="what to compare: any of correctness, memory, time (default all)")
    how.add_argument("--threshold", type=float, default=TimePolicy.threshold,
                     help="time regression threshold as a fraction (default 0.10 = 10 %%)")
    how.add_argument("--alpha", type=float, default=TimePolicy.alpha,
                     help="rank-test significance level (default 0.01)")
    how.add_argument("--rounds", type=int, help="samples per side (default: the preset's)")
    how.add_argument("--structural", choices=("warn", "error", "off"), default="warn",
                     help="structural checks: warn (default), fail the gate, or skip")
    how.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    how.add_argument("--allow-dirty", action="store_true",
                     help="measure an uncommitted working tree as head (refused by default)")
    how.add_argument("--allow-missing-base", action="store_true",
                     help="if the base revision does not exist or has no variants package, "
                          "say so and exit 0 (a first commit, a shallow clone)")
    how.add_argument("--aa-runs", type=int, default=2, help="self-check: A/A runs of the preset")
    how.add_argument("--power-runs", type=int, default=5,
                     help="self-check: gate runs timing the injected 1.3x slowdown (each "
                          "case of the preset in a run is one trial)")
    p.add_argument("--out", type=Path, default=Path("results/gate"),
                   help="directory for gate.json and gate.md (default results/gate)")
    p.set_defaults(func=run)
    return p


def settings_from(args: argparse.Namespace) -> GateSettings:
    try:
        policy = TimePolicy(threshold=args.threshold, alpha=args.alpha)
    except ValueError as exc:
        raise _usage(f"--threshold/--alpha: {exc}") from None
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - {"correctness", "memory", "time"}
    if unknown or not kinds:
        raise _usage(f"--kinds: expected some of correctness, memory, time; got {args.kinds!r}")
    return GateSettings(policy=policy, structural=args.structural, device=args.device,
                        kinds=kinds, variants=tuple(v for v in args.variants.split(",") if v))


def _usage(message: str) -> Exception:
    from attnbench.cli import UsageError

    return UsageError(message)


def run(args: argparse.Namespace) -> int:
    forms = [bool(args.base), bool(args.baseline or args.results), args.self_check]
    if sum(forms) != 1:
        raise _usage("give exactly one of --base REV, --baseline DIR --results DIR, "
                     "--self-check")
    if args.head and not args.base:
        raise _usage("--head needs --base")
    if bool(args.baseline) != bool(args.results):
        raise _usage("--baseline and --results go together")
    preset = PRESETS[args.preset]
    if args.rounds is not None:
        if args.rounds < 2:
            raise _usage(f"--rounds: expected at least 2, got {args.rounds}")
        preset = replace(preset, rounds=args.rounds, confirm_rounds=2 * args.rounds + 1)
    settings = settings_from(args)
    start = time.monotonic()
    try:
        if args.self_check:
            from attnbench.gate.selfcheck import run_self_check, write_self_check

            if not has_variants_package(Path.cwd()):
                raise _usage(f"--self-check: run it from the repository root ({Path.cwd()} "
                             "has no variants package)")
            result = run_self_check(Path.cwd(), preset, settings,
                                    aa_runs=args.aa_runs, power_runs=args.power_runs,
                                    log=_log)
            path = write_self_check(result, args.out)
            print(result["summary"])
            print(f"self-check written to {path}", file=sys.stderr)
            return 0 if result["targets_met"] else 1
        report = (_stored(args, settings) if args.baseline
                  else _trees(args, preset, settings))
    except (GitError, WorkerError) as exc:
        raise _usage(str(exc)) from None
    report.wall_s = time.monotonic() - start
    json_path, _ = write_outputs(report, args.out)
    print(render_markdown(report))
    print(f"gate: {report.verdict} (exit {report.exit_code}); verdict file {json_path}",
          file=sys.stderr)
    return report.exit_code


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _stored(args: argparse.Namespace, settings: GateSettings) -> GateReport:
    from attnbench.gate.stored import compare_results

    findings, notes, base, head = compare_results(
        args.baseline, args.results, memory_rel=MEMORY_REL, memory_abs=MEMORY_ABS,
        structural_as_error=settings.structural == "error")
    return GateReport("results", base, head, findings, notes,
                      settings={"memory_rel": MEMORY_REL, "memory_abs": MEMORY_ABS})


def _exit_on_sigterm() -> None:
    """A CI timeout sends SIGTERM, which by default ends Python without running ``finally``
    blocks: turn it into SystemExit so the worktree and the workers are cleaned up."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _trees(args: argparse.Namespace, preset: GatePreset, settings: GateSettings) -> GateReport:
    _exit_on_sigterm()
    root = repo_root(Path.cwd())
    try:
        base_commit = resolve_revision(root, args.base)
    except GitError as exc:
        if args.allow_missing_base:
            return _skipped(f"{exc}; nothing to compare against", args.base)
        raise
    head_commit = resolve_revision(root, args.head) if args.head else None
    if head_commit is None and not args.allow_dirty:
        dirty = dirty_files(root)
        if dirty:
            shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5
                                            else "")
            raise _usage(f"the working tree has uncommitted changes ({shown}); commit them, "
                         "pass --head REV, or pass --allow-dirty to measure the tree as it is")
    plugins = tuple(args.plugin)
    summary = {"preset": preset.name, "rounds": preset.rounds,
               "confirm_rounds": preset.confirm_rounds, **settings.policy.__dict__,
               "structural": settings.structural, "device": settings.device,
               "plugins": list(plugins)}
    with checked_out(root, base_commit) as base_tree:
        if not has_variants_package(base_tree):
            if args.allow_missing_base:
                return _skipped(f"base {args.base} ({base_commit[:10]}) has no variants "
                                "package; nothing to compare against", args.base)
            raise _usage(f"--base {args.base}: revision {base_commit[:10]} has no variants "
                         "package to measure")
        base = SideSpec("base", base_tree, plugins, describe(root, base_commit))
        if head_commit is None:
            head = SideSpec("head", root, plugins, "working tree" + (
                " (uncommitted changes)" if dirty_files(root) else ""))
            outcome = compare_sides(base, head, preset, settings, log=_log)
        else:
            with checked_out(root, head_commit) as head_tree:
                head = SideSpec("head", head_tree, plugins, describe(root, head_commit))
                outcome = compare_sides(base, head, preset, settings, log=_log)
    return GateReport("trees", {"commit": base_commit, "description": base.description},
                      {"commit": head_commit, "description": head.description},
                      outcome.findings, outcome.notes, summary, outcome.samples)


def _skipped(note: str, rev: str) -> GateReport:
    return GateReport("trees", {"commit": None, "description": rev},
                      {"commit": None, "description": "working tree"}, notes=[note],
                      skipped=True)
