"""Compile report: every Triton kernel at every autotune config, built for a GPU without a GPU.

Triton compiles ahead of time for a target (``triton.compile`` with ``GPUTarget("cuda", 90,
32)``) on any machine, and its wheel ships ``ptxas`` and ``nvdisasm``. This module builds the
forward, dK/dV, dQ and delta-preprocessing kernels of ``kernels/`` for sm_80 / sm_90, for each
(dtype, head dim, causal) and each autotune config the kernel's own pruning keeps for that
target, and reads off what decides speed before anything runs:

- registers, spill store / load bytes and stack frame (ptxas -v, the log of Triton's own call);
- shared memory (Triton's metadata), an error above the device's per-block limit;
- tensor-core instructions in the PTX (``wgmma.mma_async`` on sm_90, ``mma.sync`` on sm_80);
- main-loop SASS instructions: the largest innermost loop (a backward branch) of the cubin.

The specialisation is the one a real launch gets: the arguments are built by the kernels' own
launch functions from real (CPU, never touched) tensors of shape B=2, H=16, N=S=4096, and bound
by Triton's argument binder, which adds the stride == 1 and divisible-by-16 hints.

Kernels must be imported with TRITON_INTERPRET unset (the jit decorators read it), while the CLI
sets it on a CPU machine; so the report runs in a fresh Python process (``run_report``), whose
workers compile in parallel.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ARCHS = {"sm_80": 80, "sm_90": 90}
DTYPES = ("bfloat16", "float16")
HEAD_DIMS = (64, 128, 256)  # 256: the largest head dim the kernels support
KERNELS = ("fwd", "dkdv", "dq", "preprocess")
SHAPE = dict(B=2, H=16, N=4096)  # the shape whose specialisation is compiled
SCHEMA = "attnbench-kernels/1"


@dataclass(frozen=True)
class Spec:
    """One compilation: a kernel at one config for one target and problem kind."""

    kernel: str
    arch: int
    dtype: str
    head_dim: int
    causal: bool
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int

    @property
    def config(self) -> str:
        return f"{self.block_m}x{self.block_n}w{self.num_warps}s{self.num_stages}"


def _clean_env() -> None:
    """Worker start: compiled (not interpreted) kernels, and Triton 3.6's default FP fusion."""
    os.environ.pop("TRITON_INTERPRET", None)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")


def _launches(dtype: str, head_dim: int, causal: bool, arch: int) -> dict[str, tuple]:
    """(kernel object, args, kwargs) per kernel, from the launch functions of kernels/."""
    import torch
    from attnbench.kernels import flash_bwd, flash_fwd

    dt = getattr(torch, dtype)
    B, H, N = SHAPE["B"], SHAPE["H"], SHAPE["N"]
    q, k, v, out, do, dq, dk, dv = (torch.empty(B, H, N, head_dim, dtype=dt) for _ in range(8))
    lse, delta = torch.empty(B, H, N), torch.empty(B, H, N)  # (B, H, N) float32
    scale = head_dim ** -0.5
    _, args, kwargs = flash_fwd.fwd_launch(q, k, v, out, lse, causal, scale, arch=arch)
    launches = {"fwd": (flash_fwd._fwd_kernel, args, kwargs)}
    for name, (_, args, kwargs) in flash_bwd.bwd_launches(
            do, q, k, v, out, lse, delta, dq, dk, dv, causal, scale).items():
        launches[name] = (flash_bwd.KERNELS[name], args, kwargs)
    return launches


