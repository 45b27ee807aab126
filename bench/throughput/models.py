"""Analytic FLOP and memory models: what a case *should* cost, printed next to what it did.

FLOP convention (docs/methods.md, "FLOP and byte conventions"; its one text is
``attnbench.metrics.FLOP_CONVENTION``, stated in every results directory):
    forward  F = 2 * B * Hq * P * (D + Dv), P = visible (query, key) pairs: N * S, or with
             top-left causal masking sum_i min(i + 1, S) (exactly N(N+1)/2 when N == S), or
             with an attention pattern the True entries of its dense mask.
    bwd      2.0 x F, fwd+bwd 3.0 x F: *useful* work. FlashAttention-style kernels execute
             2.5 x F in the backward (they recompute Q K^T); that is not counted, so naive and
             fused variants are compared on the same work.
    block    per token forward 24 d^2 (QKV 6, out 2, MLP 16) + 4 d (P / N) for attention;
             fwd+bwd 3 x forward.

Memory (bytes above the inputs, one call): the model the variant declares at registration
(``memory=`` in ``register_attention``; the built-in models and their derivation are in
``attnbench.variants.memory``). A variant that declares none gets no model, and its row says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from attnbench.metrics import FLOP_CONVENTION
from attnbench.throughput.cases import BenchCase
from attnbench.variants.registry import get

__all__ = ["FLOP_CONVENTION", "attention_flops", "attention_memory_bytes", "block_flops",
           "fit_exponent", "pattern_pairs", "visible_pairs"]
MODE_FACTOR = {"fwd": 1.0, "bwd": 2.0, "fwd+bwd": 3.0}


def visible_pairs(N: int, S: int, causal: bool) -> int:
    """(query, key) pairs that enter the softmax; causal is top-left (query i sees j <= i)."""
    if not causal:
        return N * S
    if N <= S:
        return N * (N + 1) // 2
    return S * (S + 1) // 2 + (N - S) * S  # rows past S see every key


def pattern_pairs(case: BenchCase) -> float:
    """Visible (query, key) pairs summed over the B * Hq problems of a pattern case: the True
    entries of its dense mask (all N * S when the pattern only modifies scores). A mask that
    does not vary over a batch or head dimension is counted once and multiplied."""
    pattern = case.attention_pattern
    assert pattern is not None, "pattern_pairs needs a pattern case"
    mask = pattern.dense_mask(case.B, case.Hq, case.N, case.S, "cpu")  # (B, Hq, N, S) view
    if mask is None:
        return float(case.B * case.Hq * case.N * case.S)
    repeats = 1
    for dim in (0, 1):
        if mask.stride(dim) == 0:  # broadcast: the same mask for every index of this dim
            repeats *= mask.shape[dim]
            mask = mask.narrow(dim, 0, 1)
    return float(mask.sum().item() * repeats)


def attention_flops(case: BenchCase) -> float:
    """Useful FLOPs of one call of ``case`` (the module docstring's convention; a pattern's
    visible pairs are its mask's, so a sliding window is credited only the pairs it sees)."""
    if case.pattern:
        forward = 2.0 * pattern_pairs(case) * (case.D + case.Dv)
    else:
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
    """Predicted peak bytes above the inputs for one call by the variant's declared memory
    model, or None when it declares none (``no_memory_model_reason`` says so in words)."""
    model = get(case.attention).memory_model()
    return None if model is None else float(model(case.registry_case(), case.mode))


def no_memory_model_reason(case: BenchCase) -> str | None:
    """Why ``case`` has no memory model, or None when it has one."""
    if get(case.attention).memory_model() is not None:
        return None
    return (f"variant {case.attention!r} declares no memory behaviour (register it with "
            "memory='materialising', 'fused' or a model function)")


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
