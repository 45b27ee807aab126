"""The prepared GPU check: is ``triton_flash`` right at real shapes, and how fast is it?

Runs on the GPU machine from the repository root with only its own packages (Python 3.12,
torch 2.11, triton 3.6; no nox, no network, no install):

    python3 -m attnbench.gpu_check --out results/gpu                # within 8 minutes, one H200
    python3 -m attnbench.gpu_check --out results/gpu --smoke-only   # about 2 minutes

Two stages, each writing its results and ``OUT/summary.md`` / ``OUT/summary.json`` as it ends,
so a run cut off by the machine's time limit still returns what it measured:

1. Smoke (``OUT/smoke``): the tolerance rule against a float64 reference for ``triton_flash``
   at one real shape per dtype (bf16, fp16: GQA Hq 16 / Hkv 4, ragged N = S = 1000, D 128,
   causal and not; output, log-sum-exp and dq, dk, dv), then one timing per variant (bf16,
   D 128, N 4096, forward: triton_flash, sdpa_flash, sdpa_efficient, sdpa_cudnn).
2. Full, while the time budget (``--budget-s``, default 480) lasts, most important first:
   a. throughput for the issue's targets (``OUT/throughput``): ``attnbench bench --preset gpu``
      limited to bf16, D 128, forward and backward, N 1k..16k, causal and not;
   b. correctness (``OUT/verify``): every check of ``attnbench verify`` on CUDA for
      ``triton_flash`` and ``sdpa_flash`` in bf16 and fp16, then the tolerance rule at real
      shapes (D 64 and 128, causal and not, MHA and GQA, N = S = 2048, ragged 1000 and
      777 x 1500; odd head dims 40, 80, 256 at 513 x 1025).
   c. flex patterns (``OUT/flex``): ``flex`` (compiled FlexAttention) forward and backward
      against each pattern's float64 reference, bf16: every built-in pattern at verify's
      shape, then three at a real shape (N = S = 1024, Hq 8 / Hkv 2, D 64), one pattern at a
      time while the budget lasts; an error is recorded as a failed check, never raised.
   A step that does not start for lack of time is listed in the summary as not run.
3. ``OUT/summary.md`` and ``OUT/summary.json``: correctness counts, the issue's targets as
   ratios measured within this run, then ``attnbench report`` over what was written.

Exit code: 0 when every correctness check that ran passed, 1 otherwise, 2 without a CUDA
device.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from attnbench.runtime import configure_triton

DTYPES = (torch.bfloat16, torch.float16)
VARIANTS = ("triton_flash", "sdpa_flash")
# (Hq, Hkv, N, S, D) at which the full float64 reference is cheap on an H200 (< 1 GiB).
REAL_SHAPES = [(Hq, Hkv, N, S, D)
               for Hq, Hkv in ((16, 16), (16, 4))
               for N, S in ((2048, 2048), (1000, 1000), (777, 1500))
               for D in (64, 128)]
ODD_HEAD_DIMS = [(4, 4, 513, 1025, D) for D in (40, 80, 256)]
SMOKE_SHAPES = [(16, 4, 1000, 1000, 128)]  # GQA, ragged, the head dim of the targets
BENCH_VARIANTS = ("triton_flash", "sdpa_flash", "sdpa_efficient", "sdpa_cudnn")
SMOKE_BENCH = ["--dtype", "bf16", "--mode", "fwd", "-k", "N4096 and D128 and not causal",
               *[a for v in BENCH_VARIANTS for a in ("--variant", v)]]
FULL_BENCH = ["--dtype", "bf16", "--mode", "fwd", "--mode", "bwd", "-k", "D128"]
BUDGET_S = 480  # the whole check, autotuning included, on one H200
FLEX_REAL = ["sliding_window:window=256", "causal+document:lengths=300/124/600",
             "causal+softcap:cap=20"]  # at (Hq, Hkv, N, S, D) = FLEX_REAL_SHAPE
FLEX_REAL_SHAPE = (8, 2, 1024, 1024, 64)
FLEX_STEP_S = 45  # a pattern starts only with this much budget left (fwd + bwd compile)


def correctness(out: Path, seed: int, *, device: str = "cuda", variants: tuple[str, ...] = VARIANTS,
                dtypes: tuple[torch.dtype, ...] = DTYPES,
                shapes: list[tuple[int, ...]] | None = None, suite: bool = True) -> list:
    """Every verification check (unless `suite` is False), then the tolerance rule at real
    shapes. The keyword arguments let the smoke stage and the test suite (on CPU, at tiny
    shapes) run this same code.
    """
    from attnbench.variants.registry import Case, get
    from attnbench.verify.agreement import check_agreement
    from attnbench.verify.results import open_results
    from attnbench.verify.runner import verify_attention

    record = open_results(out, seed, force=True)
    results: list = []
    shapes = REAL_SHAPES + ODD_HEAD_DIMS if shapes is None else shapes
    for name in variants:
        variant = get(name)
        for dtype in dtypes:
            if suite:
                results += verify_attention(variant, dtype, device=device, seed=seed)
                record(results)
            for Hq, Hkv, N, S, D in shapes:
                for causal in (False, True):
                    for judged in ("out", "lse", "grad"):
                        case = Case(B=1, Hq=Hq, Hkv=Hkv, N=N, S=S, D=D, dtype=dtype,
                                    device=device, causal=causal, backward=judged == "grad")
                        results.append(check_agreement(variant, case, seed,
                                                       check=f"real_shape_{judged}",
                                                       judged=judged))
                    record(results)
                    if device == "cuda":
                        torch.cuda.empty_cache()
    record(results, finish=True)
    return results


def flex_patterns(out: Path, seed: int, left: Any, *, device: str = "cuda",
                  dtypes: tuple[torch.dtype, ...] = (torch.bfloat16,),
                  real: list[str] | None = None) -> tuple[list, list[str]]:
    """Step c: ``flex`` on every built-in pattern, then the real-shape ones, while ``left()``
    (seconds of budget) allows. Returns the results and the patterns not run. Nothing raises:
    a crash becomes a failed result, so the stages before it keep what they measured."""
    from attnbench.variants.patterns import BUILTIN_PATTERNS, parse_pattern
    from attnbench.variants.registry import Case, get
    from attnbench.verify import runner
    from attnbench.verify.result import raised
    from attnbench.verify.results import open_results

    record = open_results(out, seed, force=True)
    results: list = []
    not_run: list[str] = []
    Hq, Hkv, N, S, D = FLEX_REAL_SHAPE  # module constant, read here (tests shrink it)
    steps = [(dtype, p, False) for dtype in dtypes for p in BUILTIN_PATTERNS]
    steps += [(dtype, parse_pattern(t), True) for dtype in dtypes
              for t in (FLEX_REAL if real is None else real)]
    for dtype, pattern, at_real_shape in steps:
        if left() < FLEX_STEP_S:
            not_run.append(f"flex {pattern.id}{' real shape' if at_real_shape else ''}")
            continue
        case = Case(B=1, Hq=Hq, Hkv=Hkv, N=N, S=S, D=D, dtype=dtype, device=device,
                    pattern=pattern, backward=True)
        try:
            if at_real_shape:
                found = runner.check_pattern_case(get("flex"), case, seed,
                                                  check="pattern_real_shape")
            else:
                found = runner.verify_attention(get("flex"), dtype, device, seed, ["pattern"],
                                                [pattern])
        except Exception as exc:  # recorded, never raised: the earlier stages stand
            found = [raised("pattern_real_shape" if at_real_shape else "pattern", "flex",
                            case, exc)]
        for r in found:
            r.extra["pattern"] = pattern.id
        results += found
        record(results)
        if device == "cuda":
            torch.cuda.empty_cache()
    record(results, finish=True)
    return results, not_run


def throughput(out: Path, selection: list[str]) -> int:
    """The gpu preset narrowed by `selection` (bench options), through the user's CLI."""
    from attnbench.cli import main

    return main(["bench", "--preset", "gpu", "--device", "cuda", "--out", str(out), "--force",
                 *selection])


