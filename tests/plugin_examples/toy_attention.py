"""A correct attention variant shipped as a plugin: textbook math, float32 softmax."""

from __future__ import annotations

import torch
from attnbench.variants.common import default_scale, expand_kv, visible_mask
from attnbench.variants.registry import register_attention

NAME = "plugin_toy"


@register_attention(NAME, fully_masked_rows="zero", notes="test plugin")
def toy(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
        scale: float | None = None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Textbook attention with float32 scores, probabilities and accumulation."""
    k, v = expand_kv(k, v, q.shape[1])  # (B, Hq, S, D)
    scores = (q.float() @ k.float().transpose(-2, -1)) * default_scale(q.shape[-1], scale)
    mask = visible_mask(q.shape[2], k.shape[2], causal=causal, attn_mask=attn_mask,
                        device=q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    p = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # fully masked rows -> 0, as declared
    return (p @ v.float()).to(q.dtype)  # (B, Hq, N, Dv)
