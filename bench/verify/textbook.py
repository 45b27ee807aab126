"""The rule's ``pt``: textbook attention computed entirely in the test dtype, two ways.

FlashAttention's tests compute ``pt`` with ``reorder_ops=True`` "to estimate the numerical error
from operation reordering": the budget is what plain arithmetic in the dtype gets wrong. One
textbook's max error over a small tensor is a noisy statistic, so ``pt`` here is the worse of
the two standard formulations, both in the test dtype:

    naive   the ``naive`` variant, gradients by autograd through softmax
    flash   the same math in FlashAttention's order: scale applied to k, float32 softmax
            statistics, P recomputed from the log-sum-exp, dS = P * (dP - rowsum(dO * O)):
            the backward every fused kernel uses

Measured on 332 random cases (fp32, fp16, bf16; S = 1 and N = 1 included): with the naive
textbook alone and the plain floor, correct variants (SDPA, tiled) failed up to 12 % of gradient
checks; with both textbooks and the term-magnitude floor (``tolerance.compare``) none did.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from attnbench.variants.common import default_scale, expand_kv, visible_mask
from attnbench.variants.patterns import Pattern
from attnbench.variants.registry import get
from attnbench.verify.reference import Grads, Inputs, run_variant


@dataclass
class Textbook:
    name: str
    out: torch.Tensor  # (B, Hq, N, Dv), test dtype; meaningless on fully masked rows
    grads: Grads | None
    lse: torch.Tensor | None  # float32 (B, Hq, N)


def textbook_inputs(inputs: Inputs, alignment: str) -> Inputs:
    """The same problem in a form a textbook computes without NaN leaking into gradients.

    A bottom-right causal mask becomes an explicit mask (``naive`` is top-left). A row that sees
    no key would make the textbook produce NaN that backward spreads into every dk, dv entry;
    such a row is given every key and a zero dO instead, which makes its contribution to all
    gradients exactly 0 (what the reference defines) while its output is never compared.
    """
    if inputs.pattern is not None:
        return _pattern_textbook_inputs(inputs)
    if not inputs.causal and inputs.attn_mask is None:
        return inputs
    N, S = inputs.q.shape[-2], inputs.k.shape[-2]
    mask = visible_mask(N, S, causal=inputs.causal, attn_mask=inputs.attn_mask,
                        device=inputs.q.device, alignment=alignment)
    dead = ~mask.any(dim=-1, keepdim=True)  # (..., N, 1)
    if alignment == "top_left" and not dead.any():
        return inputs
    dout = None if inputs.dout is None else inputs.dout.masked_fill(dead, 0)
    return inputs.replace(causal=False, attn_mask=mask | dead, dout=dout)


def _pattern_textbook_inputs(inputs: Inputs) -> Inputs:
    """The same for a pattern (``causal=False``, no mask): its masks become an explicit mask
    when some row sees no key, its score_mods stay a pattern. A family that both masks and
    modifies scores cannot be split; its dead rows are then left to the textbook."""
    pattern = inputs.pattern
    (B, Hq, N, _), S = inputs.q.shape, inputs.k.shape[2]
    mask = pattern.dense_mask(B, Hq, N, S, inputs.q.device)
    if mask is None or bool(mask.any(dim=-1).all()):
        return inputs
    if any(t.family.mask_mod and t.family.score_mod for t in pattern.terms):
        return inputs
    dead = ~mask.any(dim=-1, keepdim=True)  # (B, Hq, N, 1)
    scores_only = tuple(t for t in pattern.terms if t.family.mask_mod is None)
    dout = None if inputs.dout is None else inputs.dout.masked_fill(dead, 0)
    return inputs.replace(attn_mask=mask | dead, dout=dout,
                          pattern=Pattern(scores_only) if scores_only else None)


def naive_textbook(inputs: Inputs, backward: bool, lse: bool) -> Textbook:
    naive = get("naive")
    out, grads = run_variant(naive, inputs, backward=backward, poison=False)
    pt_lse = naive.lse(inputs.q, inputs.k, inputs.v, **inputs.kwargs(naive)) if lse else None
    return Textbook("naive", out, grads, pt_lse)


def flash_textbook(inputs: Inputs, backward: bool, lse: bool) -> Textbook:
    """FlashAttention's formulas, unfused: matmuls in the test dtype, softmax statistics (max,
    sum, lse) and P in float32 as every fused kernel keeps them, and the backward recomputing
    P = exp(S - lse) from the stored lse. That recomputation costs relative accuracy
    eps32 * |lse| in P, which is invisible at ordinary logits and dominates at |logit| ~ 1e4;
    a variant built the same way is held to what this design itself achieves."""
    q, k, v = inputs.q, inputs.k, inputs.v
    dtype, acc = q.dtype, torch.promote_types(q.dtype, torch.float32)
    B, Hq, N, D = q.shape
    groups = Hq // k.shape[1]
    scale = default_scale(D, inputs.scale)
    ke, ve = expand_kv(k, v, Hq)  # (B, Hq, S, D)
    s = (q @ (ke * scale).transpose(-2, -1)).to(acc)  # (B, Hq, N, S)
    if inputs.pattern is not None:
        s = inputs.pattern.apply_dense(s).to(acc)
    mask = visible_mask(N, k.shape[2], causal=inputs.causal, attn_mask=inputs.attn_mask,
                        device=q.device)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    m = s.amax(dim=-1, keepdim=True)
    row_lse = m + torch.log(torch.exp(s - m).sum(dim=-1, keepdim=True))  # (B, Hq, N, 1)
    p = torch.exp(s - row_lse)
    out = p.to(dtype) @ ve  # (B, Hq, N, Dv)
    grads = None
    if backward:
        dout = inputs.dout
        dp = (dout @ ve.transpose(-2, -1)).to(acc)  # (B, Hq, N, S)
        delta = (dout.to(acc) * out.to(acc)).sum(dim=-1, keepdim=True)  # (B, Hq, N, 1)
        ds = (p * (dp - delta)).to(dtype)
        S = ke.shape[2]
        dq = (ds @ ke) * scale
        dk = ((ds.transpose(-2, -1) @ q) * scale).view(B, -1, groups, S, D).sum(2)
        dv = (p.to(dtype).transpose(-2, -1) @ dout).view(B, -1, groups, S, v.shape[-1]).sum(2)
        grads = (dq, dk, dv)  # dk, dv summed over each group of query heads: (B, Hkv, S, .)
    return Textbook("flash", out, grads, row_lse.squeeze(-1).float() if lse else None)


def textbooks(inputs: Inputs, *, alignment: str = "top_left", backward: bool = False,
              lse: bool = False) -> list[Textbook]:
    """Both textbook formulations of ``inputs`` (the rule takes the larger of their errors)."""
    plain = textbook_inputs(inputs, alignment)
    with torch.no_grad():
        return [naive_textbook(plain, backward, lse), flash_textbook(plain, backward, lse)]