def plan(archs: list[int], dtypes: tuple[str, ...] = DTYPES,
         head_dims: tuple[int, ...] = HEAD_DIMS, causals: tuple[bool, ...] = (False, True),
         kernels: tuple[str, ...] = KERNELS) -> list[Spec]:
    """Every (kernel, config) the autotuner may try on each target: the kernel's configs
    pruned by its own kept_configs(), exactly as a launch on that device prunes them."""
    from attnbench.kernels.flash_fwd import block_dim, kept_configs

    specs = []
    for arch in archs:
        for dtype in dtypes:
            elem = 2 if dtype in ("bfloat16", "float16") else 4
            for d in head_dims:
                for causal in causals:
                    for name, (kernel, _, kwargs) in _launches(dtype, d, causal, arch).items():
                        if name not in kernels:
                            continue
                        if name == "preprocess":  # not autotuned: one fixed tile
                            configs = [(kwargs["BLOCK_M"], 0, 4, 3)]
                        else:
                            kept = kept_configs(name, kernel.configs, arch=arch,
                                                causal=causal, block_d=block_dim(d),
                                                block_dv=block_dim(d), elem=elem)
                            configs = [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps,
                                        c.num_stages) for c in kept]
                        specs += [Spec(name, arch, dtype, d, causal, *c) for c in configs]
    return specs


# The main loop is the first innermost loop longer than this, in code order: the unmasked key
# loop (the masked one for the ragged end / diagonal band follows it); the 2-instruction loops
# before it are barrier waits.
MIN_LOOP = 16


def sass_loops(sass: str) -> list[int]:
    """Instruction counts of the innermost loops (label ... backward branch to it) of nvdisasm
    output in code order; one-instruction loops (the trap ending a kernel) are left out."""
    labels: dict[str, int] = {}
    loops = []
    n = 0
    for line in sass.splitlines():
        if m := re.match(r"^(\.L_x_\d+):", line):
            labels[m.group(1)] = n
            continue
        if not re.match(r"^\s*/\*[0-9a-f]+\*/", line):
            continue
        branch = re.search(r"BRA\s+`?\(?(\.L_x_\d+)", line)
        if branch and branch.group(1) in labels and labels[branch.group(1)] <= n:
            loops.append((labels[branch.group(1)], n))
        n += 1
    inner = [(a, b) for a, b in loops
             if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in loops)]
    return [b - a + 1 for a, b in sorted(inner) if b > a]


def ptxas_usage(log: str) -> dict[str, int]:
    """Registers, spill bytes and stack frame from ptxas -v output."""
    regs = re.search(r"Used (\d+) registers", log)
    frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill "
                      r"loads", log)
    if not regs or not frame:
        raise ValueError(f"unexpected ptxas output: {log[-300:]!r}")
    return {"registers": int(regs.group(1)), "stack": int(frame.group(1)),
            "spill_stores": int(frame.group(2)), "spill_loads": int(frame.group(3))}


def compile_spec(spec: Spec) -> dict[str, Any]:
    """Compile one spec for its target and measure it; errors become status "error"."""
    _clean_env()
    import triton
    from attnbench.kernels.flash_fwd import SHARED_LIMIT
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.compiler.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    row: dict[str, Any] = {**asdict(spec), "config": spec.config, "status": "ok"}
    started = time.perf_counter()
    try:
        target = GPUTarget("cuda", spec.arch, 32)
        backend = make_backend(target)
        kernel, args, kwargs = _launches(spec.dtype, spec.head_dim, spec.causal,
                                         spec.arch)[spec.kernel]
        fn = getattr(kernel, "fn", kernel)  # autotuned kernels wrap the JITFunction
        kwargs = {**kwargs, "num_warps": spec.num_warps, "num_stages": spec.num_stages}
        if spec.kernel != "preprocess":
            kwargs.update(BLOCK_M=spec.block_m, BLOCK_N=spec.block_n)
        binder = create_function_from_signature(fn.signature, fn.params, backend)
        bound, specialization, options = binder(*args, **kwargs)
        options, signature, constexprs, attrs = fn._pack_args(
            backend, kwargs, bound, specialization, options)
        knobs.nvidia.dump_ptxas_log = True  # Triton prints its own ptxas -v log ...
        knobs.compilation.always_compile = True  # ... only when it runs ptxas (no cache hit)
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(ASTSource(fn, signature, constexprs, attrs),
                                      target=target, options=options.__dict__)
        row.update(ptxas_usage(log.getvalue()))
        ptx = compiled.asm["ptx"]
        row["tensor_core"] = len(re.findall(r"^\s*(?:wgmma\.mma_async|mma\.sync)", ptx, re.M))
        row["shared"] = int(compiled.metadata.shared)
        row["shared_limit"] = SHARED_LIMIT[spec.arch]
        row["loops"] = sass_loops(_disassemble(compiled.asm["cubin"]))
        big = [n for n in row["loops"] if n > MIN_LOOP]
        row["main_loop"] = big[0] if big else 0
        row["tma"] = bool(kwargs.get("USE_TMA", False))
        if row["shared"] > row["shared_limit"]:
            row["status"] = "error"
            row["message"] = (f"shared memory {row['shared']} B > the device's "
                              f"{row['shared_limit']} B per block")
    except Exception as exc:  # a config that cannot compile is a finding, not a crash
        row["status"] = "error"
        lines = " | ".join(line.strip() for line in str(exc).strip().splitlines()[-4:])
        row["message"] = f"{type(exc).__name__}: {lines[:600]}"
    row["compile_s"] = round(time.perf_counter() - started, 2)
    return row


