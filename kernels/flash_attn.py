"""Public entry points of our Triton FlashAttention-2: forward, backward, autograd.

    out = flash_attention(q, k, v, causal=False, scale=None)          # autograd-aware
    out, lse = flash_attention_forward(q, k, v, causal, scale)         # no autograd
    dq, dk, dv = flash_attention_backward(do, q, k, v, out, lse, causal, scale)

Shapes: q (B, Hq, N, D), k (B, Hkv, S, D), v (B, Hkv, S, Dv) -> out (B, Hq, N, Dv),
lse (B, Hq, N) float32, the natural-log log-sum-exp of each query row's scaled logits.
GQA: Hq must be a multiple of Hkv; query head h uses kv head h // (Hq // Hkv).
Causal masking is top-left aligned like SDPA's `is_causal`: query i sees keys j <= i, also
when N != S. scale defaults to 1 / sqrt(D).

Triton is imported lazily (on first call), so importing this module never fails on a machine
without triton; check `kernels.triton_available()` first for a readable reason.
"""

from __future__ import annotations

import math

import torch
from attnbench.kernels import triton_available

FP32_DOT_PRECISION: str = "ieee"
"""tl.dot input precision for fp32 inputs: "ieee" (default) or "tf32" (or "tf32x3").

"ieee" keeps fp32 results as accurate as a textbook fp32 implementation (errors ~1e-6), so
the FlashAttention tolerance rule (error <= 2x the error of plain fp32 math) holds. "tf32" uses
tensor cores, several times faster on the GPU, but its 10-bit mantissa gives errors ~1e-3 that
fail that rule; choose it only for speed runs, and loosen the tolerance accordingly. Read at
call time, so it can be changed at run time. fp16/bf16 inputs ignore it. The interpreter
computes dots in fp32/numpy either way.
"""

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEAD_DIM = 256


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Validate only what the kernels need; general input validation happens in the registry."""
    reason = triton_available()
    if reason is not None:
        raise RuntimeError(f"Triton FlashAttention unavailable: {reason}")
    if FP32_DOT_PRECISION not in ("ieee", "tf32", "tf32x3"):
        raise ValueError(f"FP32_DOT_PRECISION must be ieee, tf32 or tf32x3, "
                         f"got {FP32_DOT_PRECISION!r}")
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("q, k, v must be 4-D: (B, Hq, N, D), (B, Hkv, S, D), (B, Hkv, S, Dv)")
    if q.dtype not in SUPPORTED_DTYPES or not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share one dtype of {SUPPORTED_DTYPES}; got "
                         f"{q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v on different devices: {q.device}, {k.device}, {v.device}")
    if q.device.type != "cuda" and not _interpreted():
        raise ValueError(f"compiled Triton kernels need CUDA tensors, got {q.device}")
    B, Hq, _, D = q.shape
    if k.shape[0] != B or v.shape[0] != B or k.shape[1] != v.shape[1] or k.shape[2] != v.shape[2]:
        raise ValueError(f"inconsistent shapes q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    if k.shape[3] != D:
        raise ValueError(f"q and k head dims differ: {D} vs {k.shape[3]}")
    Hkv = k.shape[1]
    if Hkv == 0 or Hq % Hkv != 0:
        raise ValueError(f"query heads ({Hq}) must be a multiple of kv heads ({Hkv})")
    if max(D, v.shape[3]) > MAX_HEAD_DIM:
        raise ValueError(f"head dims up to {MAX_HEAD_DIM} supported, got D={D}, "
                         f"Dv={v.shape[3]}")


def _interpreted() -> bool:
    from attnbench.kernels.flash_fwd import INTERPRETED
    return INTERPRETED


def flash_attention_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward pass only. Returns (out (B, Hq, N, Dv) in q's dtype, lse (B, Hq, N) float32)."""
    _check(q, k, v)
    from attnbench.kernels.flash_fwd import flash_fwd
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    return flash_fwd(q, k, v, causal, scale, fp32_precision=FP32_DOT_PRECISION)


def flash_attention_backward(
    do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
    out: torch.Tensor, lse: torch.Tensor, causal: bool = False, scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (dq, dk, dv) from dO and the forward's (out, lse); P is recomputed from lse."""
    _check(q, k, v)
    if do.shape != out.shape:
        raise ValueError(f"dO shape {tuple(do.shape)} != out shape {tuple(out.shape)}")
    from attnbench.kernels.flash_bwd import flash_bwd
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    return flash_bwd(do.to(q.dtype), q, k, v, out, lse, causal, scale,
                     fp32_precision=FP32_DOT_PRECISION)


class FlashAttentionFunction(torch.autograd.Function):
    """Autograd wrapper: saves (q, k, v, out, lse), never the (N, S) attention matrix."""

    @staticmethod
    def forward(ctx, q, k, v, causal: bool, scale: float | None):  # noqa: ANN001
        out, lse = flash_attention_forward(q, k, v, causal, scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal, ctx.scale = causal, scale
        return out

    @staticmethod
    def backward(ctx, do):  # noqa: ANN001
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = flash_attention_backward(do, q, k, v, out, lse, ctx.causal, ctx.scale)
        return dq, dk, dv, None, None


def flash_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention softmax(scale * q k^T [causal mask]) v with our Triton kernels; differentiable."""
    return FlashAttentionFunction.apply(q, k, v, causal, scale)
