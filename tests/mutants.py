"""Deliberately broken attention variants: verification must flag every one of them.

Each mutant is a one-line departure from correct attention that has shipped in real code
(wrong scale, off-by-one causal mask, missing max subtraction, fp16 mask overflow, ...). They
are NOT registered on import: ``registered()`` registers them under test-only names for the
duration of a ``with`` block and removes them after, so no other test ever sees them.

Glossary: B batch, Hq query heads, Hkv key/value heads, N query length, S key length,
D head dim, Dv value head dim.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial

import torch
from attnbench.variants.common import causal_mask, default_scale
from attnbench.variants.naive import naive
from attnbench.variants.pattern_families import alibi_slopes, document_ids
from attnbench.variants.patterns import Pattern, Term
from attnbench.variants.registry import register_attention, unregister


def broken(q, k, v, *, causal=False, scale=None, attn_mask=None, model_scale=False,
           causal_offset=0, alignment="top_left", subtract_max=True, fill=-math.inf,
           additive_mask=False, use_mask=True, kv_map="group", detach_v=False,
           mix_heads=False, truncate_d=False, assume_contiguous=False, fp32_out=False,
           heads_last=False):
    """Textbook attention with one switch per bug; the defaults are correct."""
    B, Hq, N, D = q.shape
    if fp32_out:  # "more accurate": computes in float32 and never casts back
        q, k, v = q.float(), k.float(), v.float()
    Hkv, S = k.shape[1], k.shape[2]
    if assume_contiguous:  # reads storage as if every tensor were contiguous
        q, k, v = (torch.as_strided(t, t.shape, torch.empty(t.shape).stride(),
                                    t.storage_offset()) for t in (q, k, v))
    heads = torch.arange(Hq, device=q.device)
    kv = heads // (Hq // Hkv) if kv_map == "group" else heads % Hkv
    k, v = k[:, kv], (v.detach() if detach_v else v)[:, kv]  # (B, Hq, S, .)
    if truncate_d:  # "the kernel handles powers of two": keeps the first 2^k features
        keep = 2 ** int(math.log2(D))
        q, k = q[..., :keep], k[..., :keep]
    scale = 1 / math.sqrt(Hq * D) if model_scale else default_scale(D, scale)
    s = (q @ k.transpose(-2, -1)) * scale  # (B, Hq, N, S)
    visible = None
    if causal:
        i = torch.arange(N, device=q.device)[:, None] + causal_offset
        shift = S - N if alignment == "bottom_right" else 0
        visible = torch.arange(S, device=q.device)[None, :] <= i + shift
    if attn_mask is not None and use_mask:
        visible = attn_mask if visible is None else visible & attn_mask
    if visible is not None:
        if additive_mask:  # bias computed in the input dtype: -1e20 is -inf in fp16, 0*-inf NaN
            s = s + (~visible).to(s.dtype) * torch.tensor(-1e20, dtype=s.dtype)
        else:
            s = s.masked_fill(~visible, fill)
    if subtract_max:
        p = torch.softmax(s, dim=-1)
    else:
        e = torch.exp(s)
        p = e / e.sum(dim=-1, keepdim=True)
    out = p @ v  # (B, Hq, N, Dv)
    if mix_heads:  # (B, Hq, N, Dv) read back as if it were (B, N, Hq, Dv)
        out = out.transpose(1, 2).reshape(B, Hq, N, -1)
    if heads_last:  # the (B, N, Hq, Dv) layout of a kernel that forgot to transpose back
        out = out.transpose(1, 2)
    return out


def online(q, k, v, *, causal=False, scale=None, attn_mask=None, block=32, drop_tail=False,
           rescale=True):
    """Online-softmax attention over key blocks (FlashAttention's forward), with switches."""
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)  # (B, Hq, S, .)
    N, S = q.shape[2], k.shape[2]
    m = torch.full((*q.shape[:3], 1), -math.inf, dtype=torch.float32, device=q.device)
    l = torch.zeros_like(m)
    acc = torch.zeros((*q.shape[:3], v.shape[-1]), dtype=torch.float32, device=q.device)
    stop_at = S - S % block if drop_tail and S % block else S
    for start in range(0, stop_at, block):
        stop = min(start + block, S)
        s = (q @ k[:, :, start:stop].transpose(-2, -1)).float() * default_scale(q.shape[-1],
                                                                                 scale)
        visible = causal_mask(N, S, q.device)[:, start:stop] if causal else None
        if attn_mask is not None:
            part = attn_mask[..., start:stop]
            visible = part if visible is None else visible & part
        if visible is not None:
            s = s.masked_fill(~visible, -math.inf)
        m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
        safe = torch.where(torch.isinf(m_new), 0.0, m_new)
        p = torch.exp(s - safe)
        alpha = torch.exp(m - safe) if rescale else torch.ones_like(m)
        l = l * alpha + p.sum(dim=-1, keepdim=True)
        acc = acc * alpha + p @ v[:, :, start:stop].float()
        m = m_new
    return torch.where(l > 0, acc / l, 0.0).to(q.dtype)


