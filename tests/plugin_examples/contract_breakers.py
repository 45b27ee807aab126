"""Two attention variants that compute the right numbers and break the output contract."""

from __future__ import annotations

import torch
from attnbench.variants.common import default_scale, expand_kv, visible_mask

from attnbench import register_attention

FP32_OUT, HEADS_LAST = "plugin_fp32_out", "plugin_heads_last"


def _attention(q, k, v, causal, scale, attn_mask):
    k, v = expand_kv(k, v, q.shape[1])  # (B, Hq, S, D)
    scores = (q @ k.transpose(-2, -1)) * default_scale(q.shape[-1], scale)  # (B, Hq, N, S)
    mask = visible_mask(q.shape[2], k.shape[2], causal=causal, attn_mask=attn_mask,
                        device=q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v  # (B, Hq, N, Dv)


@register_attention(FP32_OUT, notes="test plugin: float32 output for any input")
def fp32_out(q, k, v, *, causal=False, scale=None, attn_mask=None):
    """Computes in float32 and returns float32: more accurate, wrong contract."""
    return _attention(q.float(), k.float(), v.float(), causal, scale, attn_mask)


@register_attention(HEADS_LAST, notes="test plugin: (B, N, Hq, Dv) output")
def heads_last(q, k, v, *, causal=False, scale=None, attn_mask=None):
    """Right values in the (B, N, Hq, Dv) layout."""
    return _attention(q, k, v, causal, scale, attn_mask).transpose(1, 2)
