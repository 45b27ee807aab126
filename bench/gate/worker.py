"""One side of the gate: a subprocess that imports ``variants`` and ``kernels`` from one tree and
answers measurement requests over stdin/stdout, one JSON object per line.

    python -m attnbench.gate.worker TREE [--plugin MODULE ...]

Why a process per side: both trees define the same module names, so they cannot share one
interpreter, yet their timings must come from one job, interleaved (A B B A ...), or machine
noise swamps the difference. The driver (``attnbench.gate.measure``) keeps one worker per side
alive and alternates requests between them; only one side computes at any moment.

The measuring code (this module, the timer, the reference) always comes from the driver's
tree, already imported before the side's tree is put first on ``sys.path``: both sides are
measured by the same instrument.

Requests (``op`` plus arguments) and answers:
    hello                          -> root, torch, variants {name: {timeable, why}}
    prepare key variant case mode  -> ok; or ok=false with reason (unsupported) or raised
    calibrate key target_s         -> inner: calls per sample for about target_s CPU seconds
    time key inner                 -> seconds: CPU seconds per call, mean over inner calls
    memory key                     -> peak_bytes: allocator-level peak above the inputs
    verify key                     -> passed, error_ratio, bound, reason
    verify_suite variant dtype device -> checks: the verification suite's outcomes
    exit
Every answer has ``ok``; a failed request answers ok=false with ``error`` instead of dying.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from attnbench.runtime import configure_triton

MODES = ("fwd", "fwd+bwd")
SEED = 1234  # both sides get the same inputs


SIDE_PACKAGES = ("kernels", "variants")  # kernels first: variants import them


def enter_tree(root: Path) -> None:
    """Make ``attnbench.variants`` and ``attnbench.kernels`` the side's own folders, with
    nothing of theirs already imported from elsewhere. A tree from before the ``attnbench``
    namespace (its variants import ``variants.registry``) is put first on ``sys.path``."""
    for name in list(sys.modules):
        top = name.split(".")
        if top[0] in SIDE_PACKAGES or (top[0] == "attnbench" and top[1:2] and
                                       top[1] in SIDE_PACKAGES):
            del sys.modules[name]
    if "attnbench" not in (root / "variants" / "registry.py").read_text(errors="replace") and \
            "from variants." in (root / "variants" / "__init__.py").read_text(errors="replace"):
        sys.path.insert(0, str(root))  # the old layout
        return
    import attnbench

    for sub in SIDE_PACKAGES:
        if not (root / sub / "__init__.py").is_file():  # e.g. a tree without kernels yet
            continue
        spec = importlib.util.spec_from_file_location(
            f"attnbench.{sub}", root / sub / "__init__.py",
            submodule_search_locations=[str(root / sub)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        setattr(attnbench, sub, module)
        spec.loader.exec_module(module)


def load_side_variants(root: Path, plugins: list[str]) -> Any:
    """Import the side's registry and plugins; returns its registry module."""
    registry = next((importlib.import_module(f"{pkg}.registry")
                     for pkg in ("attnbench.variants", "variants")
                     if pkg in sys.modules), None)
    if registry is None:  # the old layout: import it from the tree now first on sys.path
        registry = importlib.import_module("variants.registry")
    where = Path(registry.__file__).resolve()
    if root.resolve() not in where.parents:
        raise RuntimeError(f"variants imported from {where}, expected under {root}")
    try:  # the side's own plugin loader
        load_plugins = importlib.import_module(registry.__package__ + ".plugins").load_plugins
    except ImportError:  # an older tree without plugin support: import the modules directly
        for module in plugins:
            importlib.import_module(module)
    else:
        load_plugins(plugins)
    return registry


# ---- the instrument: the throughput benchmark's clock and memory tracker, our yardstick -----

