"""The output contract: what an attention call must return, checked on every call under test.

For q (B, Hq, N, D), k (B, Hkv, S, D), v (B, Hkv, S, Dv) a variant returns out (B, Hq, N, Dv)
in q's dtype on q's device, and its gradients dq, dk, dv have the shapes, dtypes and device of
q, k, v. A variant that returns float32 for float16 inputs is more accurate and still wrong:
the caller's activation memory doubles and the residual add silently upcasts the whole stream;
the tolerance rule would never notice, so this is checked separately. ``run_variant`` enforces
it on every call, so each check of a violating variant fails with the same message, and the
``contract`` check states it once on the most general case the variant supports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from attnbench.variants.registry import Case, Variant, dtype_name, not_supported_reasons
from attnbench.verify.result import CheckResult, skipped


class ContractViolation(AssertionError):
    """A variant returned something the attention contract does not allow; a check failure
    (the variant's fault), not a crash of the check."""


def _describe(t: torch.Tensor) -> str:
    return f"{tuple(t.shape)} {dtype_name(t.dtype)} on {t.device}"


def _problems(name: str, got: object, like: torch.Tensor, shape: tuple[int, ...],
              what: str) -> list[str]:
    """Differences between ``got`` and a tensor of ``shape`` with ``like``'s dtype and device."""
    if not isinstance(got, torch.Tensor):
        return [f"{name} is {type(got).__name__}, expected a tensor"]
    found = []
    if tuple(got.shape) != shape:
        found.append(f"{name} shape {tuple(got.shape)}, expected {what} = {shape}")
    if got.dtype != like.dtype:
        found.append(f"{name} dtype {dtype_name(got.dtype)}, expected "
                     f"{dtype_name(like.dtype)} (the inputs' dtype)")
    if got.device != like.device:
        found.append(f"{name} on {got.device}, expected {like.device} (the inputs' device)")
    return found


def output_problems(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: object,
                    grads: Sequence[object] | None = None) -> list[str]:
    """Every way ``out`` (and ``grads``, when given) break the contract; empty when none.
    A missing gradient (None) is the gradient checks' business, not a contract breach."""
    (B, Hq, N, _), Dv = q.shape, v.shape[-1]
    found = _problems("out", out, q, (B, Hq, N, Dv), "(B, Hq, N, Dv)")
    for name, g, x in zip(("dq", "dk", "dv"), grads or (), (q, k, v), strict=False):
        if g is not None:
            found += _problems(name, g, x, tuple(x.shape), f"{name[1]}.shape")
    return found


def require(variant: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: object,
            grads: Sequence[object] | None = None) -> None:
    """Raise ``ContractViolation`` naming the variant and every breach."""
    found = output_problems(q, k, v, out, grads)
    if found:
        raise ContractViolation(f"variant {variant!r} breaks the output contract: "
                                + "; ".join(found))


def contract_case(variant: Variant, case: Case) -> Case:
    """``case`` with each of GQA, Dv != D, causal and backward kept where the variant
    supports it on its own: the most general call the variant claims to handle."""
    general = {"Hkv": max(1, case.Hq // 2), "Dv": case.D + 16, "causal": True, "backward": True}
    kept = {key: value for key, value in general.items()
            if not not_supported_reasons(variant, replace(case, **{key: value}))}
    return replace(case, **kept)


def check_contract(variant: Variant, case: Case, seed: int = 0) -> CheckResult:
    """Shapes, dtypes and device of the output and (with backward) the gradients."""
    from attnbench.verify.reference import make_inputs, run_variant

    reasons = not_supported_reasons(variant, case)
    if reasons:
        return skipped("contract", variant.name, case, reasons)
    case = contract_case(variant, case)
    inputs = make_inputs(case, seed)
    direction = "grad" if case.backward else "fwd"
    try:
        out, grads = run_variant(variant, inputs, backward=case.backward)
    except ContractViolation as exc:
        return CheckResult("contract", variant.name, case.label(), dtype_name(case.dtype), "ok",
                           False, direction=direction, message=str(exc))
    said = f"out {_describe(out)}" + ("; dq, dk, dv shaped like q, k, v" if grads else "")
    return CheckResult("contract", variant.name, case.label(), dtype_name(case.dtype), "ok",
                       True, direction=direction, message=said)
