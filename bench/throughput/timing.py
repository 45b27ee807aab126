"""Timing one callable: per-call samples in seconds, with a clock that survives a busy machine.

CPU: pytest-benchmark is the engine (its calibration picks loops per round so that a round is
long against the clock's resolution, and rounds from a time budget; its ``Stats`` give the
median and IQR). It is driven through ``BenchmarkFixture`` directly rather than from a pytest
session, because the benchmark runs as a CLI job with its own results format, per-case
subprocess isolation and resume. The clock is ``time.thread_time`` (CPU time of the calling
thread) when torch runs one thread: on these shared 2-core machines it moved about 5 % under
contention where wall time moved 1.5-4.8x (docs/methods.md, "Timing"). With more threads the
work runs on other threads too, so wall time (``perf_counter``) is the only honest clock.

CUDA: CUDA events around each call, with the L2 cache flushed before every call, the method of
``triton.testing.do_bench`` written out so it does not depend on Triton's API version.

Public API, reused by the regression gate to interleave A/B measurements:
    time_callable(fn, *, device, rounds=None, warmup=1, max_time=0.5, min_rounds=5) -> [s]
    summarize(samples) -> (median, iqr)
    cpu_clock(threads) -> (clock, name)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from pytest_benchmark.fixture import BenchmarkFixture
from pytest_benchmark.stats import Stats
from pytest_benchmark.utils import NameWrapper

L2_FLUSH_BYTES = 256 * 2**20  # larger than any current GPU's L2 cache (H200: 60 MiB)


@dataclass(frozen=True)
class TimingSettings:
    """How long to measure one case. ``max_time`` is the budget of the measured rounds."""

    max_time: float = 0.5
    min_rounds: int = 5
    warmup: int = 1

    def __post_init__(self) -> None:
        if not (self.max_time > 0 and self.min_rounds >= 1 and self.warmup >= 0):
            raise ValueError(f"timing: expected max_time > 0, min_rounds >= 1, warmup >= 0; "
                             f"got {self}")


def cpu_clock(threads: int) -> tuple[Callable[[], float], str]:
    """The CPU clock for a thread count (see the module docstring for why)."""
    if threads == 1:
        return time.thread_time, "time.thread_time (CPU time of the calling thread)"
    return time.perf_counter, "time.perf_counter (wall time; torch uses several threads)"


class _QuietLogger:
    """The logger interface BenchmarkFixture calls; the CLI shows its own progress."""

    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    info = warning = debug


def _time_cpu(fn: Callable[[], Any], rounds: int | None, warmup: int, max_time: float,
              min_rounds: int, clock: Callable[[], float]) -> list[float]:
    collected: list[Any] = []
    fixture = BenchmarkFixture(
        SimpleNamespace(name="attnbench", nodeid="attnbench"), disable_gc=True,
        timer=NameWrapper(clock), min_rounds=min_rounds, min_time=2e-4, max_time=max_time,
        precision=None, confidence=None, warmup=warmup > 0, warmup_iterations=warmup,
        calibration_precision=10, add_stats=collected.append, logger=_QuietLogger(),
        warner=None, disabled=False, cprofile=False, cprofile_loops=None, cprofile_dump=None)
    if rounds is None:
        fixture(fn)
    else:
        fixture.pedantic(fn, rounds=rounds, warmup_rounds=warmup, iterations=1)
    return list(collected[0].stats.data)


def _time_cuda(fn: Callable[[], Any], rounds: int | None, warmup: int, max_time: float,
               min_rounds: int) -> list[float]:
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(3):
        fn()
    end.record()
    torch.cuda.synchronize()
    estimate = max(start.elapsed_time(end) / 3e3, 1e-6)  # seconds per call
    if rounds is None:
        rounds = min(max(min_rounds, math.ceil(max_time / estimate)), 1000)
    for _ in range(warmup):
        fn()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(rounds)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(rounds)]
    for s, e in zip(starts, ends, strict=True):
        flush.zero_()  # every call starts with a cold L2, as in triton.testing.do_bench
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends, strict=True)]


def time_callable(fn: Callable[[], Any], *, device: str = "cpu", rounds: int | None = None,
                  warmup: int = 1, max_time: float = 0.5, min_rounds: int = 5,
                  threads: int | None = None) -> list[float]:
    """Per-call durations in seconds, one sample per round.

    ``rounds=None`` lets the engine choose (at least ``min_rounds``, about ``max_time`` of
    measured time); a fixed ``rounds`` gives exactly that many samples, one call each (what an
    interleaved A/B measurement wants). ``threads`` picks the CPU clock (default: torch's
    current thread count).
    """
    if rounds is not None and rounds < 1:
        raise ValueError(f"time_callable: rounds must be >= 1 or None, got {rounds}")
    device_type = str(device).split(":")[0]
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"time_callable: device must be cpu or cuda, got {device!r}")
    if device_type == "cuda":
        return _time_cuda(fn, rounds, warmup, max_time, min_rounds)
    clock, _ = cpu_clock(torch.get_num_threads() if threads is None else threads)
    return _time_cpu(fn, rounds, warmup, max_time, min_rounds, clock)


def summarize(samples: list[float]) -> tuple[float, float]:
    """(median, interquartile range) of the samples, by pytest-benchmark's own statistics."""
    if not samples:
        raise ValueError("summarize: no samples")
    stats = Stats()
    stats.data = list(samples)
    return float(stats.median), float(stats.iqr)


def matmul_peak(dtype: torch.dtype, device: str, settings: TimingSettings
                ) -> tuple[float, list[float], int]:
    """The machine's attainable TFLOP/s for ``dtype``: a square matrix product, timed like a
    case, in this process (so with the same thread count). Returns (tflops, samples, n).

    The size grows until one product takes about 20 ms (CPU fp16 is ~100x slower than fp32,
    so one fixed size cannot fit every dtype); on CUDA it is fixed at 8192.
    """
    n = 8192 if torch.device(device).type == "cuda" else 256
    while True:
        a = torch.randn(n, n, dtype=dtype, device=device)
        b = torch.randn(n, n, dtype=dtype, device=device)
        c = torch.empty(n, n, dtype=dtype, device=device)
        if torch.device(device).type == "cuda" or n >= 2048:
            break
        clock, _ = cpu_clock(torch.get_num_threads())
        t0 = clock()
        torch.mm(a, b, out=c)
        if clock() - t0 >= 0.02:
            break
        n *= 2
    samples = time_callable(lambda: torch.mm(a, b, out=c), device=device,
                            warmup=settings.warmup, max_time=settings.max_time,
                            min_rounds=settings.min_rounds)
    median, _ = summarize(samples)
    return 2.0 * n**3 / median / 1e12, samples, n
