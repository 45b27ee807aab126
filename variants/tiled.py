"""FlashAttention written in plain PyTorch: the readable reference for the Triton kernel.

Forward: loop over key/value blocks of ``BLOCK_S`` keys, keeping per query row a running max
``m``, a running sum ``l`` of exp(score - m) and an accumulator rescaled whenever ``m`` grows
(the online softmax). Only (B, Hq, N, BLOCK_S) scores exist at a time, so extra memory is O(N),
not O(N*S). The log-sum-exp ``lse = m + log(l)`` per row is saved for the backward pass.

Backward (FlashAttention-2): recompute each block's probabilities from ``lse`` instead of
storing them, with ``delta = rowsum(dO * O)`` standing in for rowsum(dP * P).

Fully masked rows (no visible key) produce 0 output and 0 gradient, like PyTorch's SDPA.

Attention patterns (``pattern=``, variants/patterns.py) are evaluated one key block at a time
from their mask_mod / score_mod; the backward chains dS through the score_mod by autograd on
the block, so every pattern, score-modifying ones included, runs forward and backward.
"""

from __future__ import annotations

import torch
from attnbench.variants.common import causal_mask, default_scale, expand_kv
from attnbench.variants.patterns import Pattern
from attnbench.variants.registry import register_attention

BLOCK_S = 64


def _block_mask(N: int, start: int, stop: int, causal: bool, attn_mask: torch.Tensor | None,
                device: torch.device) -> torch.Tensor | None:
    """Visibility of keys [start, stop) for every query: (N, bs), or the mask's broadcast shape.

    Built one block at a time so that no N x S mask is ever materialised.
    """
    mask = None
    if causal:
        mask = causal_mask(N, N, device, cols=range(start, stop))  # (N, bs), top-left
    if attn_mask is not None:
        block = attn_mask[..., start:stop] if attn_mask.shape[-1] > 1 else attn_mask
        mask = block if mask is None else block & mask
    return mask


