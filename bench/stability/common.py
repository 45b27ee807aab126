"""What every stability job shares: the model's size, how a seeded model is built, one thread,
and the plain-data outcome a job hands back to the driver.

Jobs are frozen dataclasses of strings and numbers and outcomes are lists and dicts, so both
pickle cheaply to a process pool or a cluster worker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from variants.gpt import GPT, GPTConfig


@dataclass(frozen=True)
class ModelSpec:
    """The width, context and batch of every model in a sweep (depth and block vary)."""

    d_model: int = 64
    n_heads: int = 4
    block_size: int = 64  # N: context length of training windows
    batch_size: int = 16  # B

    def build(self, vocab_size: int, block: str, attention: str, depth: int, seed: int) -> GPT:
        torch.manual_seed(seed)  # the initial weights depend on the seed only
        return GPT(GPTConfig(vocab_size=vocab_size, block_size=self.block_size, n_layers=depth,
                             n_heads=self.n_heads, d_model=self.d_model, block=block,
                             attention=attention))


@dataclass
class Outcome:
    """A finished job: its metric rows and curves, written to the results by the driver."""

    case_id: str
    rows: list[dict[str, Any]]
    samples: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    summary: str = ""  # one line for the progress log


def metric_row(columns: dict[str, Any], metric: str, value: float, unit: str = "",
               **extra: Any) -> dict[str, Any]:
    """One ``ok`` row in the results vocabulary; ``columns`` carries variant and parameters."""
    return {**columns, "status": "ok", "metric": metric, "value": value, "unit": unit, **extra}


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op thread: CPU results are then bitwise reproducible and parallel workers do
    not oversubscribe the cores. Restores the caller's setting (tests run jobs in-process)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