def time_calls(fn: Callable[[], Any], inner: int, device: str) -> float:
    """Seconds per call, averaged over ``inner`` back-to-back calls: one interleaved sample.

    ``attnbench.throughput.timing.time_callable``: on CPU with one thread the thread's CPU time
    (it moved ~5 % under contention where wall time moved 1.5-4.8x, docs/methods.md, "Timing"),
    on CUDA events around each call. Imported here, after the side's tree is in place, because
    the throughput package imports the registry.
    """
    from attnbench.throughput.timing import time_callable

    samples = time_callable(fn, device=device, rounds=inner, warmup=0)
    return sum(samples) / len(samples)


def peak_bytes(fn: Callable[[], Any], device: str) -> int:
    """Peak bytes allocated during one call above what existed before it: memray at the
    allocator level on CPU, the caching allocator's peak on CUDA."""
    from attnbench.throughput.memory import peak_memory_bytes

    peak, _ = peak_memory_bytes(fn, device)
    return peak


# ---- one prepared case ----------------------------------------------------------------------

@dataclass
class Prepared:
    variant: Any  # the side's registry Variant
    case: Any  # the side's registry Case (backward set for fwd+bwd)
    fn: Callable[[], Any]  # the benchmark's timed call (``throughput.cases.make_call``)
    mode: str
    device: str

    def call(self) -> Any:
        return self.fn()


def prepare(registry: Any, name: str, case: dict[str, Any], mode: str) -> Prepared | str:
    """The benchmark's call for one case (``attnbench.throughput.cases.make_call``: the same
    inputs, seeded, and the same timed work as ``attnbench bench``) on the side's variant; a
    string is the reason the side cannot run it."""
    if mode not in MODES:
        return f"mode: expected one of {MODES}, got {mode!r}"
    try:
        variant = registry.get(name)
    except KeyError:
        return f"variant {name!r} is not registered in this tree"
    dtype = registry.parse_dtype(case["dtype"])
    try:
        registry_case = registry.Case(
            B=case["B"], Hq=case["Hq"], Hkv=case["Hkv"], N=case["N"], D=case["D"], dtype=dtype,
            device=case["device"], causal=case["causal"], backward=mode != "fwd")
    except TypeError as exc:  # an older tree's Case without one of these fields
        return f"this tree's Case cannot describe the case ({exc})"
    reasons = registry.not_supported_reasons(variant, registry_case)
    if reasons:
        return "; ".join(reasons)
    from attnbench.throughput.cases import BenchCase, make_call

    bench_case = BenchCase(kind="attention", attention=name, B=case["B"], Hq=case["Hq"],
                           Hkv=case["Hkv"], N=case["N"], S=case["N"], D=case["D"],
                           Dv=case["D"], dtype=str(dtype).removeprefix("torch."),
                           causal=case["causal"], mode=mode, device=case["device"])
    prepared = Prepared(variant, registry_case, make_call(bench_case, SEED, variant), mode,
                        case["device"])
    prepared.call()  # warm-up; raises here rather than in the middle of a measurement
    return prepared


def verify(p: Prepared) -> dict[str, Any]:
    """The verification suite's agreement check (``attnbench.verify.agreement.check_agreement``:
    float64 reference, the FlashAttention tolerance rule, declared masked-row semantics) on
    the output, and for fwd+bwd also on the gradients. Returns the worst error ratio against
    its bound. (It builds its yardstick from this side's ``variants.common`` and ``naive``.)"""
    from dataclasses import replace

    from attnbench.verify.agreement import check_agreement

    cases = [replace(p.case, backward=False)] + ([p.case] if p.mode != "fwd" else [])
    ran = [r for r in (check_agreement(p.variant, c) for c in cases) if r.status != "skipped"]
    if not ran:
        return {"passed": True, "error_ratio": None, "bound": None, "reason": "not checked"}

    def closeness(r: Any) -> float:
        if r.failed:
            return math.inf
        return (r.value or 0.0) / r.bound if r.bound and math.isfinite(r.bound) else 0.0

    worst = max(ran, key=closeness)
    return {"passed": not any(r.failed for r in ran), "error_ratio": _finite(worst.value),
            "bound": _finite(worst.bound), "reason": "; ".join(r.message for r in ran if r.failed)}