def _accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 accumulation for fp16/bf16/fp32 (as the fused kernels do), fp64 for fp64 inputs."""
    return torch.promote_types(dtype, torch.float32)


def _block_scores(q: torch.Tensor, k: torch.Tensor, start: int, stop: int, scale: float,
                  causal: bool, mask: torch.Tensor | None, pattern: Pattern | None
                  ) -> torch.Tensor:
    """Scores of keys [start, stop) in the accumulator dtype, pattern and masks applied."""
    acc_dtype = _accumulator_dtype(q.dtype)
    s = (q @ k[:, :, start:stop].transpose(-2, -1)).to(acc_dtype) * scale  # (B, H, N, bs)
    if pattern is not None:
        s = pattern.apply_dense(s, kv_start=start, S=k.shape[2])
    block_mask = _block_mask(q.shape[2], start, stop, causal, mask, q.device)
    if block_mask is not None:
        s = s.masked_fill(~block_mask, float("-inf"))
    return s


def _forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, causal: bool,
             mask: torch.Tensor | None, block: int, pattern: Pattern | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """q (B, Hq, N, D), k/v already expanded to Hq heads. Returns out and lse (fp32)."""
    B, H, N, _ = q.shape
    S, Dv = k.shape[2], v.shape[3]
    acc_dtype = _accumulator_dtype(q.dtype)
    m = torch.full((B, H, N, 1), float("-inf"), dtype=acc_dtype, device=q.device)
    l = torch.zeros((B, H, N, 1), dtype=acc_dtype, device=q.device)
    acc = torch.zeros((B, H, N, Dv), dtype=acc_dtype, device=q.device)
    for start in range(0, S, block):
        stop = min(start + block, S)
        s = _block_scores(q, k, start, stop, scale, causal, mask, pattern)  # (B, H, N, bs)
        m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
        # A row that has seen only masked keys keeps m = -inf; shift by 0 there to avoid inf-inf.
        m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
        p = torch.exp(s - m_safe)  # (B, H, N, bs)
        alpha = torch.exp(m - m_safe)  # rescales what was accumulated under the old max
        l = l * alpha + p.sum(dim=-1, keepdim=True)
        acc = acc * alpha + p.to(v.dtype) @ v[:, :, start:stop]
        m = m_new
    out = torch.where(l > 0, acc / l.clamp_min(torch.finfo(acc_dtype).tiny), 0.0)
    lse = (m + torch.log(l)).squeeze(-1)  # (B, H, N); -inf on fully masked rows
    return out.to(q.dtype), lse


def _backward(q, k, v, out, lse, dout, scale, causal, mask, block, pattern=None):
    """Gradients w.r.t. q and the Hq-expanded k, v, one key block at a time."""
    acc = _accumulator_dtype(q.dtype)
    qa, dout = q.to(acc), dout.to(acc)
    delta = (dout * out.to(acc)).sum(dim=-1, keepdim=True)  # (B, H, N, 1)
    lse_safe = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse).unsqueeze(-1)
    dq = torch.zeros_like(q, dtype=acc)
    dk = torch.empty_like(k, dtype=acc)
    dv = torch.empty_like(v, dtype=acc)
    for start in range(0, k.shape[2], block):
        stop = min(start + block, k.shape[2])
        kb, vb = k[:, :, start:stop].to(acc), v[:, :, start:stop].to(acc)
        # Scores exactly as the forward computed them (matmul in the input dtype): P is
        # recomputed from the forward's lse, and scores rounded differently (bf16 vs fp32
        # products) shift P by exp(rounding) -- a factor e^4 at |logit| ~ 1e3 in bf16.
        s_raw = (q @ k[:, :, start:stop].transpose(-2, -1)).to(acc) * scale  # (B, H, N, bs)
        with torch.enable_grad():  # dS flows back through the pattern's score_mod
            s_raw.requires_grad_(pattern is not None and not pattern.mask_only)
            s = s_raw if pattern is None else pattern.apply_dense(s_raw, start, k.shape[2])
        block_mask = _block_mask(q.shape[2], start, stop, causal, mask, q.device)
        if block_mask is not None:
            s = s.masked_fill(~block_mask, float("-inf"))
        p = torch.exp(s.detach() - lse_safe)  # exactly the forward's probabilities
        dv[:, :, start:stop] = p.transpose(-2, -1) @ dout
        dp = dout @ vb.transpose(-2, -1)  # (B, H, N, bs)
        ds = p * (dp - delta)
        if s_raw.requires_grad:
            ds = torch.autograd.grad(s, s_raw, ds)[0]
        dq += (ds @ kb) * scale
        dk[:, :, start:stop] = (ds.transpose(-2, -1) @ qa) * scale
    return dq, dk, dv


class _TiledAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, scale, causal, mask, block, pattern):
        out, lse = _forward(q, k, v, scale, causal, mask, block, pattern)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.scale, ctx.causal, ctx.mask, ctx.block = scale, causal, mask, block
        ctx.pattern = pattern
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _backward(q, k, v, out, lse, dout, ctx.scale, ctx.causal, ctx.mask,
                               ctx.block, ctx.pattern)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None, None


def _tiled(q, k, v, causal, scale, attn_mask, pattern=None):
    ke, ve = expand_kv(k, v, q.shape[1])  # (B, Hq, S, D); autograd sums groups back to Hkv
    return _TiledAttention.apply(q, ke, ve, default_scale(q.shape[-1], scale), causal, attn_mask,
                                 BLOCK_S, pattern)


def _tiled_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
               scale: float | None = None, attn_mask: torch.Tensor | None = None,
               pattern: Pattern | None = None) -> torch.Tensor:
    return _tiled(q, k, v, causal, scale, attn_mask, pattern)[1]  # (B, Hq, N)


@register_attention("tiled", fully_masked_rows="zero", memory="fused", exposes_lse=True,
                    lse=_tiled_lse, patterns="all",
                    notes=f"online softmax over key blocks of {BLOCK_S}; O(N) extra memory; "
                          "any pattern, evaluated per key block")
def tiled(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
          scale: float | None = None, attn_mask: torch.Tensor | None = None,
          pattern: Pattern | None = None) -> torch.Tensor:
    """FlashAttention-2 algorithm in plain PyTorch (online softmax, recomputing backward)."""
    return _tiled(q, k, v, causal, scale, attn_mask, pattern)[0]
