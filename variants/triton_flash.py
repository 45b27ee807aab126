"""Our Triton FlashAttention-2 kernel (``kernels/``) as a registry variant.

On a GPU the kernels compile; on a CPU they run only in Triton's interpreter
(``TRITON_INTERPRET=1``, set by the CLI and the tests before anything imports a kernel), which
is exact but about a thousand times slower: verify there, never time there. Without CUDA and
without the interpreter the variant reports itself unavailable instead of failing to import.
"""

from __future__ import annotations

import torch
from attnbench.kernels import interpreter_active, triton_available
from attnbench.variants.patterns import Pattern
from attnbench.variants.registry import register_attention

FP_LOW = (torch.float16, torch.bfloat16)


def _unavailable() -> str | None:
    return triton_available()


def _interpreted_reason() -> str | None:
    """Timing the interpreter would measure Python, not the kernel."""
    return ("runs in the Triton interpreter here (TRITON_INTERPRET=1): timing and memory would "
            "measure the interpreter") if interpreter_active() else None


def _cpu_reason() -> str | None:
    """On CPU the kernel exists only interpreted."""
    return None if interpreter_active() else "on CPU only under TRITON_INTERPRET=1"


def _causal(causal: bool, pattern: Pattern | None) -> bool:
    """The kernel's only pattern is causal (declared ``patterns=("causal",)``): the registry
    lets no other reach it."""
    return causal or (pattern is not None and pattern.families == ("causal",))


def _lse(q, k, v, *, causal=False, scale=None, attn_mask=None, pattern=None):
    from attnbench.kernels.flash_attn import flash_attention_forward

    return flash_attention_forward(q, k, v, _causal(causal, pattern), scale)[1]


@register_attention(
    "triton_flash", devices=("cpu", "cuda"), dtypes=(torch.float32, *FP_LOW),
    attn_mask=False, head_dim_max=256, requires=("triton",), fully_masked_rows="undefined",
    memory="fused", exposes_lse=True, lse=_lse, available=_unavailable,
    timeable=_interpreted_reason, patterns=("causal",),
    notes="Triton FlashAttention-2, fwd+bwd; fp32 via tl.dot in IEEE precision; on CPU only "
          "under the Triton interpreter (bf16 dots upcast to fp32 there); patterns: causal "
          "only (no attn_mask, so no dense-mask path)")
def triton_flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
                 scale: float | None = None, attn_mask: torch.Tensor | None = None,
                 pattern: Pattern | None = None) -> torch.Tensor:
    """Triton FlashAttention-2: online softmax forward, recomputing backward, GQA, any length."""
    if attn_mask is not None:
        raise ValueError("attention variant 'triton_flash': attn_mask is not supported "
                         "(capability attn_mask=False); pass causal=True for causal masking")
    if q.device.type == "cpu" and (why := _cpu_reason()):
        raise RuntimeError(f"attention variant 'triton_flash': {why}")
    from attnbench.kernels.flash_attn import flash_attention

    return flash_attention(q, k, v, causal=_causal(causal, pattern), scale=scale)
