"""Agreement with the float64 reference under the tolerance rule, honouring declared semantics.

``check_agreement`` runs one variant on one case and compares its output (and log-sum-exp,
gradients) with the reference, using the variant's declared ``causal_alignment`` to build the
reference. Rows that can see no key are not compared by the rule: they are held to the
variant's declared ``fully_masked_rows`` instead ("nan": every entry NaN, "zero": every entry
exactly 0, "error": the call raises, "undefined": not checked). ``check_masked_rows`` builds
such rows on purpose.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
from attnbench.variants.registry import Case, Variant, dtype_name, not_supported_reasons
from attnbench.verify.reference import Inputs, Reference, make_inputs, reference, run_variant
from attnbench.verify.result import CheckResult, Direction, from_agreements, merge, skipped
from attnbench.verify.textbook import textbooks
from attnbench.verify.tolerance import C_GRAD, C_OUTPUT, Budget, budget, compare


def masked_rows_verdict(out: torch.Tensor, live: torch.Tensor, declared: str
                        ) -> tuple[bool | None, str]:
    """Do the fully masked rows of ``out`` hold what the variant declared? None: nothing to
    judge (no such rows, or declared "undefined")."""
    dead = ~live.expand_as(out)
    rows = int((~live).sum())
    if rows == 0:
        return None, ""
    values = out[dead]
    if declared == "undefined":
        return None, f"{rows} fully masked rows not judged (declared undefined)"
    if declared == "nan":
        ok = bool(torch.isnan(values).all())
        return ok, f"{rows} fully masked rows {'are' if ok else 'are NOT all'} NaN as declared"
    if declared == "zero":
        ok = bool((values == 0).all())
        worst = values.double().abs().nan_to_num(float("inf")).max().item()
        return ok, (f"{rows} fully masked rows are 0 as declared" if ok else
                    f"{rows} fully masked rows are NOT 0 as declared (max|value| {worst:.3g})")
    return False, f"{rows} fully masked rows returned a value although declared {declared!r}"


Judged = Literal["out", "lse", "grad"]


def evaluate_all(check: str, variant: Variant, case: Case, inputs: Inputs,
                 judged: tuple[Judged, ...]) -> list[CheckResult]:
    """Run ``variant`` on ``inputs`` once and judge each of ``judged``: its output, its
    log-sum-exp, its gradients dq, dk, dv (one result each, sharing one reference and one set
    of textbooks). Fully masked rows are always judged by the declared semantics."""
    caps = variant.caps.on(torch.device(case.device).type)
    backward = "grad" in judged
    ref = reference(inputs, alignment=caps.causal_alignment, backward=backward)
    results: dict[Judged, CheckResult] = {}
    if backward and not bool(ref.live.all()) and caps.fully_masked_rows != "zero":
        results["grad"] = skipped(check, variant.name, case, "gradients of fully masked rows "
                                  "are only defined for fully_masked_rows='zero' (declared "
                                  f"{caps.fully_masked_rows!r})", "grad")
        backward = False
    pts = textbooks(inputs, alignment=caps.causal_alignment, backward=backward,
                    lse="lse" in judged)
    out, grads = run_variant(variant, inputs, backward=backward)
    verdict, note = masked_rows_verdict(out, ref.live, caps.fully_masked_rows)
    for what in judged:
        if what in results:
            continue
        if what == "grad":
            agreements = [compare(name, g, r, [pt.grads[i] for pt in pts], C_GRAD,
                                  magnitude=ref.magnitudes[name])
                          for i, (name, g, r) in enumerate(zip(("dq", "dk", "dv"), grads,
                                                               ref.grads, strict=True))]
        elif what == "lse":
            v_lse = variant.lse(inputs.q, inputs.k, inputs.v, **inputs.kwargs(variant))
            agreements = [compare("lse", v_lse, ref.lse, [pt.lse for pt in pts], C_OUTPUT,
                                  where=ref.live.squeeze(-1), magnitude=ref.magnitudes["lse"],
                                  eps_dtype=inputs.q.dtype)]
        else:
            agreements = [compare("out", out, ref.out, [pt.out for pt in pts], C_OUTPUT,
                                  where=ref.live, magnitude=ref.magnitudes["out"])]
        result = from_agreements(check, variant.name, case, agreements,
                                 "grad" if what == "grad" else "fwd", note)
        if note:
            result.extra["masked_rows"] = note
        if verdict is False:
            result.passed = False
        results[what] = result
    return [results[what] for what in judged]


def evaluate(check: str, variant: Variant, case: Case, inputs: Inputs, judged: Judged = "out"
             ) -> CheckResult:
    """``evaluate_all`` for one judged quantity."""
    return evaluate_all(check, variant, case, inputs, (judged,))[0]


def check_case(variant: Variant, case: Case, seed: int = 0, *, check: str = "agreement"
               ) -> list[CheckResult]:
    """Output, gradients (when ``case.backward``) and lse (when exposed) on one random input,
    computed once: what a property-based test of a variant wants per drawn case."""
    caps = variant.caps.on(torch.device(case.device).type)
    judged: tuple[Judged, ...] = ("out",) + ("grad",) * case.backward + ("lse",) * caps.exposes_lse
    reasons = not_supported_reasons(variant, case)
    if reasons:
        return [skipped(check, variant.name, case, reasons)]
    return evaluate_all(check, variant, case, make_inputs(case, seed), judged)


def check_agreement(variant: Variant, case: Case, seed: int = 0, *, check: str = "out",
                    judged: Judged | None = None, scale: float | None = None) -> CheckResult:
    """Agreement on random inputs: the output, or the gradients when ``case.backward``, or the
    log-sum-exp when ``judged="lse"`` (variants declaring ``exposes_lse``)."""
    judged = judged or ("grad" if case.backward else "out")
    direction: Direction = "grad" if judged == "grad" else "fwd"
    if judged == "lse" and not variant.caps.on(torch.device(case.device).type).exposes_lse:
        return skipped(check, variant.name, case, "does not expose its log-sum-exp", direction)
    reasons = not_supported_reasons(variant, case)
    if reasons:
        return skipped(check, variant.name, case, reasons, direction)
    return evaluate(check, variant, case, make_inputs(case, seed, scale=scale), judged)


def check_masked_rows(variant: Variant, case: Case, seed: int = 0) -> CheckResult:
    """Rows that see no key must hold the declared value; every other row must pass the rule.

    Fully masked rows come from an explicit mask when the variant takes one, otherwise from
    bottom-right causal alignment with N > S; a top-left variant without masks cannot have any.
    """
    caps = variant.caps.on(torch.device(case.device).type)
    if caps.attn_mask:
        case = replace(case, mask=True)
    elif caps.causal and caps.causal_alignment == "bottom_right":
        case = replace(case, causal=True, S=max(1, case.N // 2))
    else:
        return skipped("masked_rows", variant.name, case, "cannot express a fully masked row "
                       "(no attn_mask, and causal is top-left aligned)")
    if case.backward and caps.fully_masked_rows != "zero":
        case = replace(case, backward=False)
    reasons = not_supported_reasons(variant, case)
    if reasons:
        return skipped("masked_rows", variant.name, case, reasons)
    inputs = make_inputs(case, seed)
    if inputs.attn_mask is not None:
        mask = inputs.attn_mask.clone()
        mask[..., :: max(1, case.N // 3), :] = False  # (B, 1, N, S): rows 0, N/3, ... see nothing
        inputs = inputs.replace(attn_mask=mask)
    if caps.fully_masked_rows == "error":
        try:
            run_variant(variant, inputs)
        except (ValueError, RuntimeError) as exc:
            return CheckResult("masked_rows", variant.name, case.label(), dtype_name(case.dtype),
                               "ok", True, message=f"raised as declared: {exc}")
        return CheckResult("masked_rows", variant.name, case.label(), dtype_name(case.dtype), "ok",
                           False, message="returned a result although declared to raise")
    judged: tuple[Judged, ...] = ("out", "grad") if case.backward else ("out",)
    return merge(evaluate_all("masked_rows", variant, case, inputs, judged))


def budgets(inputs: Inputs, alignment: str = "top_left", backward: bool = False
            ) -> tuple[Reference, dict[str, Budget]]:
    """The reference and the rule's allowance for each result (out, and dq, dk, dv when
    ``backward``) on ``inputs``: what properties comparing a variant with itself may deviate."""
    ref = reference(inputs, alignment=alignment, backward=backward)
    pts = textbooks(inputs, alignment=alignment, backward=backward)
    dtype = inputs.q.dtype
    out = {"out": budget(ref.out, [pt.out for pt in pts], C_OUTPUT, dtype, ref.live,
                         ref.magnitudes["out"])[0]}
    for i, name in enumerate(("dq", "dk", "dv") if backward else ()):
        out[name] = budget(ref.grads[i], [pt.grads[i] for pt in pts], C_GRAD, dtype,
                           magnitude=ref.magnitudes[name])[0]
    return ref, out