def _lse_log2(q, k, v, *, causal=False, scale=None, attn_mask=None):
    """log2-domain lse (Triton kernels keep exp2 internally) exposed as if it were natural."""
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    s = (q @ k.transpose(-2, -1)).float() * default_scale(q.shape[-1], scale)
    if causal:
        s = s.masked_fill(~causal_mask(q.shape[2], k.shape[2], q.device), -math.inf)
    if attn_mask is not None:
        s = s.masked_fill(~attn_mask, -math.inf)
    return torch.logsumexp(s, dim=-1) / math.log(2)


# Pattern mutants: a wrong definition of one family (mask_mod / score_mod factories), run by
# naive's dense evaluation; the pattern check's float64 reference must disagree.
def _window_w_plus_one(shape, window):  # attention-gym's q - kv <= w read as our window
    return lambda b, h, q_idx, kv_idx: (kv_idx <= q_idx) & (q_idx - kv_idx <= window)


def _prefix_inclusive(shape, prefix):  # key `prefix` counted into the prefix
    return lambda b, h, q_idx, kv_idx: (kv_idx <= prefix) | (kv_idx <= q_idx)


def _document_shifted(shape, lengths):  # ids read one position late
    ids = document_ids(lengths, max(shape.N, shape.S) + 1, shape.device)[1:]
    return lambda b, h, q_idx, kv_idx: ids[q_idx] == ids[kv_idx]


def _alibi_reversed(shape):  # slopes assigned to heads in the wrong order
    slopes = alibi_slopes(shape.H, shape.device).flip(0)
    return lambda score, b, h, q_idx, kv_idx: score + slopes[h] * (kv_idx - q_idx)


def pattern_broken(q, k, v, *, causal=False, scale=None, attn_mask=None, pattern=None,
                   family="", mask_mod=None, score_mod=None, mask_first=False):
    """naive on ``pattern`` with one family's definition replaced, or (``mask_first``) the
    mask applied before the score_mods, as a hand-written soft-cap after masking does."""
    if pattern is not None:
        pattern = Pattern(tuple(
            Term(replace(t.family, **{n: f for n, f in (("mask_mod", mask_mod),
                                                          ("score_mod", score_mod)) if f}),
                 t.params) if t.family.name == family else t for t in pattern.terms))
    if not (mask_first and pattern is not None):
        return naive(q, k, v, causal=causal, scale=scale, attn_mask=attn_mask, pattern=pattern)
    s = (q @ k.transpose(-2, -1)) * default_scale(q.shape[-1], scale)  # (B, Hq, N, S)
    keep = pattern.dense_mask(*s.shape, device=q.device)
    s = s.masked_fill(~keep, -math.inf) if keep is not None else s
    s = pattern.apply_dense(s, masked=False)  # soft-cap(-inf) = -cap: masked keys leak in
    return torch.softmax(s, dim=-1).to(q.dtype) @ v  # (B, Hq, N, Dv)


@dataclass
class Mutant:
    name: str
    bug: str
    fn: Callable
    caps: dict = field(default_factory=dict)
    dtypes: tuple[torch.dtype, ...] = (torch.float32,)