def _ratio(frame: Any, variant: str, baseline: str, **where: Any) -> list[dict[str, Any]]:
    """Per case, variant TFLOP/s over baseline TFLOP/s from the same run."""
    import pandas as pd

    rows = frame[(frame.metric == "tflops") & (frame.status == "ok")]
    for key, value in where.items():
        rows = rows[value(rows[key])] if callable(value) else rows[rows[key] == value]
    keys = ["N", "D", "dtype", "causal", "mode", "Hq", "Hkv"]
    mine = rows[rows.variant == variant].set_index(keys).value
    base = rows[rows.variant == baseline].set_index(keys).value
    both = pd.concat({"mine": mine, "base": base}, axis=1).dropna()
    return [{**dict(zip(keys, idx, strict=True)), "ratio": float(r.mine / r.base)}
            for idx, r in both.iterrows()]


def targets(throughput_dir: Path) -> dict[str, Any]:
    """Step 3: the issue's targets, each a ratio measured within this one run."""
    import pandas as pd
    from attnbench.results import load_results

    df = load_results(throughput_dir)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    fwd = dict(dtype="bfloat16", D=128, mode="fwd", N=lambda n: n >= 4096)
    vs_flash_fwd = _ratio(df, "triton_flash", "sdpa_flash", **fwd)
    vs_cudnn_fwd = _ratio(df, "triton_flash", "sdpa_cudnn", **fwd)
    vs_flash_bwd = _ratio(df, "triton_flash", "sdpa_flash", dtype="bfloat16", D=128, mode="bwd")
    peak = df[(df.variant == "matmul_peak") & (df.dtype == "bfloat16") & (df.status == "ok")]
    mine = df[(df.variant == "triton_flash") & (df.metric == "tflops") & (df.status == "ok")
              & (df.dtype == "bfloat16") & (df.D == 128) & (df["mode"] == "fwd") & (df.N >= 4096)]
    peak_tflops = float(peak.value.iloc[0]) if len(peak) else None
    fits = df[(df.metric == "mem_exponent") & (df.variant == "triton_flash") & (df.status == "ok")]

    def worst(rows: list[dict[str, Any]]) -> float | None:
        return min(r["ratio"] for r in rows) if rows else None

    return {
        "fwd_vs_sdpa_flash_min": worst(vs_flash_fwd), "fwd_vs_sdpa_flash_target": 1.1,
        "fwd_vs_sdpa_cudnn_min": worst(vs_cudnn_fwd), "fwd_vs_sdpa_cudnn_target": 0.9,
        "fwd_fraction_of_bf16_matmul_min": (float(mine.value.min()) / peak_tflops
                                            if peak_tflops and len(mine) else None),
        "fwd_fraction_target": 0.5, "bf16_matmul_peak_tflops": peak_tflops,
        "bwd_vs_sdpa_flash_min": worst(vs_flash_bwd), "bwd_vs_sdpa_flash_target": 0.8,
        "triton_flash_mem_exponents": sorted(float(v) for v in fits.value),
        "per_case": {"fwd": vs_flash_fwd, "fwd_cudnn": vs_cudnn_fwd, "bwd": vs_flash_bwd},
    }


