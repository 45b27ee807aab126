"""Memory behaviours: the bytes one attention call must allocate above its inputs, by algorithm.

A variant declares its behaviour at registration (``register_attention(..., memory=...)``):
one of the names below, or its own model function with the same signature. The throughput
benchmark prints the model next to the measured peak; a variant that declares nothing gets no
model and its rows say so. Adding a behaviour is one function here plus its name in
``MEMORY_MODELS`` (or, outside this package, a function passed as ``memory=``).

Models, derived from the algorithms (docs/methods.md, "Memory"); ``mode`` is "fwd", "bwd"
(backward only, given the forward's saved tensors) or "fwd+bwd":
    materialising (naive, sdpa_math): the (B, Hq, N, S) score matrix and its successors.
        fwd: scores and their scaled copy live together, 2 score matrices (+ the N x S bool
        causal mask and its negation). fwd+bwd: P (saved) + dP + dS, 3 score matrices, plus
        out and dV. bwd: dP + dS plus dV (P already exists).
    fused (flash family): the minimum a fused kernel must write: out + LSE (fp32 per row);
        with backward also dQ, dK, dV and delta (fp32 per row). Real kernels add working
        buffers (the plain-PyTorch ``tiled`` holds several (B, Hq, N, BLOCK_S) fp32 blocks),
        so for them the model is a lower bound and the ratio measured/model is the overhead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from attnbench.variants.registry import Case

Mode = Literal["fwd", "bwd", "fwd+bwd"]
MemoryModel = Callable[["Case", Mode], float]
LSE_BYTES = 4  # fp32 log-sum-exp (and delta) per query row


def materialising(case: Case, mode: Mode) -> float:
    """Bytes of an implementation that builds the (B, Hq, N, S) score matrix."""
    elt = torch.empty((), dtype=case.dtype).element_size()
    B, Hq, Hkv, N, S, D, Dv = case.B, case.Hq, case.hkv, case.N, case.s, case.D, case.dv
    out = B * Hq * N * Dv * elt
    score = B * Hq * N * S * elt
    mask = N * S if case.causal else 0  # bool, one byte per pair (fwd: mask and ~mask)
    expanded = B * Hq * S * (D + Dv) * elt if Hkv != Hq else 0  # GQA: K, V repeated
    dv = B * Hq * S * Dv * elt  # dV before the GQA heads are summed back
    return {"fwd": 2 * score + 2 * mask + expanded,
            "bwd": 2 * score + dv,
            "fwd+bwd": 3 * score + mask + expanded + out + dv}[mode]


def fused(case: Case, mode: Mode) -> float:
    """Bytes a fused (FlashAttention-style) kernel must write: a lower bound for real ones."""
    elt = torch.empty((), dtype=case.dtype).element_size()
    B, Hq, Hkv, N, S, D, Dv = case.B, case.Hq, case.hkv, case.N, case.s, case.D, case.dv
    out = B * Hq * N * Dv * elt
    rows = B * Hq * N * LSE_BYTES
    grads = (B * Hq * N * D + B * Hkv * S * (D + Dv)) * elt  # dQ, dK, dV
    return {"fwd": out + rows,
            "bwd": grads + rows,
            "fwd+bwd": out + rows + grads + rows}[mode]


MEMORY_MODELS: dict[str, MemoryModel] = {"materialising": materialising, "fused": fused}
