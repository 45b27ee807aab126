"""Measure one case in this process: the function the worker runs and the gate can reuse.

Order matters: the first call checks the result (raises on NaN/inf, so a broken variant gives
an error row instead of a fast wrong number) and warms up lazy initialisation; then accuracy;
then peak memory on a warm call (first-call caches would otherwise count as the variant's
memory); then timing. A memory-only case (the scaling sweep, large N) makes one call: the
tracked one, checked afterwards; the worker has usually run the variant before, so its
caches are warm.
"""

from __future__ import annotations

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
from attnbench.variants.registry import parse_dtype


class CaseFailure(RuntimeError):
    """The variant ran but its result is unusable (NaN or inf where none can occur)."""


@dataclass
class Measurement:
    """Metric values with units, metrics skipped with a reason, raw samples, extra columns."""

    values: dict[str, tuple[float, str]] = field(default_factory=dict)
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
    """Record samples, median, IQR and count (and TFLOP/s); returns the median."""
    median, iqr = summarize(samples)
    m.samples["time_s"] = samples
    m.values.update(time_median_s=(median, "s"), time_iqr_s=(iqr, "s"),
                    time_n=(float(len(samples)), ""))
    if flops is not None:
        m.values.update(flops=(flops, "FLOP"), tflops=(flops / median / 1e12, "TFLOP/s"))
    return median


def measure_attention(case: BenchCase, settings: TimingSettings, seed: int) -> Measurement:
    from attnbench.throughput.accuracy import error_ratio
    from attnbench.throughput.memory import memory_unavailable_reason, peak_memory_bytes

    m = Measurement()
    call = make_call(case, seed)
    what = "output" if case.mode == "fwd" else "gradients"
    if case.measure == "memory":  # one call: measured, then checked
        why = memory_unavailable_reason(case.device)
        if why:
            raise RuntimeError(why)
        peak, result = peak_memory_bytes(call, case.device)
        check_finite(result, what)
        m.values["mem_peak_bytes"] = (float(peak), "B")
    else:
        result = call()
        check_finite(result, what)
        acc = error_ratio(case, result if case.mode == "fwd" else result[0], seed)
        m.values["error_ratio"] = (float(acc["error_ratio"]), "")
        m.columns.update(checked=acc["checked"], error=acc["error"], error_pt=acc["error_pt"])
    del result
    if case.measure == "full":
        why = memory_unavailable_reason(case.device)
        if why:
            m.skipped["mem_peak_bytes"] = why
        else:  # on a warm call: first-call caches are not the variant's memory
            m.values["mem_peak_bytes"] = (float(peak_memory_bytes(call, case.device)[0]), "B")
    if case.measure in ("full", "memory"):
        model = attention_memory_bytes(case)
        if model is not None:
            m.values["mem_model_bytes"] = (float(model), "B")
        else:
            m.skipped["mem_model_bytes"] = no_memory_model_reason(case) or "no model"
    if case.measure == "full":
        samples = time_callable(call, device=case.device, warmup=settings.warmup,
                                max_time=settings.max_time, min_rounds=settings.min_rounds)
        add_timing(m, samples, attention_flops(case))
    return m


def measure_case(case: BenchCase, settings: TimingSettings | None = None, seed: int = 0
                 ) -> Measurement:
    """Everything the throughput table reports for one case, measured here and now.

    Raises whatever the variant raises (the runner turns it into an error row); CaseFailure
    when the result is not finite.
    """
    settings = settings or TimingSettings()
    if case.kind == "block":
        from attnbench.throughput.blocks import measure_block

        return measure_block(case, settings, seed)
    return measure_attention(case, settings, seed)


def measure_peak(device: str, dtype: str, settings: TimingSettings) -> Measurement:
    """The matrix-product peak for one dtype on one device (the ``matmul_peak`` row)."""
    tflops, samples, n = matmul_peak(parse_dtype(dtype), device, settings)
    return Measurement(values={"peak_tflops": (tflops, "TFLOP/s")},
                       samples={"time_s": samples}, columns={"matmul_n": n})
