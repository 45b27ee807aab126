"""Accuracy at the benchmark shape, cheaply: the error on a sample of query rows.

A query row's output depends only on that row of Q and on all of K and V, and so does its
row of dQ (given the row of dO). So a float64 reference for R sampled rows costs R/N of a full
one, and large N stays cheap. The error is judged by a yardstick like the FlashAttention
rule's:

    sampled_error_ratio = max|x - ref| / max(max|pt - ref|, eps * max|ref|)

where ``ref`` is the float64 computation and ``pt`` the textbook computation (naive: matmul,
scale, mask, softmax, matmul) in the test dtype, on the same rows. A ratio near 1 means "as
accurate as plain attention in this dtype". The denominator is floored at one ulp of the
largest reference value, so an exact ``pt`` (float64 inputs) does not divide by zero.

It is not the verify suite's ``error_ratio`` (which takes the worse of two textbook orderings
and floors by the terms' magnitude, on whole outputs), so it has its own metric name.

fwd cases check the output; bwd and fwd+bwd cases check dQ (the column ``checked`` says which).
A pattern case applies the pattern's definition (its score_mods and mask) to the sampled rows;
``attnbench verify`` checks that definition against the pattern's independent reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from attnbench.throughput.cases import BenchCase, make_inputs
from attnbench.variants.common import causal_mask, default_scale, expand_kv

if TYPE_CHECKING:
    from attnbench.variants.patterns import Pattern

SAMPLED_ROWS = 32


def sample_rows(N: int, count: int = SAMPLED_ROWS, seed: int = 0) -> torch.Tensor:
    """Sorted query indices: the first and last row (causal extremes) and random others."""
    if N <= count:
        return torch.arange(N)
    gen = torch.Generator().manual_seed(seed)
    middle = torch.randperm(N - 2, generator=gen)[: count - 2] + 1
    return torch.cat([torch.tensor([0, N - 1]), middle]).sort().values


def pattern_on_rows(pattern: Pattern, scores: torch.Tensor, rows: torch.Tensor, N: int
                    ) -> torch.Tensor:
    """The pattern's definition (score_mods, then the mask) on the scores (B, Hq, R, S) of
    the query rows ``rows`` of an N-query problem."""
    from attnbench.variants.patterns import PatternShape

    B, H, R, S = scores.shape
    shape = PatternShape(B, H, N, S, str(scores.device))
    b = torch.arange(B, device=scores.device).view(B, 1, 1, 1)
    h = torch.arange(H, device=scores.device).view(1, H, 1, 1)
    q, kv = rows.view(1, 1, R, 1), torch.arange(S, device=scores.device).view(1, 1, 1, S)
    score_mod, mask_mod = pattern.score_mod(shape), pattern.mask_mod(shape)
    if score_mod is not None:
        scores = score_mod(scores, b, h, q, kv)
    if mask_mod is not None:
        scores = scores.masked_fill(~mask_mod(b, h, q, kv), float("-inf"))
    return scores


def attention_rows(q_rows: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rows: torch.Tensor,
                   causal: bool, pattern: Pattern | None = None, N: int = 0) -> torch.Tensor:
    """Textbook attention for the query rows ``rows`` only: q_rows (B, Hq, R, D), of an
    N-query problem (N matters only to a pattern)."""
    k, v = expand_kv(k, v, q_rows.shape[1])  # (B, Hq, S, D)
    scores = (q_rows @ k.transpose(-2, -1)) * default_scale(q_rows.shape[-1], None)  # (B,Hq,R,S)
    if causal:
        visible = causal_mask(int(rows.max()) + 1, k.shape[-2], q_rows.device, rows=rows)
        scores = scores.masked_fill(~visible, float("-inf"))  # visible: (R, S)
    if pattern is not None:
        scores = pattern_on_rows(pattern, scores, rows, N)
    return torch.softmax(scores, dim=-1) @ v  # (B, Hq, R, Dv)


def _rows_result(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rows: torch.Tensor,
                 case: BenchCase, dtype: torch.dtype, grad_rows: torch.Tensor | None
                 ) -> torch.Tensor:
    """Output rows, or dQ rows when ``grad_rows`` (dO on the sampled rows) is given."""
    q_rows = q.detach()[:, :, rows].to(dtype)
    k, v = k.detach().to(dtype), v.detach().to(dtype)
    options = {"causal": case.causal, "pattern": case.attention_pattern, "N": case.N}
    if grad_rows is None:
        return attention_rows(q_rows, k, v, rows, **options)
    q_rows.requires_grad_(True)
    out = attention_rows(q_rows, k, v, rows, **options)
    return torch.autograd.grad(out, q_rows, grad_rows.to(dtype))[0]


def sampled_error_ratio(case: BenchCase, result: torch.Tensor, seed: int = 0
                ) -> dict[str, float | str]:
    """Error of ``result`` (the full output for fwd, the full dQ otherwise) on sampled rows.

    The inputs are regenerated from ``seed`` exactly as ``cases.make_call`` made them.
    """
    q, k, v = make_inputs(case, requires_grad=False, seed=seed)
    rows = sample_rows(case.N, seed=seed).to(case.device)
    grad_rows = None
    if case.mode != "fwd":
        gen = torch.Generator(device=case.device).manual_seed(seed + 1)
        grad_out = torch.randn((case.B, case.Hq, case.N, case.Dv), generator=gen,
                               device=case.device, dtype=case.torch_dtype)
        grad_rows = grad_out[:, :, rows]
    ref = _rows_result(q, k, v, rows, case, torch.float64, grad_rows)
    pt = _rows_result(q, k, v, rows, case, case.torch_dtype, grad_rows)
    got = result.detach()[:, :, rows].double()
    error = (got - ref).abs().max().item()
    error_pt = (pt.double() - ref).abs().max().item()
    floor = torch.finfo(case.torch_dtype).eps * ref.abs().max().item()
    return {"sampled_error_ratio": error / max(error_pt, floor, 1e-300), "error": error,
            "error_pt": error_pt, "checked": "out" if case.mode == "fwd" else "dq"}
