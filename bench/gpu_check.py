"""The prepared GPU check: is ``triton_flash`` right at real shapes, and how fast is it?

Runs on the GPU machine from the repository root with only its own packages (Python 3.12,
torch 2.11, triton 3.6; no nox, no network, no install):

    python3 -m attnbench.gpu_check --out results/gpu          # about 6-8 minutes on one H200
    python3 -m attnbench.gpu_check --out results/gpu --skip-bench   # correctness only (~1-2 min)

1. Correctness (suite "verify", ``OUT/verify``):
   - every check of ``attnbench verify`` (agreement, properties, adversarial inputs) on CUDA
     for ``triton_flash`` and ``sdpa_flash`` in bf16 and fp16 (small shapes, all code paths);
   - the tolerance rule against a float64 reference at real shapes: D 64 and 128, causal and
     not, MHA and GQA (Hq 16, Hkv 4), N = S = 2048, ragged N = S = 1000 and N != S (777 x 1500),
     on the output, the log-sum-exp and dq, dk, dv; odd head dims 40, 80, 256 at 513 x 1025.
   Longer lengths (N up to 16k) are judged in step 2 on sampled query rows (``error_ratio``).
2. Throughput and memory (suite "throughput", ``OUT/throughput``): ``attnbench bench --preset
   gpu`` (triton_flash vs sdpa_flash, sdpa_efficient, sdpa_cudnn, naive; fwd, bwd, fwd+bwd;
   B*N = 16k tokens; N 1k..16k), with the bf16 matmul peak measured in the same run.
3. ``OUT/summary.md`` and ``OUT/summary.json``: the issue's targets as measured ratios
   (forward bf16 D=128 N>=4096 vs sdpa_flash and vs the matmul peak, backward vs sdpa_flash,
   memory exponent), then ``attnbench report OUT/verify OUT/throughput --out OUT/report``.

Exit code: 0 when every correctness check passed, 1 otherwise, 2 without a CUDA device.
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


def correctness(out: Path, seed: int, *, device: str = "cuda", variants: tuple[str, ...] = VARIANTS,
                dtypes: tuple[torch.dtype, ...] = DTYPES,
                shapes: list[tuple[int, ...]] | None = None) -> list:
    """Step 1: every verification check, then the tolerance rule at real shapes.

    The keyword arguments exist so the test suite can run this same code on CPU at tiny shapes.
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


def throughput(out: Path) -> int:
    """Step 2: the gpu preset, through the same CLI a user runs."""
    from attnbench.cli import main

    return main(["bench", "--preset", "gpu", "--device", "cuda", "--out", str(out), "--force"])


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
    vs_flash_bwd = _ratio(df, "triton_flash", "sdpa_flash", dtype="bfloat16", D=128, mode="bwd")
    peak = df[(df.variant == "matmul_peak") & (df.dtype == "bfloat16") & (df.status == "ok")]
    mine = df[(df.variant == "triton_flash") & (df.metric == "tflops") & (df.status == "ok")
              & (df.dtype == "bfloat16") & (df.D == 128) & (df["mode"] == "fwd") & (df.N >= 4096)]
    peak_tflops = float(peak.value.iloc[0]) if len(peak) else None
    fits = df[(df.metric == "mem_exponent") & (df.variant == "triton_flash") & (df.status == "ok")]

    def worst(rows: list[dict[str, Any]]) -> float | None:
        return min(r["ratio"] for r in rows) if rows else None

    return {
        "fwd_vs_sdpa_flash_min": worst(vs_flash_fwd), "fwd_vs_sdpa_flash_target": 0.9,
        "fwd_fraction_of_bf16_matmul_min": (float(mine.value.min()) / peak_tflops
                                            if peak_tflops and len(mine) else None),
        "fwd_fraction_target": 0.5, "bf16_matmul_peak_tflops": peak_tflops,
        "bwd_vs_sdpa_flash_min": worst(vs_flash_bwd), "bwd_vs_sdpa_flash_target": 0.7,
        "triton_flash_mem_exponents": sorted(float(v) for v in fits.value),
        "per_case": {"fwd": vs_flash_fwd, "bwd": vs_flash_bwd},
    }


def write_summary(out: Path, results: list, numbers: dict[str, Any] | None,
                  seconds: float) -> None:
    failed = [r for r in results if r.failed]
    ran = [r for r in results if r.status != "skipped"]
    lines = ["# GPU check", "", f"device: {torch.cuda.get_device_name()}, torch "
             f"{torch.__version__}, {seconds:.0f} s", "",
             f"correctness: {len(ran) - len(failed)}/{len(ran)} checks passed "
             f"({len(results) - len(ran)} skipped)"]
    lines += [f"- FAIL {r.variant} {r.check} {r.dtype} {r.case}: {r.message}" for r in failed]
    if numbers:
        lines += ["", "| target | measured | required |", "|---|---|---|"]
        for label, key, goal in (
                ("fwd bf16 D=128 N>=4096, min ratio vs sdpa_flash", "fwd_vs_sdpa_flash_min",
                 ">= 0.9"),
                ("fwd bf16 D=128 N>=4096, min fraction of bf16 matmul",
                 "fwd_fraction_of_bf16_matmul_min", ">= 0.5"),
                ("bwd bf16 D=128, min ratio vs sdpa_flash", "bwd_vs_sdpa_flash_min", ">= 0.7")):
            value = numbers[key]
            lines.append(f"| {label} | {'not measured' if value is None else f'{value:.3f}'} "
                         f"| {goal} |")
        lines.append(f"| triton_flash memory exponents | {numbers['triton_flash_mem_exponents']}"
                     " | about 1 |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(
        {"failed": len(failed), "checks": len(ran), "targets": numbers, "seconds": seconds},
        indent=2, default=str) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m attnbench.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/gpu", help="output directory")
    parser.add_argument("--skip-bench", action="store_true", help="correctness only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    configure_triton()
    if not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device on this machine", file=sys.stderr)
        return 2
    import attnbench.variants  # noqa: F401  (registers the built-ins)

    out, started = Path(args.out), time.monotonic()
    out.mkdir(parents=True, exist_ok=True)  # a rerun replaces the previous check (--force)
    results = correctness(out / "verify", args.seed)
    numbers = None
    if not args.skip_bench:
        throughput(out / "throughput")
        numbers = targets(out / "throughput")
    write_summary(out, results, numbers, time.monotonic() - started)
    from attnbench.cli import main as cli

    dirs = [str(out / "verify")] + ([] if args.skip_bench else [str(out / "throughput")])
    cli(["report", *dirs, "--out", str(out / "report")])
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
