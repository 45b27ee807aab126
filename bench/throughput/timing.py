"""Timing one callable: per-call samples in seconds, with a clock that survives a busy machine.

CPU: a small timer of the project's own with pytest-benchmark's method and statistics. It
calibrates loops per round until one round is long against the clock's resolution (at least
``MIN_ROUND_S``), then runs rounds until ``max_time`` of measured time or ``min_rounds``,
whichever is more; a sample is one round's duration divided by its loops. ``summarize``
computes the median (``statistics.median``) and the interquartile range with the quartile
method pytest-benchmark's ``Stats`` uses (a test pins the two to each other). Why not
pytest-benchmark itself: its only public API is the ``benchmark`` fixture inside a pytest
session, and the benchmark runs as a CLI job with per-case subprocesses and resume; building
its internal ``BenchmarkFixture`` by hand (17 keyword arguments) can break on any release.

The CPU clock is ``time.thread_time`` (CPU time of the calling thread) when torch runs one
thread: on the project's shared 2-core machines it moved about 5 % under contention where wall
time moved 1.5-4.8x (docs/methods.md, "Timing"). With more threads the work runs on other
threads too, so wall time (``perf_counter``) is the only honest clock.

CUDA: CUDA events around each call, with the L2 cache flushed before every call, the method of
``triton.testing.do_bench`` written out so it does not depend on Triton's API version.

Public API, reused by the regression gate to interleave A/B measurements:
    time_callable(fn, *, device, rounds=None, warmup=1, max_time=0.5, min_rounds=5) -> [s]
    time_interleaved({key: fn}, ...) -> {key: [s]}: CPU, several callables round by round
    summarize(samples) -> (median, iqr)
    cpu_clock(threads) -> (clock, name)
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

L2_FLUSH_BYTES = 256 * 2**20  # larger than any current GPU's L2 cache (H200: 60 MiB)
MIN_ROUND_S = 2e-4  # a round shorter than this is dominated by the clock's granularity
MAX_ROUNDS = 10_000


@dataclass(frozen=True)
class TimingSettings:
    """How long to measure one case. ``max_time`` is the budget of the measured rounds in one
    process; ``processes`` is how many fresh worker processes measure every case (the
    reported time is the median of their medians); ``pin`` fixes every worker process to the
    same ``threads`` CPUs (``pinned_cpus``) so the scheduler cannot move a measurement from a
    warm core to a cold one half-way."""

    max_time: float = 0.5
    min_rounds: int = 5
    warmup: int = 1
    processes: int = 3
    pin: bool = False

    def __post_init__(self) -> None:
        if not (self.max_time > 0 and self.min_rounds >= 1 and self.warmup >= 0
                and self.processes >= 1):
            raise ValueError(f"timing: expected max_time > 0, min_rounds >= 1, warmup >= 0, "
                             f"processes >= 1; got {self}")


def pinned_cpus(threads: int) -> tuple[int, ...] | None:
    """The CPUs a pinned worker runs on: the last ``threads`` CPUs this process may use (the
    first ones are where the kernel and idle processes tend to land), or None where pinning is
    impossible (not Linux, or fewer usable CPUs than threads)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return tuple(allowed[-threads:]) if len(allowed) >= threads else None


def cpu_clock(threads: int) -> tuple[Callable[[], float], str]:
    """The CPU clock for a thread count (see the module docstring for why)."""
    if threads == 1:
        return time.thread_time, "time.thread_time (CPU time of the calling thread)"
    return time.perf_counter, "time.perf_counter (wall time; torch uses several threads)"


def _round(fn: Callable[[], Any], loops: int, clock: Callable[[], float]) -> float:
    start = clock()
    for _ in range(loops):
        fn()
    return clock() - start


