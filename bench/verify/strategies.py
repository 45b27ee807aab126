"""Hypothesis strategies for attention cases a variant supports, for property-based tests.

    @given(case=cases(variant, torch.float16), seed=seeds())
    def test_mine(case, seed):
        assert check_agreement(variant, case, seed).passed

Shapes are drawn, tensors are then generated with torch from the drawn seed (hypothesis shrinks
the shape and the seed, not millions of floats). Optional features the variant does not
declare (GQA, masks, causal, Dv != D, backward) are never drawn; ``fit_case`` does the same
for hand-written examples. Sizes default to N, S <= 128 and B * Hq <= 4: big enough for
several 64-wide tiles, small enough for a Triton kernel under the CPU interpreter.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from attnbench.variants.registry import Capabilities, Case, Variant
from hypothesis import strategies as st

HEAD_DIMS = (8, 16, 24, 32, 40, 64)  # 24 and 40 are not powers of two on purpose


def _caps(variant: Variant, device: str) -> Capabilities:
    return variant.caps.on(torch.device(device).type)


def fit_case(variant: Variant, case: Case) -> Case:
    """Drop the optional features of ``case`` that ``variant`` does not declare."""
    caps = _caps(variant, case.device)
    return replace(case, causal=case.causal and caps.causal, mask=case.mask and caps.attn_mask,
                   Hkv=case.Hkv if caps.gqa else None,
                   Dv=case.Dv if caps.distinct_value_dim else None,
                   backward=case.backward and caps.backward)


@st.composite
def cases(draw: st.DrawFn, variant: Variant, dtype: torch.dtype, device: str = "cpu", *,
          max_len: int = 128, max_heads_total: int = 4, backward: bool | None = None) -> Case:
    """A ``Case`` within ``variant``'s declared capabilities (B * Hq <= max_heads_total)."""
    caps = _caps(variant, device)
    hkv = draw(st.integers(1, 2))
    groups = draw(st.sampled_from((1, 2))) if caps.gqa else 1
    B = draw(st.integers(1, max(1, max_heads_total // (hkv * groups))))
    N = draw(st.integers(1, max_len))
    S = draw(st.one_of(st.none(), st.integers(1, max_len)))
    dims = [d for d in HEAD_DIMS if d >= caps.head_dim_min
            and (caps.head_dim_max is None or d <= caps.head_dim_max)]
    D = draw(st.sampled_from(dims))
    Dv = draw(st.one_of(st.none(), st.sampled_from(dims))) if caps.distinct_value_dim else None
    return Case(B=B, Hq=hkv * groups, Hkv=hkv, N=N, S=S, D=D, Dv=Dv, dtype=dtype, device=device,
                causal=draw(st.booleans()) if caps.causal else False,
                mask=draw(st.booleans()) if caps.attn_mask else False,
                backward=caps.backward if backward is None else backward and caps.backward)


def seeds() -> st.SearchStrategy[int]:
    return st.integers(0, 2**31 - 1)
