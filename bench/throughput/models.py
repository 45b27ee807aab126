"""Analytic FLOP and memory models: what a case *should* cost, printed next to what it did.

FLOP convention (``attnbench.metrics.FLOP_CONVENTION``, stated in every results directory):
    forward  F = 2 * B * Hq * P * (D + Dv), P = visible (query, key) pairs: N * S, or with
             top-left causal masking sum_i min(i + 1, S) (exactly N(N+1)/2 when N == S).
    bwd      2.0 x F, fwd+bwd 3.0 x F: *useful* work. FlashAttention-style kernels execute
             2.5 x F in the backward (they recompute Q K^T); that is not counted, so naive and
             fused variants are compared on the same work.
    block    per token forward 24 d^2 (QKV 6, out 2, MLP 16) + 4 d (P / N) for attention;
             fwd+bwd 3 x forward.

Memory (bytes above the inputs, one call). Two families, derived from the algorithms:
    materialising (naive, sdpa_math): the (B, Hq, N, S) score matrix and its successors.
        fwd: scores and their scaled copy live together, 2 score matrices (+ the N x S bool
        causal mask and its negation). fwd+bwd: P (saved) + dP + dS, 3 score matrices, plus
        out and dV.
        bwd: dP + dS plus dV (P already exists).
    fused (flash family): the minimum a fused kernel must write: out + LSE (fp32 per row);
        with backward also dQ, dK, dV and delta (fp32 per row). Real kernels add working
        buffers (the plain-PyTorch ``tiled`` holds several (B, Hq, N, BLOCK_S) fp32 blocks),
        so for them the model is a lower bound and the ratio measured/model is the overhead.
A variant in neither family gets no model (the row is left out rather than guessed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from attnbench.metrics import FLOP_CONVENTION
from attnbench.throughput.cases import BenchCase

__all__ = ["FLOP_CONVENTION", "attention_flops", "attention_memory_bytes", "block_flops",
           "fit_exponent", "visible_pairs"]
MODE_FACTOR = {"fwd": 1.0, "bwd": 2.0, "fwd+bwd": 3.0}

MATERIALISING = frozenset({"naive", "sdpa_math"})
FUSED = frozenset({"sdpa", "sdpa_flash", "sdpa_efficient", "sdpa_cudnn", "tiled",
                   "triton_flash"})
LSE_BYTES = 4  # fp32 log-sum-exp (and delta) per query row


def visible_pairs(N: int, S: int, causal: bool) -> int:
    """(query, key) pairs that enter the softmax; causal is top-left (query i sees j <= i)."""
    if not causal:
        return N * S
    if N <= S:
        return N * (N + 1) // 2
    return S * (S + 1) // 2 + (N - S) * S  # rows past S see every key


def attention_flops(case: BenchCase) -> float:
    """Useful FLOPs of one call of ``case`` (the module docstring's convention)."""
    forward = 2.0 * case.B * case.Hq * visible_pairs(case.N, case.S, case.causal) * (
        case.D + case.Dv)
    return forward * MODE_FACTOR[case.mode]


def block_flops(case: BenchCase) -> float:
    """Useful FLOPs of one call of a block case: B * N tokens through one layer."""
    d = case.d_model
    assert d is not None, "block_flops needs a block case"
    pairs = visible_pairs(case.N, case.N, case.causal)
    forward = case.B * (case.N * 24.0 * d * d + 4.0 * d * pairs)
    return forward * MODE_FACTOR[case.mode]


def attention_memory_bytes(case: BenchCase) -> float | None:
    """Predicted peak bytes above the inputs for one call, or None without a model."""
    elt = torch.empty((), dtype=case.torch_dtype).element_size()
    B, Hq, Hkv, N, S, D, Dv = case.B, case.Hq, case.Hkv, case.N, case.S, case.D, case.Dv
    out = B * Hq * N * Dv * elt
    rows = B * Hq * N * LSE_BYTES
    if case.attention in MATERIALISING:
        score = B * Hq * N * S * elt
        mask = N * S if case.causal else 0  # bool, one byte per pair (fwd: mask and ~mask)
        expanded = B * Hq * S * (D + Dv) * elt if Hkv != Hq else 0  # GQA: K, V repeated
        dv = B * Hq * S * Dv * elt  # dV before the GQA heads are summed back
        return {"fwd": 2 * score + 2 * mask + expanded,
                "bwd": 2 * score + dv,
                "fwd+bwd": 3 * score + mask + expanded + out + dv}[case.mode]
    if case.attention in FUSED:
        grads = (B * Hq * N * D + B * Hkv * S * (D + Dv)) * elt  # dQ, dK, dV
        return {"fwd": out + rows,
                "bwd": grads + rows,
                "fwd+bwd": out + rows + grads + rows}[case.mode]
    return None


def fit_exponent(lengths: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of log(value) against log(length): the k in value ~ N^k."""
    if len(lengths) != len(values) or len(set(lengths)) < 2:
        raise ValueError(f"fit_exponent: need >= 2 distinct lengths with one value each, got "
                         f"lengths={list(lengths)}, values={list(values)}")
    if min(values) <= 0:
        raise ValueError(f"fit_exponent: values must be positive, got {list(values)}")
    xs, ys = [math.log(x) for x in lengths], [math.log(y) for y in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs)
