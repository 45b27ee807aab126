"""Small shape and mask helpers shared by the PyTorch attention variants and the verifier.

Glossary: B batch, Hq query heads, Hkv key/value heads, N query length, S key length,
D head dim, Dv value head dim.
"""

from __future__ import annotations

import math

import torch


def default_scale(D: int, scale: float | None) -> float:
    """The contract's default softmax scale, 1/sqrt(D) (D is the *head* dim, not d_model)."""
    return 1.0 / math.sqrt(D) if scale is None else float(scale)


def expand_kv(k: torch.Tensor, v: torch.Tensor, Hq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grouped-query attention: query head h reads key/value head h // (Hq // Hkv)."""
    groups = Hq // k.shape[1]
    if groups == 1:
        return k, v
    return k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (B, Hq, S, D)


def causal_mask(N: int, S: int, device: torch.device | str, alignment: str = "top_left",
                rows: torch.Tensor | None = None, cols: range | None = None) -> torch.Tensor:
    """(N, S) bool, True where query i may see key j.

    top_left (SDPA): j <= i. bottom_right (FlashAttention >= 2.1): j <= i + S - N.
    ``rows`` selects a subset of query indices (the benchmark's sampled-row accuracy check),
    ``cols`` a range of keys (one key block of the tiled variant).
    """
    i = torch.arange(N, device=device) if rows is None else rows.to(device)
    j = torch.arange(S, device=device) if cols is None else torch.arange(
        cols.start, cols.stop, device=device)
    offset = S - N if alignment == "bottom_right" else 0
    return j[None, :] <= i[:, None] + offset  # (N, S)


def visible_mask(N: int, S: int, *, causal: bool, attn_mask: torch.Tensor | None,
                 device: torch.device | str, alignment: str = "top_left") -> torch.Tensor | None:
    """Combine ``causal`` and an explicit boolean mask into one broadcastable bool mask."""
    mask = causal_mask(N, S, device, alignment) if causal else None
    if attn_mask is not None:
        mask = attn_mask if mask is None else attn_mask & mask
    return mask
