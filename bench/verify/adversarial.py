"""Adversarial inputs: huge logits, a single query, odd shapes, non-contiguous NaN-fenced views.

Each function returns a ``CheckResult`` judged by the tolerance rule (forward, and gradients
too when ``case.backward`` and the variant has a backward).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from attnbench.variants.common import default_scale, expand_kv
from attnbench.variants.registry import Case, Variant, not_supported_reasons
from attnbench.verify.agreement import evaluate_all
from attnbench.verify.reference import Inputs, make_inputs
from attnbench.verify.result import CheckResult, merge, skipped


def _judge(check: str, variant: Variant, case: Case, inputs: Inputs) -> CheckResult:
    """Output agreement, plus gradient agreement when the case asks for backward."""
    reasons = not_supported_reasons(variant, case)
    if reasons:
        return skipped(check, variant.name, case, reasons)
    judged = ("out", "grad") if case.backward else ("out",)
    return merge(evaluate_all(check, variant, case, inputs, judged))


def _largest_logit(inputs: Inputs) -> float:
    k, _ = expand_kv(inputs.k.double(), inputs.v, inputs.q.shape[1])  # (B, Hq, S, D)
    scale = default_scale(inputs.q.shape[-1], inputs.scale)
    return (inputs.q.double() @ k.transpose(-2, -1)).abs().max().item() * scale


def large_logits(variant: Variant, case: Case, seed: int = 0, target: float = 1e4
                 ) -> CheckResult:
    """Scale q so the largest |logit| is ``target`` (default 1e4, where the stability literature
    sees training diverge): no overflow, no NaN, and still within the rule. The softmax is then
    nearly one-hot, so exp without max subtraction overflows and a finite mask sentinel (-1e4)
    stops masking. In float16 the target is capped so the unscaled q.k stays below a quarter of
    the dtype's range (otherwise q @ k^T itself overflows in any fp16 arithmetic)."""
    inputs = make_inputs(case, seed)
    if case.dtype == torch.float16:
        cap = 0.25 * torch.finfo(torch.float16).max * default_scale(case.D, inputs.scale)
        target = min(target, cap)
    q = (inputs.q.double() * (target / _largest_logit(inputs))).to(case.dtype)
    inputs = inputs.replace(q=q)
    result = _judge("large_logits", variant, case, inputs)
    result.extra["largest_logit"] = _largest_logit(inputs)
    if result.status == "ok":
        result.message += f"; largest |logit| {result.extra['largest_logit']:.3g}"
    return result


def single_query(variant: Variant, case: Case, seed: int = 0) -> CheckResult:
    """N = 1: one query row against many keys (decoding), causal included."""
    case = replace(case, N=1, S=max(case.s, 2))
    return _judge("single_query", variant, case, make_inputs(case, seed))


def odd_shapes(variant: Variant, case: Case, seed: int = 0) -> CheckResult:
    """S != N, neither a power of two nor a multiple of common tile sizes (37 x 83), and an
    odd head dim: ragged last tiles and boundary masks are where kernels go wrong."""
    case = replace(case, N=37, S=83, D=24 if case.D % 2 == 0 else case.D)
    inputs = make_inputs(case, seed)
    return _judge("odd_shapes", variant, case, inputs)


def _fenced(t: torch.Tensor, how: str) -> torch.Tensor:
    """A non-contiguous view of ``t``'s values inside a NaN-filled buffer: a kernel that reads
    outside the view (ignores strides or offsets) picks up NaN and fails loudly."""
    B, H, L, D = t.shape
    if how == "transposed":  # stored (B, L, H, D), viewed as (B, H, L, D)
        buffer = torch.full((B, L, H, D), float("nan"), dtype=t.dtype, device=t.device)
        buffer.copy_(t.transpose(1, 2))
        return buffer.transpose(1, 2)
    if how == "strided":  # every other feature of a (B, H, L, 2D) buffer
        buffer = torch.full((B, H, L, 2 * D), float("nan"), dtype=t.dtype, device=t.device)
        buffer[..., ::2] = t
        return buffer[..., ::2]
    # "offset": rows 1..L of a (B, H, L + 2, D) buffer: a storage offset and padding rows
    buffer = torch.full((B, H, L + 2, D), float("nan"), dtype=t.dtype, device=t.device)
    buffer[:, :, 1:L + 1] = t
    return buffer[:, :, 1:L + 1]


def non_contiguous(variant: Variant, case: Case, seed: int = 0) -> CheckResult:
    """q a transposed view, k every other column of a wider buffer, v a slice with a storage
    offset, dO transposed: all fenced by NaN, so out-of-view reads cannot hide."""
    inputs = make_inputs(case, seed)
    views = inputs.replace(q=_fenced(inputs.q, "transposed"), k=_fenced(inputs.k, "strided"),
                           v=_fenced(inputs.v, "offset"),
                           dout=None if inputs.dout is None else _fenced(inputs.dout,
                                                                          "transposed"))
    return _judge("non_contiguous", variant, case, views)