MUTANTS = [
    Mutant("mut_scale_dmodel", "softmax scale 1/sqrt(d_model) instead of 1/sqrt(head_dim)",
           partial(broken, model_scale=True)),
    Mutant("mut_causal_off_by_one", "causal mask lets query i see key i+1",
           partial(broken, causal_offset=1)),
    Mutant("mut_no_max_subtraction", "softmax as exp(s)/sum exp(s): overflows at large logits",
           partial(broken, subtract_max=False)),
    Mutant("mut_fp16_mask_fill", "additive mask bias -1e20 computed in fp16: -inf, 0*-inf NaN",
           partial(broken, additive_mask=True), dtypes=(torch.float16,)),
    Mutant("mut_finite_sentinel", "masked logits filled with -1e4 instead of -inf",
           partial(broken, fill=-1e4), {"fully_masked_rows": "zero"}),
    Mutant("mut_head_mixing", "output heads and positions mixed by a wrong reshape",
           partial(broken, mix_heads=True)),
    Mutant("mut_drop_last_block", "online softmax drops the ragged last key block",
           partial(online, drop_tail=True), {"fully_masked_rows": "zero"}),
    Mutant("mut_stale_rescale", "online softmax never rescales the accumulator",
           partial(online, rescale=False), {"fully_masked_rows": "zero"}),
    Mutant("mut_gqa_modulo", "query head h reads kv head h % Hkv, not h // (Hq/Hkv)",
           partial(broken, kv_map="modulo")),
    Mutant("mut_detached_v", "v detached: dv silently missing from the backward",
           partial(broken, detach_v=True)),
    Mutant("mut_alignment_lie", "bottom-right causal alignment, declared top-left",
           partial(broken, alignment="bottom_right")),
    Mutant("mut_ignores_mask", "attn_mask accepted and ignored", partial(broken, use_mask=False)),
    Mutant("mut_lse_log2", "log-sum-exp returned in log2 units", partial(broken),
           {"exposes_lse": True, "lse": _lse_log2}),
    Mutant("mut_masked_rows_lie", "fully masked rows are NaN, declared zero", partial(broken),
           {"fully_masked_rows": "zero"}),
    Mutant("mut_assumes_contiguous", "strides ignored: views read as contiguous storage",
           partial(broken, assume_contiguous=True)),
    Mutant("mut_fp32_output", "float32 output for float16 inputs (never cast back)",
           partial(broken, fp32_out=True), dtypes=(torch.float16,)),
    Mutant("mut_heads_last", "output returned as (B, N, Hq, Dv)", partial(broken, heads_last=True)),
    Mutant("mut_truncated_head_dim", "only the first power-of-two features of D are used",
           partial(broken, truncate_d=True)),
    Mutant("mut_window_off_by_one", "sliding window keeps q - kv <= w: w + 1 keys",
           partial(pattern_broken, family="sliding_window", mask_mod=_window_w_plus_one),
           {"patterns": "all"}),
    Mutant("mut_alibi_head_order", "ALiBi slopes assigned to the heads in reverse order",
           partial(pattern_broken, family="alibi", score_mod=_alibi_reversed),
           {"patterns": "all"}),
    Mutant("mut_softcap_after_mask", "soft-cap applied after the mask: -inf becomes -cap",
           partial(pattern_broken, mask_first=True), {"patterns": "all"}),
    Mutant("mut_prefix_off_by_one", "prefix-LM keys kv <= prefix visible: one key too many",
           partial(pattern_broken, family="prefix_lm", mask_mod=_prefix_inclusive),
           {"patterns": "all"}),
    Mutant("mut_document_shifted", "document ids read one position late",
           partial(pattern_broken, family="document", mask_mod=_document_shifted),
           {"patterns": "all"}),
]

PATTERN_MUTANTS = ("mut_window_off_by_one", "mut_alibi_head_order", "mut_softcap_after_mask",
                   "mut_prefix_off_by_one", "mut_document_shifted")


@contextmanager
def registered() -> Iterator[list[Mutant]]:
    """Register every mutant for the duration of the block, then remove them all."""
    try:
        for mutant in MUTANTS:
            register_attention(mutant.name, **mutant.caps,
                               notes=f"MUTANT: {mutant.bug}")(mutant.fn)
        yield MUTANTS
    finally:
        for mutant in MUTANTS:
            unregister(mutant.name)