def write_summary(out: Path, results: list, numbers: dict[str, Any] | None,
                  seconds: float, stage: str = "full", not_run: list[str] | None = None) -> None:
    failed = [r for r in results if r.failed]
    ran = [r for r in results if r.status != "skipped"]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    lines = ["# GPU check", "", f"device: {device}, torch "
             f"{torch.__version__}, {seconds:.0f} s, last stage finished: {stage}", "",
             f"correctness: {len(ran) - len(failed)}/{len(ran)} checks passed "
             f"({len(results) - len(ran)} skipped)"]
    lines += [f"- not run (time budget): {step}" for step in not_run or []]
    lines += [f"- FAIL {r.variant} {r.check} {r.dtype} {r.case}: {r.message}" for r in failed]
    if numbers:
        lines += ["", "| target | measured | required |", "|---|---|---|"]
        for label, key, goal in (
                ("fwd bf16 D=128 N>=4096, min ratio vs sdpa_flash", "fwd_vs_sdpa_flash_min",
                 ">= 1.1"),
                ("fwd bf16 D=128 N>=4096, min ratio vs sdpa_cudnn", "fwd_vs_sdpa_cudnn_min",
                 ">= 0.9"),
                ("fwd bf16 D=128 N>=4096, min fraction of bf16 matmul",
                 "fwd_fraction_of_bf16_matmul_min", ">= 0.5"),
                ("bwd bf16 D=128, min ratio vs sdpa_flash", "bwd_vs_sdpa_flash_min", ">= 0.8")):
            value = numbers[key]
            lines.append(f"| {label} | {'not measured' if value is None else f'{value:.3f}'} "
                         f"| {goal} |")
        lines.append(f"| triton_flash memory exponents | {numbers['triton_flash_mem_exponents']}"
                     " | about 1 |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(
        {"failed": len(failed), "checks": len(ran), "targets": numbers, "seconds": seconds,
         "stage": stage, "not_run": not_run or []},
        indent=2, default=str) + "\n")
    print("\n".join(lines))


