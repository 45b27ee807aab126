"""A plugin variant with a classic bug (the scale uses the model width, not the head dim)."""

from __future__ import annotations

import torch
from attnbench.variants.registry import register_attention

NAME = "plugin_broken"


@register_attention(NAME, notes="test plugin with a bug")
def broken(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
           scale: float | None = None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """SDPA with scale 1/sqrt(Hq * D)."""
    scale = (q.shape[1] * q.shape[-1]) ** -0.5
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)  # (B, Hq, S, .)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                                            attn_mask=attn_mask, scale=scale)
