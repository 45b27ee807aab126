"""What every stability job shares: the model's size, how a seeded model is built, one thread,
and the plain-data outcome a job hands back to the driver.

Jobs are frozen dataclasses of strings and numbers and outcomes are lists and dicts, so both
pickle cheaply to a process pool or a cluster worker.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from attnbench.variants.gpt import GPT, GPTConfig

_GLOBAL_RNG = threading.Lock()


@dataclass(frozen=True)
class ModelSpec:
    """The width, context and batch of every model in a sweep (depth and block vary)."""

    d_model: int = 64
    n_heads: int = 4
    block_size: int = 64  # N: context length of training windows
    batch_size: int = 16  # B

    def build(self, vocab_size: int, block: str, attention: str, depth: int, seed: int,
              init: str = "scaled") -> GPT:
        # The initial weights depend on the seed only. GPT draws them from torch's global
        # generator, so building is serialised: an executor may run jobs in threads.
        with _GLOBAL_RNG:
            torch.manual_seed(seed)
            return GPT(GPTConfig(vocab_size=vocab_size, block_size=self.block_size, n_layers=depth,
                                 n_heads=self.n_heads, d_model=self.d_model, block=block,
                                 attention=attention, init=init))


@dataclass
class Outcome:
    """A finished job: its metric rows and curves, written to the results by the driver."""

    case_id: str
    rows: list[dict[str, Any]]
    samples: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0  # wall time of the job
    cpu_seconds: float = 0.0  # its CPU time: with one thread, the cost free of machine load
    summary: str = ""  # one line for the progress log


def metric_row(columns: dict[str, Any], metric: str, value: float, unit: str = "",
               **extra: Any) -> dict[str, Any]:
    """One ``ok`` row in the results vocabulary; ``columns`` carries variant and parameters."""
    return {**columns, "status": "ok", "metric": metric, "value": value, "unit": unit, **extra}


class Stopwatch:
    """Wall and CPU seconds since creation."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


_THREADS = {"depth": 0, "saved": 1}
_THREADS_LOCK = threading.Lock()


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op thread: CPU results are then bitwise reproducible and parallel workers do
    not oversubscribe the cores. The caller's setting comes back when the last job running in
    this process ends (tests run jobs in-process; an executor may run several in threads)."""
    with _THREADS_LOCK:
        if _THREADS["depth"] == 0:
            _THREADS["saved"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _THREADS["depth"] += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS["depth"] -= 1
            if _THREADS["depth"] == 0:
                torch.set_num_threads(_THREADS["saved"])
