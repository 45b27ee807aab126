"""Bad input, one class at a time, through the registry calling path of every attention variant.

Each error must name the variant, the argument, and the expected and actual values, so the
person calling a kernel with a wrong shape learns what to fix without reading the kernel.
"""

from __future__ import annotations

import math
import re

import attnbench.variants  # noqa: F401
import pytest
import torch
from attnbench.variants.registry import get, list_variants

ATTENTION = [v.name for v in list_variants("attention")]
B, H, N, S, D = 2, 2, 4, 6, 8


def good() -> dict:
    """Valid arguments (never zeros); each case below breaks exactly one thing."""
    gen = torch.Generator().manual_seed(0)
    return {"q": torch.randn(B, H, N, D, generator=gen),
            "k": torch.randn(B, H, S, D, generator=gen),
            "v": torch.randn(B, H, S, D, generator=gen)}


def with_(**changes) -> dict:
    return {**good(), **changes}


def meta(shape) -> torch.Tensor:
    return torch.empty(shape, device="meta")


# (id, arguments, exception type, the words the message must contain)
BAD = [
    ("rank", with_(q=torch.randn(B, N, D)), ValueError,
     "q must have 4 dims (B, H, L, D), got shape (2, 4, 8)"),
    ("not_a_tensor", with_(k=[[1.0]]), TypeError, "k must be a torch.Tensor, got list"),
    ("not_floating", with_(v=torch.ones(B, H, S, D, dtype=torch.int64)), TypeError,
     "v must be floating point, got torch.int64"),
    ("empty", with_(q=torch.randn(B, H, 0, D)), ValueError, "q is empty, shape (2, 2, 0, 8)"),
    ("dtype_mismatch", with_(k=torch.randn(B, H, S, D, dtype=torch.float16)), TypeError,
     "q, k, v must share a dtype, got torch.float32, torch.float16, torch.float32"),
    ("device_mismatch", with_(k=meta((B, H, S, D))), ValueError,
     "q, k, v must be on one device, got cpu, meta, cpu"),
    ("batch_mismatch", with_(k=torch.randn(1, H, S, D)), ValueError,
     "batch sizes differ: q 2, k 1, v 2"),
    ("kv_heads_mismatch", with_(v=torch.randn(B, 1, S, D)), ValueError,
     "k and v head counts differ: k 2, v 1"),
    ("hq_not_multiple", with_(q=torch.randn(B, 3, N, D)), ValueError,
     "query heads Hq=3 must be a multiple of key/value heads Hkv=2"),
    ("head_dim_mismatch", with_(k=torch.randn(B, H, S, 16)), ValueError,
     "head dim of k (16) must equal head dim of q (8)"),
    ("key_length_mismatch", with_(v=torch.randn(B, H, S + 1, D)), ValueError,
     "key length of k (6) must equal key length of v (7)"),
    ("causal_not_bool", with_(causal=1), TypeError, "causal must be a bool, got 1"),
    ("scale_nan", with_(scale=math.nan), ValueError,
     "scale must be a finite number or None, got nan"),
    ("scale_inf", with_(scale=math.inf), ValueError,
     "scale must be a finite number or None, got inf"),
    ("scale_not_number", with_(scale="0.5"), ValueError,
     "scale must be a finite number or None, got '0.5'"),
    ("mask_dtype", with_(attn_mask=torch.ones(N, S)), TypeError,
     "attn_mask must be a bool tensor (True = attend), got torch.float32"),
    ("mask_not_tensor", with_(attn_mask=[[True]]), TypeError,
     "attn_mask must be a bool tensor (True = attend), got <class 'list'>"),
    ("mask_shape", with_(attn_mask=torch.ones(3, 5, dtype=torch.bool)), ValueError,
     "attn_mask shape (3, 5) does not broadcast to (B, Hq, N, S) = (2, 2, 4, 6)"),
    ("mask_device", with_(attn_mask=meta((N, S)).bool()), ValueError,
     "attn_mask on meta, q on cpu"),
]


@pytest.mark.parametrize("name", ATTENTION)
@pytest.mark.parametrize("case_id, kwargs, error, words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_named(name, case_id, kwargs, error, words):
    variant = get(name)
    with pytest.raises(error) as info:
        variant(**kwargs)
    message = str(info.value)
    assert f"attention variant {name!r}" in message
    assert words in message, f"{case_id}: {message!r} lacks {words!r}"


@pytest.mark.parametrize("name", [v.name for v in list_variants("attention")
                                  if v.caps.exposes_lse])
def test_lse_validates_like_a_call(name):
    with pytest.raises(ValueError, match=re.escape("batch sizes differ: q 2, k 1, v 2")):
        get(name).lse(**with_(k=torch.randn(1, H, S, D)))


def test_valid_inputs_pass_validation():
    """The baseline really is valid: it reaches the variant (naive computes an output)."""
    out = get("naive")(**good())
    assert out.shape == (B, H, N, D) and torch.isfinite(out).all()
