"""Block variants that differ only in where and how they normalise: the stability benchmark's
subjects.

Each reuses ``Block``, ``SelfAttention`` and ``FeedForward`` from ``variants.blocks`` (same
parameter layout as ``post_ln`` / ``pre_ln``) and runs on any registered attention variant.
Formulas, with f the attention or FFN sublayer and N the number of layers:

    pre_rmsnorm  x = x + f(RMSNorm(x))                 final RMSNorm in the model
    deepnorm     x = LN(alpha * x + f(x))              alpha = (2N)^(1/4), beta = (8N)^(-1/4)
    sandwich     x = x + LN_out(f(LN_in(x)))           final LN in the model
    qk_norm      Pre-LN with per-head LN on q and k    final LN in the model

The attention-logit probe (``SelfAttention.record_max_logit``) lives outside the attention
variant, so it works whatever kernel runs; it costs one extra N x N matmul per layer, which is
why the stability benchmark turns it on only at evaluation points.
"""

from __future__ import annotations

import torch
from attnbench.variants.blocks import Block, PreLN
from attnbench.variants.registry import register_block
from torch import nn


@register_block("pre_rmsnorm")
class PreRMSNorm(PreLN):
    """Pre-LN with RMSNorm (Zhang & Sennrich 2019): x = x + f(RMSNorm(x)); final RMSNorm."""

    # RMSNorm(x) = x / sqrt(mean(x^2) + eps) * weight: no centring, no bias. The model reads
    # ``norm_class`` for its final norm too.
    norm_class = nn.RMSNorm


@register_block("deepnorm")
class DeepNorm(Block):
    """DeepNet (Wang et al. 2022), decoder-only: x = LN(alpha*x + f(x)), beta-scaled init."""

    def __init__(self, d_model: int, n_heads: int, **kwargs) -> None:
        super().__init__(d_model, n_heads, **kwargs)
        # alpha = 1 is plain Post-LN; the model sets the depth-dependent value (init_for_depth).
        self.alpha = 1.0

    @staticmethod
    def constants(n_layers: int) -> tuple[float, float]:
        """DeepNet's decoder-only (alpha, beta) for a stack of ``n_layers`` blocks."""
        if n_layers < 1:
            raise ValueError(f"n_layers: expected a positive layer count, got {n_layers}")
        return (2 * n_layers) ** 0.25, (8 * n_layers) ** -0.25

    @torch.no_grad()
    def init_for_depth(self, n_layers: int) -> None:
        """Set alpha and redraw the FFN, value and output-projection weights as the model's
        base init N(0, 0.02) scaled by beta. This *replaces* the model's 1/sqrt(2L) residual
        scaling of the output projections: DeepNet's beta is its depth scaling."""
        self.alpha, beta = self.constants(n_layers)
        d_model = self.attn.proj.weight.shape[0]
        value_rows = self.attn.qkv.weight[2 * d_model:]  # (d_model, d_model): the v projection
        for weight in (self.ffn.linear1.weight, self.ffn.linear2.weight, value_rows,
                       self.attn.proj.weight):
            nn.init.normal_(weight, std=0.02).mul_(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(self.alpha * x + self.attn(x))
        return self.norm2(self.alpha * x + self.ffn(x))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:.4g}"


@register_block("sandwich")
class SandwichLN(Block):
    """Sandwich-LN (Ding et al. 2021, CogView): x = x + LN_out(f(LN_in(x))); final LN."""

    final_norm = True

    def __init__(self, d_model: int, n_heads: int, **kwargs) -> None:
        super().__init__(d_model, n_heads, **kwargs)  # norm1, norm2: the input norms
        self.norm1_out = self.norm_class(d_model)
        self.norm2_out = self.norm_class(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.norm1_out(self.attn(self.norm1(x)))
        return x + self.norm2_out(self.ffn(self.norm2(x)))


@register_block("qk_norm")
class QKNormPreLN(PreLN):
    """Pre-LN plus per-head LayerNorm on q and k (Dehghani et al. 2023; Wortsman et al. 2023)."""

    def __init__(self, d_model: int, n_heads: int, **kwargs) -> None:
        kwargs["qk_norm"] = True
        super().__init__(d_model, n_heads, **kwargs)