def _disassemble(cubin: bytes) -> str:
    import triton

    nvdisasm = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "nvdisasm"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([str(nvdisasm), "-c", f.name], capture_output=True, text=True,
                              check=True).stdout


def compile_all(specs: list[Spec], workers: int) -> list[dict[str, Any]]:
    """Compile specs in `workers` fresh processes; rows in the order of specs."""
    if workers <= 1:
        return [compile_spec(s) for s in specs]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                             initializer=_clean_env) as pool:
        return list(pool.map(compile_spec, specs))


def run_report(archs: list[str], *, dtypes: tuple[str, ...] = DTYPES,
               head_dims: tuple[int, ...] = HEAD_DIMS, kernels: tuple[str, ...] = KERNELS,
               workers: int | None = None, timeout: float = 3600,
               limit: int | None = None) -> dict[str, Any]:
    """The report as a dict (schema attnbench-kernels/1), computed in a fresh process without
    TRITON_INTERPRET, so it works whatever mode this process's kernels were imported in.
    limit: compile only the first `limit` planned configs (a quick check)."""
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        raise ValueError(f"--arch: expected some of {sorted(ARCHS)}, got {unknown}")
    request = {"archs": [ARCHS[a] for a in archs], "dtypes": list(dtypes),
               "head_dims": list(head_dims), "kernels": list(kernels),
               "workers": workers or min(4, os.cpu_count() or 1), "limit": limit}
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = str(Path(__file__).resolve().parent.parent)  # a plain checkout's root
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.json"
        proc = subprocess.run(
            [sys.executable, "-m", "attnbench.kernel_report", json.dumps(request), str(path)],
            env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"compile report process failed ({proc.returncode}): "
                               f"{proc.stderr.strip()[-2000:]}")
        return json.loads(path.read_text())


def _child(request: dict[str, Any], path: str) -> None:
    _clean_env()
    import triton
    from attnbench.provenance import collect_provenance

    from attnbench import kernel_report  # by name, so worker processes can unpickle it

    specs = kernel_report.plan(request["archs"], tuple(request["dtypes"]),
                               tuple(request["head_dims"]), kernels=tuple(request["kernels"])
                               )[:request["limit"]]
    started = time.perf_counter()
    rows = kernel_report.compile_all(specs, request["workers"])
    report = {"schema": SCHEMA, "triton": triton.__version__, "shape": SHAPE,
              "seconds": round(time.perf_counter() - started, 1), "rows": rows,
              "provenance": collect_provenance(argv=["attnbench", "kernels"])}
    Path(path).write_text(json.dumps(report, indent=1, default=str) + "\n")


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]), sys.argv[2])
