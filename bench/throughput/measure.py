"""Measure one case in this process: the function the worker runs and the gate can reuse.

Order matters: the first call checks the result (raises on NaN/inf, so a broken variant gives
an error row instead of a fast wrong number) and warms up lazy initialisation; then accuracy;
then peak memory on a warm call (first-call caches would otherwise count as the variant's
memory); a variant that compiles (it keeps a ``compile_log``) also gets ``compile_s`` from
that first call, so compilation is reported apart and never timed; then, unless
``timed=False``, timing in this one process. The benchmark runner passes ``timed=False`` and
times the case separately, replicated over worker processes and
interleaved with the other variants of its shape (``throughput.replicate``). A memory-only
case (the scaling sweep, large N) makes one call: the tracked one, checked afterwards; the
worker has usually run the variant before, so its caches are warm.

Metric names and units are those of ``attnbench.metrics``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from attnbench.throughput.cases import BenchCase, make_call
from attnbench.throughput.models import (
    attention_flops,
    attention_memory_bytes,
    no_memory_model_reason,
)
from attnbench.throughput.timing import TimingSettings, matmul_peak, summarize, time_callable
from attnbench.variants.patterns import support
from attnbench.variants.registry import get, parse_dtype


class CaseFailure(RuntimeError):
    """The variant ran but its result is unusable (NaN or inf where none can occur)."""


@dataclass
class Measurement:
    """Metric values (units: ``attnbench.metrics``), metrics skipped with a reason, raw samples,
    extra columns."""

    values: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    columns: dict[str, Any] = field(default_factory=dict)


def check_finite(result: Any, what: str) -> None:
    """Raise CaseFailure if any tensor in ``result`` has NaN or inf."""
    tensors = result if isinstance(result, tuple | list) else (result,)
    for i, t in enumerate(tensors):
        if isinstance(t, torch.Tensor) and not torch.isfinite(t).all():
            name = what if len(tensors) == 1 else f"{what}[{i}]"
            raise CaseFailure(f"{name} contains NaN or inf")


def add_timing(m: Measurement, samples: list[float], flops: float | None) -> float:
    """Record one process's samples, median, IQR and count (and TFLOP/s); returns the median."""
    median, iqr = summarize(samples)
    m.samples["time_s"] = samples
    m.values.update(time_median_s=median, time_iqr_s=iqr, time_n=float(len(samples)))
    if flops is not None:
        m.values.update(flops=flops, tflops=flops / median / 1e12)
    return median


COMPILE_WARM_CALLS = 3  # warm calls whose median is subtracted from the first call


def _synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def wall_seconds(call: Callable[[], Any], device: str) -> float:
    """Wall seconds of one call (CUDA: synchronised)."""
    _synchronize(device)
    started = time.perf_counter()
    call()
    _synchronize(device)
    return time.perf_counter() - started


def compile_seconds(call: Callable[[], Any], device: str, first_s: float) -> float:
    """``compile_s``: the first call's wall seconds (as the variant logged them) minus the
    median of COMPILE_WARM_CALLS warm calls: what compiling added. Wall time, because
    compilation runs on every core and the user waits for all of it."""
    warm = [wall_seconds(call, device) for _ in range(COMPILE_WARM_CALLS)]
    return max(first_s - statistics.median(warm), 0.0)


def compile_log(case: BenchCase) -> Callable[[], dict[str, float]] | None:
    """The variant's compile log, when its module keeps one (``compile_log() -> {problem:
    first-call seconds}``, as ``variants/flex.py`` does): the mark of a variant that compiles."""
    if case.kind != "attention":
        return None
    module = sys.modules.get(getattr(get(case.attention).fn, "__module__", ""))
    log = getattr(module, "compile_log", None)
    return log if callable(log) else None


def measure_attention(case: BenchCase, settings: TimingSettings, seed: int,
                      timed: bool = True) -> Measurement:
    from attnbench.throughput.accuracy import sampled_error_ratio
    from attnbench.throughput.memory import memory_unavailable_reason, peak_memory_bytes

    m = Measurement()
    call = make_call(case, seed)
    if case.pattern:  # how the variant ran the pattern: "native" or "dense_mask"
        caps = get(case.attention).caps.on(torch.device(case.device).type)
        m.columns["pattern_via"] = support(caps, case.attention_pattern)
    what = "output" if case.mode == "fwd" else "gradients"
    if case.measure == "memory":  # one call: measured, then checked
        why = memory_unavailable_reason(case.device)
        if why:
            raise RuntimeError(why)
        peak, result = peak_memory_bytes(call, case.device)
        check_finite(result, what)
        m.values["mem_peak_bytes"] = float(peak)
    else:
        log = compile_log(case)
        logged = set(log()) if log else set()
        result = call()  # the first call: compiles a compiling variant's new problem
        check_finite(result, what)
        if log is not None:  # its compile cost, apart from run time (timed after warm-up)
            first_s = sum(s for k, s in log().items() if k not in logged)
            m.values["compile_s"] = compile_seconds(call, case.device, first_s) \
                if first_s else 0.0  # compiled earlier in this worker: nothing to pay
        acc = sampled_error_ratio(case, result if case.mode == "fwd" else result[0], seed)
        m.values["sampled_error_ratio"] = float(acc["sampled_error_ratio"])
        m.columns.update(checked=acc["checked"], error=acc["error"], error_pt=acc["error_pt"])
    del result
    if case.measure == "full":
        why = memory_unavailable_reason(case.device)
        if why:
            m.skipped["mem_peak_bytes"] = why
        else:  # on a warm call: first-call caches are not the variant's memory
            m.values["mem_peak_bytes"] = float(peak_memory_bytes(call, case.device)[0])
    if case.measure in ("full", "memory"):
        model = attention_memory_bytes(case)
        if model is not None:
            m.values["mem_model_bytes"] = float(model)
        else:
            m.skipped["mem_model_bytes"] = no_memory_model_reason(case) or "no model"
    if case.measure == "full":
        m.values["flops"] = attention_flops(case)
    if case.measure == "full" and timed:
        samples = time_callable(call, device=case.device, warmup=settings.warmup,
                                max_time=settings.max_time, min_rounds=settings.min_rounds)
        add_timing(m, samples, attention_flops(case))
    return m


def measure_case(case: BenchCase, settings: TimingSettings | None = None, seed: int = 0,
                 timed: bool = True) -> Measurement:
    """Everything the throughput table reports for one case, measured here and now (without
    the time metrics when ``timed`` is False).

    Raises whatever the variant raises (the runner turns it into an error row); CaseFailure
    when the result is not finite.
    """
    settings = settings or TimingSettings()
    if case.kind == "block":
        from attnbench.throughput.blocks import measure_block

        return measure_block(case, settings, seed, timed)
    return measure_attention(case, settings, seed, timed)


def measure_peak(device: str, dtype: str, settings: TimingSettings) -> Measurement:
    """The matrix-product peak for one dtype on one device (the ``matmul_peak`` row)."""
    tflops, samples, n = matmul_peak(parse_dtype(dtype), device, settings)
    return Measurement(values={"peak_tflops": tflops},
                       samples={"time_s": samples}, columns={"matmul_n": n})
