"""Transformer blocks, each running on any registered attention variant.

A block factory is registered with ``register_block`` and called as
``factory(d_model, n_heads, *, attention="sdpa", d_ff=None, causal=True, dropout=0.0)``; it
returns an ``nn.Module`` mapping x (B, N, d_model) to (B, N, d_model). The class attribute
``final_norm`` tells a model whether the stack needs a LayerNorm after the last block
(Pre-LN does: its residual stream is never normalised inside the block).

Parameter layout follows ``torch.nn.TransformerEncoderLayer`` (fused qkv projection, two FFN
linears, two norms) so weights can be copied across and the blocks checked against it.
"""

from __future__ import annotations

import torch
from attnbench.variants.registry import get, register_block
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head self-attention whose inner product attention is a registry variant."""

    def __init__(self, d_model: int, n_heads: int, *, attention: str = "sdpa",
                 causal: bool = True, dropout: float = 0.0, qk_norm: bool = False) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        variant = get(attention)
        if variant.kind != "attention":
            raise ValueError(f"attention={attention!r} is a {variant.kind} variant, not attention")
        self.attention, self.n_heads, self.causal = variant, n_heads, causal
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        head_dim = d_model // n_heads
        # QK-norm (Dehghani et al. 2023; Wortsman et al. 2023): per-head LayerNorm on q and k.
        self.q_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.record_max_logit = False  # the stability benchmark turns this on
        self.max_logit: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, N, self.n_heads, C // self.n_heads).transpose(1, 2)
                   for t in (q, k, v))  # (B, H, N, D)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.record_max_logit:
            self.max_logit = _max_logit(q, k, self.causal)
        y = self.attention(q, k, v, causal=self.causal)  # (B, H, N, D)
        y = y.transpose(1, 2).reshape(B, N, C)  # (B, N, C)
        return self.dropout(self.proj(y))


@torch.no_grad()
def _max_logit(q: torch.Tensor, k: torch.Tensor, causal: bool) -> float:
    """max q.k/sqrt(D) over visible pairs: computed here, outside the attention variant, so it
    is available whatever kernel runs (at the cost of one extra N x S matmul)."""
    scores = (q @ k.transpose(-2, -1)) / q.shape[-1] ** 0.5  # (B, H, N, N)
    if causal:
        visible = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~visible, float("-inf"))
    return scores.max().item()


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.act = nn.GELU()
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear2(self.act(self.linear1(x))))


class Block(nn.Module):
    """Attention and FFN sublayers with two norms; subclasses say where the norms go."""

    final_norm = False
    norm_class: type[nn.Module] = nn.LayerNorm
    # The torch.nn.TransformerEncoderLayer options this block equals (gelu, batch_first, same
    # parameter layout), or None; `attnbench verify` checks every block that declares one.
    encoder_layer_config: dict | None = None

    def __init__(self, d_model: int, n_heads: int, *, attention: str = "sdpa",
                 d_ff: int | None = None, causal: bool = True, dropout: float = 0.0,
                 qk_norm: bool = False) -> None:
        super().__init__()
        self.attn = SelfAttention(d_model, n_heads, attention=attention, causal=causal,
                                  dropout=dropout, qk_norm=qk_norm)
        self.ffn = FeedForward(d_model, d_ff or 4 * d_model, dropout)
        self.norm1 = self.norm_class(d_model)
        self.norm2 = self.norm_class(d_model)

    def residual_projections(self) -> list[nn.Linear]:
        """The linears that write into the residual stream (scaled down at init by a model)."""
        return [self.attn.proj, self.ffn.linear2]


@register_block("post_ln")
class PostLN(Block):
    """Original Transformer (Vaswani et al. 2017): x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    encoder_layer_config = {"norm_first": False}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.ffn(x))


@register_block("pre_ln")
class PreLN(Block):
    """Pre-LN (Xiong et al. 2020): x = x + Attn(LN(x)); x = x + FFN(LN(x)); final LN in model."""

    final_norm = True
    encoder_layer_config = {"norm_first": True}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))
