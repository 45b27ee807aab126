"""The textbook attention: scores, softmax, weighted sum, all materialised in the input dtype.

It is the low-precision comparison point of the tolerance rule (``pt`` in the FlashAttention
test suite): whatever error it makes in a dtype is the error budget a fused kernel is held to.
It materialises the (B, Hq, N, S) score matrix, so its memory grows as N*S.
"""

from __future__ import annotations

import torch
from attnbench.variants.common import default_scale, expand_kv, visible_mask
from attnbench.variants.patterns import Pattern
from attnbench.variants.registry import register_attention


def _scores(q: torch.Tensor, k: torch.Tensor, *, causal: bool, scale: float | None,
            attn_mask: torch.Tensor | None, pattern: Pattern | None = None) -> torch.Tensor:
    N, S = q.shape[-2], k.shape[-2]
    scores = (q @ k.transpose(-2, -1)) * default_scale(q.shape[-1], scale)  # (B, Hq, N, S)
    if pattern is not None:  # the definition evaluated densely, rounded back to the dtype
        scores = pattern.apply_dense(scores).to(q.dtype)
    mask = visible_mask(N, S, causal=causal, attn_mask=attn_mask, device=q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores


def _naive_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
               scale: float | None = None, attn_mask: torch.Tensor | None = None,
               pattern: Pattern | None = None) -> torch.Tensor:
    k, _ = expand_kv(k, v, q.shape[1])
    scores = _scores(q, k, causal=causal, scale=scale, attn_mask=attn_mask, pattern=pattern)
    return torch.logsumexp(scores.float(), dim=-1)  # (B, Hq, N)


@register_attention("naive", fully_masked_rows="nan", memory="materialising",
                    exposes_lse=True, lse=_naive_lse, patterns="all",
                    notes="materialises the N x S score matrix; any pattern, evaluated densely")
def naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
          scale: float | None = None, attn_mask: torch.Tensor | None = None,
          pattern: Pattern | None = None) -> torch.Tensor:
    """Explicit matmul, softmax, matmul."""
    k, v = expand_kv(k, v, q.shape[1])  # (B, Hq, S, D)
    # the scores die inside softmax: two N x S matrices at the peak, as the memory model says
    p = torch.softmax(_scores(q, k, causal=causal, scale=scale, attn_mask=attn_mask,
                              pattern=pattern), dim=-1)
    return p @ v  # (B, Hq, N, Dv)