def run_stages(out: Path, seed: int, budget_s: float, smoke_only: bool = False) -> list:
    """Smoke, then the full steps while the budget lasts; the summary is rewritten after each
    stage. Returns every correctness result."""
    started = time.monotonic()

    def left() -> float:
        return budget_s - (time.monotonic() - started)

    def summarise(stage: str, bench_dirs: list[Path], not_run: list[str]) -> None:
        numbers = targets(bench_dirs[-1]) if bench_dirs else None
        write_summary(out, results, numbers, time.monotonic() - started, stage, not_run)
        from attnbench.cli import main as cli

        cli(["report", *map(str, verify_dirs + bench_dirs), "--out", str(out / "report")])

    results = correctness(out / "smoke" / "verify", seed, variants=("triton_flash",),
                          shapes=SMOKE_SHAPES, suite=False)
    verify_dirs = [out / "smoke" / "verify"]
    throughput(out / "smoke" / "throughput", SMOKE_BENCH)
    bench_dirs = [out / "smoke" / "throughput"]
    summarise("smoke", bench_dirs, [] if smoke_only else ["full throughput", "full verify"])
    if smoke_only:
        return results
    not_run = []
    # Estimated minimum times (s) to start a step: bf16 D=128 bench with autotuning, verify.
    if left() > 150:
        throughput(out / "throughput", FULL_BENCH)
        bench_dirs.append(out / "throughput")
    else:
        not_run.append("full throughput")
    if left() > 60:
        results += correctness(out / "verify", seed)
        verify_dirs.append(out / "verify")
    else:
        not_run.append("full verify")
    found, skipped = flex_patterns(out / "flex", seed, left)
    results += found
    not_run += skipped
    if found:
        verify_dirs.append(out / "flex")
    summarise("full", bench_dirs, not_run)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m attnbench.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/gpu", help="output directory")
    parser.add_argument("--smoke-only", action="store_true", help="the smoke stage only")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S,
                        help=f"seconds for the whole check (default {BUDGET_S}); full-stage "
                             "steps that cannot start in time are skipped and listed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    configure_triton()
    if not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device on this machine", file=sys.stderr)
        return 2
    import attnbench.variants  # noqa: F401  (registers the built-ins)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # a rerun replaces the previous check (--force)
    results = run_stages(out, args.seed, args.budget_s, args.smoke_only)
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
