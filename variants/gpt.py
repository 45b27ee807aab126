"""A small GPT built from any registered block variant, for the training-stability benchmark.

nanoGPT's shape: token and learned position embeddings, a stack of blocks, a final norm when
the block asks for one (Pre-LN), and an LM head tied to the token embedding. Two
initialisation schemes (``GPTConfig.init``):

    scaled    nanoGPT's (GPT-2's): N(0, 0.02) everywhere, the residual projections (attention
              output and second FFN linear) N(0, 0.02/sqrt(2L)), so the residual stream's
              variance stays about flat in depth
    unscaled  N(0, 0.02) everywhere with no depth factor: the depth-independent init that
              Xiong et al. 2020 analyse, under which Pre-LN's residual stream grows with depth

A block class may refine either for its depth with an ``init_for_depth(n_layers)`` method
(DeepNorm's beta scaling, which is its own depth scaling and applies under both schemes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from attnbench.variants.registry import get
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int  # characters in the corpus
    block_size: int = 64  # longest context, for the position embedding
    n_layers: int = 4  # depth: the variable the stability literature sweeps
    n_heads: int = 4
    d_model: int = 64
    block: str = "pre_ln"  # registry name of the block variant
    attention: str = "sdpa"  # registry name of the attention variant inside each block
    dropout: float = 0.0  # 0 keeps runs bitwise reproducible and comparable to the papers
    init: str = "scaled"  # "scaled" (GPT-2's 1/sqrt(2L) residual projections) or "unscaled"


INIT_SCHEMES = ("scaled", "unscaled")
BASE_STD = 0.02  # std of every weight at init (GPT-2)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        block_variant = get(config.block)
        if block_variant.kind != "block":
            raise ValueError(f"block={config.block!r} is a {block_variant.kind} variant")
        if config.init not in INIT_SCHEMES:
            raise ValueError(f"init: expected one of {INIT_SCHEMES}, got {config.init!r}")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.block_size, config.d_model)
        self.blocks = nn.ModuleList(
            block_variant.fn(config.d_model, config.n_heads, attention=config.attention,
                             causal=True, dropout=config.dropout)
            for _ in range(config.n_layers))
        needs_final = getattr(block_variant.fn, "final_norm", False)
        norm_class = getattr(block_variant.fn, "norm_class", nn.LayerNorm)
        self.final_norm = norm_class(config.d_model) if needs_final else nn.Identity()
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # weight tying
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=BASE_STD)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=BASE_STD)
        residual_std = BASE_STD / math.sqrt(2 * self.config.n_layers)
        for block in self.blocks:
            if self.config.init == "scaled":
                for linear in block.residual_projections():
                    nn.init.normal_(linear.weight, std=residual_std)
            if hasattr(block, "init_for_depth"):
                block.init_for_depth(self.config.n_layers)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, N = idx.shape
        if N > self.config.block_size:
            raise ValueError(f"sequence length {N} exceeds block_size {self.config.block_size}")
        pos = torch.arange(N, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)  # (B, N, d_model)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.final_norm(x))  # (B, N, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss
