"""PyTorch's ``scaled_dot_product_attention``: the dispatcher's own choice and each backend pinned.

Pinning a backend (``torch.nn.attention.sdpa_kernel``) makes a benchmark say which kernel it
timed; the dispatcher's silent fallback to the math backend is the classic way a "flash"
number turns out to be something else. Where a backend exists is declared per device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from attnbench.variants.common import expand_kv, visible_mask
from attnbench.variants.registry import register_attention
from torch.nn.attention import SDPBackend, sdpa_kernel

LOW_PRECISION = (torch.float16, torch.bfloat16)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool,
          scale: float | None, attn_mask: torch.Tensor | None, native_gqa: bool = True
          ) -> torch.Tensor:
    """SDPA rejects ``is_causal`` together with a mask, so the two are merged into one mask."""
    N, S = q.shape[-2], k.shape[-2]
    if attn_mask is not None:
        attn_mask = visible_mask(N, S, causal=causal, attn_mask=attn_mask, device=q.device)
        causal = False
    gqa = k.shape[1] != q.shape[1]
    if gqa and not native_gqa:
        k, v = expand_kv(k, v, q.shape[1])  # (B, Hq, S, D)
        gqa = False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal,
                                          scale=scale, enable_gqa=gqa)


def _pinned(backend: SDPBackend, native_gqa: bool = True):
    def fn(q, k, v, *, causal=False, scale=None, attn_mask=None):
        # Fused backends refuse a last dim with stride != 1 ("No available kernel"); the
        # contract accepts any strided view, so such inputs are copied.
        q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
        with sdpa_kernel([backend]):
            return _sdpa(q, k, v, causal=causal, scale=scale, attn_mask=attn_mask,
                         native_gqa=native_gqa)

    fn.__doc__ = f"scaled_dot_product_attention pinned to {backend.name}."
    return fn


def _cuda_reason() -> str | None:
    return None if torch.cuda.is_available() else "no CUDA device on this machine"


def _cudnn_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device on this machine"
    if not torch.backends.cudnn.is_available():
        return "cuDNN is not available in this torch build"
    if torch.cuda.get_device_capability() < (8, 0):
        return "cuDNN attention needs compute capability 8.0 or newer"
    return None


@register_attention("sdpa", fully_masked_rows="zero", memory="fused",
                    notes="dispatcher's choice of backend; which one ran is not recorded")
def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
         scale: float | None = None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """torch.nn.functional.scaled_dot_product_attention, backend chosen by PyTorch."""
    return _sdpa(q, k, v, causal=causal, scale=scale, attn_mask=attn_mask)


register_attention("sdpa_math", fully_masked_rows="zero", memory="materialising",
                   notes="materialises the score matrix (upcasts fp16/bf16 on CPU)")(
    _pinned(SDPBackend.MATH))

register_attention(
    "sdpa_flash", fully_masked_rows="zero", memory="fused", distinct_value_dim=False,
    device_overrides={"cuda": {"dtypes": LOW_PRECISION, "attn_mask": False, "head_dim_max": 256}},
    notes="CPU: PyTorch's C++ flash kernel (any dtype, masks); CUDA: FlashAttention-2 (fp16/bf16, "
          "no explicit mask)")(_pinned(SDPBackend.FLASH_ATTENTION))

register_attention(
    "sdpa_efficient", devices=("cuda",), dtypes=(torch.float32, *LOW_PRECISION),
    fully_masked_rows="zero", memory="fused", available=_cuda_reason,
    notes="xformers-style memory-efficient CUDA kernel; GQA by repeating K/V heads")(
    _pinned(SDPBackend.EFFICIENT_ATTENTION, native_gqa=False))

register_attention(
    "sdpa_cudnn", devices=("cuda",), dtypes=LOW_PRECISION, attn_mask=False, head_dim_max=128,
    distinct_value_dim=False, fully_masked_rows="undefined", memory="fused",
    available=_cudnn_reason,
    notes="cuDNN fused attention (sm80+); GQA by repeating K/V heads")(
    _pinned(SDPBackend.CUDNN_ATTENTION, native_gqa=False))