def _calibrate(fn: Callable[[], Any], clock: Callable[[], float]) -> tuple[int, float]:
    """Loops per round so that one round lasts at least MIN_ROUND_S (pytest-benchmark's
    coarse estimate), and that round's duration."""
    loops, duration = 1, _round(fn, 1, clock)
    while duration < MIN_ROUND_S:
        loops = max(loops * 2, math.ceil(MIN_ROUND_S * loops / max(duration, 1e-9)))
        duration = _round(fn, loops, clock)
    return loops, duration


def _rounds(duration: float, max_time: float, min_rounds: int) -> int:
    return min(max(min_rounds, math.ceil(max_time / duration)), MAX_ROUNDS)


def _time_cpu(fn: Callable[[], Any], rounds: int | None, warmup: int, max_time: float,
              min_rounds: int, clock: Callable[[], float]) -> list[float]:
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a round is the collector's time, not the call's
    try:
        for _ in range(warmup):
            fn()
        if rounds is not None:  # exactly ``rounds`` samples of one call each
            return [_round(fn, 1, clock) for _ in range(rounds)]
        loops, duration = _calibrate(fn, clock)
        count = _rounds(duration, max_time, min_rounds)
        return [_round(fn, loops, clock) / loops for _ in range(count)]
    finally:
        if gc_was_enabled:
            gc.enable()


def time_interleaved(calls: dict[str, Callable[[], Any]], *, warmup: int = 1,
                     max_time: float = 0.5, min_rounds: int = 5, threads: int | None = None
                     ) -> dict[str, list[float] | Exception]:
    """CPU samples of several callables, interleaved round by round: A B C, C B A, A B C, ...

    Each callable is calibrated on its own (loops per round, rounds for about ``max_time``
    of measured time, at least ``min_rounds``); then rounds alternate between them until
    each has its count. A burst of contention on a shared machine then lands on every
    callable alike instead of on whichever was being timed (timed one after the other, sdpa
    against itself came out up to 20 % apart under heavy load). A callable that raises gets
    its exception instead of samples; the others go on.
    """
    clock, _ = cpu_clock(torch.get_num_threads() if threads is None else threads)
    out: dict[str, list[float] | Exception] = {}
    plan: dict[str, tuple[int, int]] = {}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for key, fn in calls.items():
            try:
                for _ in range(warmup):
                    fn()
                loops, duration = _calibrate(fn, clock)
            except Exception as exc:
                out[key] = exc
                continue
            plan[key], out[key] = (loops, _rounds(duration, max_time, min_rounds)), []
        turn = 0
        while True:
            todo = [k for k in plan if isinstance(out[k], list) and len(out[k]) < plan[k][1]]
            if not todo:
                return out
            for key in todo if turn % 2 == 0 else todo[::-1]:
                try:
                    out[key].append(_round(calls[key], plan[key][0], clock) / plan[key][0])
                except Exception as exc:
                    out[key] = exc
            turn += 1
    finally:
        if gc_was_enabled:
            gc.enable()


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


def quartiles(samples: Sequence[float]) -> tuple[float, float]:
    """(q1, q3) by pytest-benchmark's method (Wikipedia's "Quartile", methods 2 and 3)."""
    data, n = sorted(samples), len(samples)
    if n == 1:
        return data[0], data[0]
    if n % 2 == 0:  # method 2: medians of the lower and upper halves
        return statistics.median(data[: n // 2]), statistics.median(data[n // 2:])
    k, r = n // 4, n % 4  # method 3
    if r == 1:
        return (0.25 * data[k - 1] + 0.75 * data[k],
                0.75 * data[3 * k] + 0.25 * data[3 * k + 1])
    return (0.75 * data[k] + 0.25 * data[k + 1],
            0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2])


def summarize(samples: Sequence[float]) -> tuple[float, float]:
    """(median, interquartile range) of the samples, by pytest-benchmark's statistics."""
    if not len(samples):
        raise ValueError("summarize: no samples")
    q1, q3 = quartiles(samples)
    return float(statistics.median(samples)), float(q3 - q1)


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