def verify_suite(registry: Any, name: str, dtype: str, device: str) -> dict[str, Any]:
    """Every check of the verification suite (``attnbench.verify.runner.verify_attention``) on one
    variant; skipped checks are left out. ``unavailable`` when the suite cannot be imported."""
    try:
        from attnbench.verify.runner import verify_attention
    except ImportError as exc:
        return {"unavailable": f"the verification suite cannot be imported ({exc})"}
    results = verify_attention(registry.get(name), registry.parse_dtype(dtype), device)
    return {"checks": [{"check": r.check, "case": r.case, "direction": r.direction,
                        "passed": not r.failed, "value": _finite(r.value),
                        "bound": _finite(r.bound), "message": r.message}
                       for r in results if r.status != "skipped"]}


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _untimeable_reason(variant: Any) -> str | None:
    """What the side's registration declares; a tree from before registrations declared it
    (no ``untimeable_reason``) gets that era's rule: Triton variants are interpreted under
    TRITON_INTERPRET=1."""
    if hasattr(variant, "untimeable_reason"):
        return variant.untimeable_reason()
    if "triton" in variant.caps.requires and os.environ.get("TRITON_INTERPRET") == "1":
        return ("runs in the Triton interpreter here: timing and memory would measure the "
                "interpreter")
    return None


# ---- the request loop ------------------------------------------------------------------------

class Side:
    """The state of one worker: the side's registry and the prepared cases."""

    def __init__(self, root: Path, plugins: list[str]) -> None:
        self.root = root
        self.registry = load_side_variants(root, plugins)
        self.cases: dict[str, Prepared] = {}

    def hello(self) -> dict[str, Any]:
        found = {}
        for v in self.registry.list_variants("attention"):
            why = _untimeable_reason(v)
            found[v.name] = {"timeable": not why, "why": why or ""}
        return {"root": str(self.root), "torch": torch.__version__, "variants": found}

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "hello":
            return self.hello()
        if op == "verify_suite":
            return verify_suite(self.registry, req["variant"], req["dtype"], req["device"])
        if op == "prepare":
            try:
                got = prepare(self.registry, req["variant"], req["case"], req["mode"])
            except Exception as exc:  # raised on its first call: a correctness failure
                return {"ok": False, "raised": f"{type(exc).__name__}: {exc}"}
            if isinstance(got, str):
                return {"ok": False, "reason": got}
            self.cases[req["key"]] = got
            return {}
        p = self.cases[req["key"]]
        if op == "calibrate":
            inner, spent = 1, time_calls(p.call, 1, p.device)
            while spent * inner < req["target_s"] and inner < 10_000:
                inner *= 2
            return {"inner": inner}
        if op == "time":
            return {"seconds": time_calls(p.call, int(req["inner"]), p.device)}
        if op == "memory":  # the smaller of two: the first call after others may carry slack
            return {"peak_bytes": min(peak_bytes(p.call, p.device) for _ in range(2))}
        if op == "verify":
            return verify(p)
        raise ValueError(f"unknown request op {op!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnbench.gate.worker")
    parser.add_argument("root", type=Path)
    parser.add_argument("--plugin", action="append", default=[])
    args = parser.parse_args(argv)
    # Answers go to a private copy of stdout; anything printed (by variants, warnings, C code)
    # goes to stderr instead of corrupting the protocol.
    answers = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    configure_triton()
    torch.set_num_threads(1)
    try:
        enter_tree(args.root.resolve())
        side = Side(args.root.resolve(), args.plugin)
    except Exception as exc:
        answers.write(json.dumps({"ok": False, "fatal": True,
                                  "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        return 2
    answers.write(json.dumps({"ok": True, "ready": True}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("op") == "exit":
            break
        try:
            answer = {"ok": True, **side.handle(req)}
        except Exception as exc:  # one bad case must not end the other cases' measurements
            where = traceback.extract_tb(exc.__traceback__)[-1]
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc} "
                                            f"(at {where.filename}:{where.lineno})"}
        answers.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
