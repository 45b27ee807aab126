"""Peak memory of one call, in bytes above what existed before it (the inputs).

CPU: memray, which hooks the allocator, so it sees torch's allocations (``tracemalloc`` only
sees Python's and reads ~0 for a tensor program; docs/methods.md, "Memory"). Allocations made
before tracking starts are invisible to memray, so its peak is exactly "above the inputs".
memray runs in-process here; the throughput runner already executes every case in a worker
subprocess, so a tracker never overlaps another one or the caller's own tooling.

CUDA: ``torch.cuda`` peak statistics, reset before the call, minus the bytes already allocated.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable
from typing import Any

import torch


def memory_unavailable_reason(device: str) -> str | None:
    """Why peak memory cannot be measured on ``device`` here, or None."""
    if torch.device(device).type == "cpu" and importlib.util.find_spec("memray") is None:
        return "memray is not installed (pip install attnbench[memory]); CPU peak memory " \
               "needs an allocator-level tracker"
    return None


def _peak_cpu(fn: Callable[[], Any]) -> tuple[int, Any]:
    import memray

    with tempfile.TemporaryDirectory(prefix="attnbench-memray-") as tmp:
        path = os.path.join(tmp, "call.bin")
        destination = memray.FileDestination(path, overwrite=True)
        with memray.Tracker(destination=destination, native_traces=False,
                            file_format=memray.FileFormat.AGGREGATED_ALLOCATIONS):
            result = fn()
        return int(memray.FileReader(path).metadata.peak_memory), result


def _peak_cuda(fn: Callable[[], Any]) -> tuple[int, Any]:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    result = fn()
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated() - before), result


def peak_memory_bytes(fn: Callable[[], Any], device: str) -> tuple[int, Any]:
    """Peak bytes allocated by one call of ``fn`` above those allocated before it, and the
    call's result (returned so a memory-only measurement needs no second call to check it;
    keeping it past the tracked region does not change the peak)."""
    why = memory_unavailable_reason(device)
    if why:
        raise RuntimeError(why)
    return _peak_cuda(fn) if torch.device(device).type == "cuda" else _peak_cpu(fn)
