"""The verification plan: which checks run on which case, and running them without crashing.

``verify_attention(variant, dtype)`` runs every check of ``ATTENTION_CHECKS`` on one variant
and dtype; ``verify_blocks(blocks, attentions, dtype)`` compares each block with PyTorch's
TransformerEncoderLayer on each attention variant. A check that raises becomes a failed
``CheckResult`` carrying the exception, never a crash. Cases stay at N, S <= 90 and
B * Hq <= 4 so that a Triton kernel under the CPU interpreter verifies in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import torch
from attnbench.variants.patterns import BUILTIN_PATTERNS, Pattern
from attnbench.variants.registry import Case, Variant, dtype_name, not_supported_reasons
from attnbench.verify import adversarial, properties
from attnbench.verify.agreement import check_agreement, check_case, check_masked_rows
from attnbench.verify.blocks import check_block
from attnbench.verify.contract import ContractViolation, check_contract
from attnbench.verify.result import CheckResult, raised, skipped

CaseFactory = Callable[..., Case]  # keyword shape/options -> Case in the run's dtype, device
CheckFn = Callable[[Variant, CaseFactory, int], "list[CheckResult] | CheckResult"]


@dataclass(frozen=True)
class Check:
    name: str
    group: str  # "contract" | "agreement" | "property" | "adversarial"
    run: CheckFn
    doc: str
    per_pattern: bool = False  # run once per pattern, the case factory building that pattern


def _agreement(*shapes: dict, **options) -> CheckFn:
    """A check that runs ``check_agreement`` on each of several case shapes."""
    def run(variant: Variant, case: CaseFactory, seed: int) -> list[CheckResult]:
        return [check_agreement(variant, case(**shape), seed + i, **options)
                for i, shape in enumerate(shapes)]
    return run


def _on(fn: Callable[[Variant, Case, int], CheckResult], **shape) -> CheckFn:
    return lambda variant, case, seed: fn(variant, case(**shape), seed)


PLAIN = {"B": 2, "Hq": 2, "N": 45, "S": 70, "D": 32}
SMALL = {"B": 1, "Hq": 2, "N": 37, "S": 45, "D": 24}


def check_pattern_case(variant: Variant, full: Case, seed: int, check: str = "pattern"
                       ) -> list[CheckResult]:
    """Output, gradients (``full.backward``) and lse of ``full`` (a case with a pattern) vs
    the float64 reference. Where only the backward is unsupported (flex on CPU), the forward
    still runs and the gradients are a skipped row."""
    forward = replace(full, backward=False)
    if not_supported_reasons(variant, forward):
        return [skipped(check, variant.name, full, not_supported_reasons(variant, full))]
    why_not_grad = not_supported_reasons(variant, full)
    results = check_case(variant, forward if why_not_grad else full, seed, check=check)
    if why_not_grad:
        results.append(skipped(check, variant.name, full, why_not_grad, "grad"))
    return results


def _pattern(variant: Variant, case: CaseFactory, seed: int) -> list[CheckResult]:
    """N <= S, so no row of a built-in pattern is fully masked; Hq = 2 tells ALiBi's heads
    apart."""
    return check_pattern_case(variant, case(**PLAIN, backward=True), seed)

ATTENTION_CHECKS: list[Check] = [
    Check("contract", "contract",
          _on(check_contract, B=2, Hq=4, N=40, S=56, D=32),
          "out (B, Hq, N, Dv) in the inputs' dtype and device; gradients like q, k, v"),
    Check("out", "agreement", _agreement(PLAIN, check="out"),
          "output vs float64 reference, default scale 1/sqrt(D)"),
    Check("scale_arg", "agreement",
          _agreement({**PLAIN, "B": 1}, check="scale_arg", scale=0.37),
          "an explicit softmax scale is honoured"),
    Check("causal", "agreement",
          _agreement(*({"B": 1, "Hq": 2, "N": n, "S": s, "D": 32, "causal": True}
                       for n, s in ((50, 50), (30, 90), (90, 30))), check="causal"),
          "causal masking with N = S, N < S, N > S, in the declared alignment"),
    Check("mask", "agreement",
          _agreement({**PLAIN, "mask": True}, {**PLAIN, "B": 1, "mask": True, "causal": True},
                     check="mask"), "explicit boolean mask, alone and with causal"),
    Check("gqa", "agreement",
          _agreement({"B": 1, "Hq": 4, "Hkv": 1, "N": 40, "S": 60, "D": 32},
                     {"B": 1, "Hq": 4, "Hkv": 2, "N": 40, "D": 32, "causal": True},
                     check="gqa"), "grouped-query attention, Hq/Hkv = 4 and 2"),
    Check("value_dim", "agreement",
          _agreement({"B": 1, "Hq": 2, "N": 40, "S": 60, "D": 32, "Dv": 48}, check="value_dim"),
          "value head dim Dv != D"),
    Check("lse", "agreement",
          _agreement(PLAIN, {**PLAIN, "S": None, "causal": True}, check="lse", judged="lse"),
          "log-sum-exp per row (variants that expose it)"),
    Check("grad", "agreement",
          _agreement({**PLAIN, "backward": True},
                     {"B": 1, "Hq": 4, "Hkv": 2, "N": 70, "D": 32, "causal": True,
                      "backward": True},
                     {**PLAIN, "B": 1, "mask": True, "backward": True}, check="grad"),
          "dq, dk, dv vs float64 autograd (plain; causal GQA; masked)"),
    Check("masked_rows", "agreement",
          lambda v, case, seed: check_masked_rows(v, case(B=1, Hq=2, N=24, S=40, D=32,
                                                          backward=True), seed),
          "rows that see no key hold the declared value (NaN or 0)"),
    Check("permutation", "property", _on(properties.permutation, **{**SMALL, "B": 2},
                                         causal=True), "batch/head permutation commutes"),
    Check("single_key", "property", _on(properties.single_key, **SMALL), "S = 1 gives v"),
    Check("identical_keys", "property", _on(properties.identical_keys, **SMALL, causal=True),
          "identical keys give the mean of the visible values"),
    Check("convex_hull", "property", _on(properties.convex_hull, **SMALL, causal=True),
          "output inside the per-feature range of the visible values"),
    Check("shift_invariance", "property", _on(properties.shift_invariance, **SMALL),
          "a constant added to a row's logits changes nothing"),
    Check("causal_prefix", "property", _on(properties.causal_prefix, **{**SMALL, "S": None}),
          "outputs up to i ignore keys after i"),
    Check("gqa_repeat", "property", _on(properties.gqa_repeat, **{**SMALL, "Hq": 4}, Hkv=2),
          "GQA equals repeating K/V heads"),
    Check("grad_linearity", "property", _on(properties.grad_linearity, **SMALL, causal=True),
          "gradients linear in dO"),
    Check("large_logits", "adversarial",
          _on(adversarial.large_logits, **SMALL, causal=True, backward=True),
          "largest |logit| 1e4: no overflow, still within the rule"),
    Check("single_query", "adversarial", _on(adversarial.single_query, **SMALL, causal=True,
                                             backward=True), "N = 1"),
    Check("odd_shapes", "adversarial", _on(adversarial.odd_shapes, **SMALL, backward=True),
          "N = 37, S = 83, D = 24"),
    Check("non_contiguous", "adversarial",
          _on(adversarial.non_contiguous, **SMALL, causal=True, backward=True),
          "transposed / strided / offset views fenced by NaN"),
    Check("pattern", "agreement", _pattern,
          "each attention pattern (--pattern; default every built-in) vs its float64 "
          "reference: out, gradients, lse", per_pattern=True),
]

CHECK_NAMES = [c.name for c in ATTENTION_CHECKS]


def _safely(check: str, variant: str, case: Case, run: Callable[[], object]
            ) -> list[CheckResult]:
    """Run one check; an exception becomes a failed result naming it. Records the seconds."""
    start = time.perf_counter()
    try:
        out = run()
        found = list(out) if isinstance(out, list) else [out]
    except ContractViolation as exc:  # the variant returned the wrong thing: a verdict
        found = [CheckResult(check, variant, case.label(), dtype_name(case.dtype), "ok", False,
                             message=str(exc))]
    except Exception as exc:  # a crashing check is a failing check, reported, not fatal
        found = [raised(check, variant, case, exc)]
    for r in found:
        r.extra["seconds"] = round((time.perf_counter() - start) / len(found), 4)
    return found


def verify_attention(variant: Variant, dtype: torch.dtype, device: str = "cpu", seed: int = 0,
                     checks: list[str] | None = None,
                     patterns: Sequence[Pattern] = BUILTIN_PATTERNS) -> list[CheckResult]:
    """Every check (or the named ones) on ``variant`` in ``dtype``; the ``pattern`` check once
    per pattern in ``patterns``. Without ``checks``, a variant declaring ``default_checks``
    runs those and records the others as skipped, saying how to run them."""
    def case(**shape) -> Case:
        return Case(dtype=dtype, device=device, **shape)

    default = variant.caps.on(torch.device(device).type).default_checks
    results: list[CheckResult] = []
    for check in ATTENTION_CHECKS:
        if checks is not None and check.name not in checks:
            continue
        if checks is None and default is not None and check.name not in default:
            results.append(skipped(check.name, variant.name, case(), (
                f"not in {variant.name}'s default checks ({', '.join(default)}), to bound "
                "its compile time: name them with --check to run them")))
            continue
        for pattern in patterns if check.per_pattern else (None,):
            factory = partial(case, pattern=pattern) if pattern is not None else case
            found = _safely(check.name, variant.name, factory(),
                            lambda c=check, f=factory: c.run(variant, f, seed))
            for r in found:
                if pattern is not None:
                    r.extra["pattern"] = pattern.id
            results += found
    return results


def verify_blocks(blocks: list[Variant], attentions: list[Variant], dtype: torch.dtype,
                  device: str = "cpu", seed: int = 0) -> list[CheckResult]:
    """Each block on each attention variant against TransformerEncoderLayer."""
    results: list[CheckResult] = []
    for block in blocks:
        for attention in attentions:
            found = _safely("encoder_layer", block.name, Case(dtype=dtype, device=device),
                            lambda b=block, a=attention: check_block(b, a, dtype, device, seed))
            for r in found:
                r.extra.setdefault("attention", attention.name)
            results += found
    return results


def reference_gradcheck(seed: int = 0) -> CheckResult:
    """torch.autograd.gradcheck of the float64 reference (causal, masked, GQA, Dv != D)."""
    from attnbench.verify.reference import make_inputs, reference_attention

    case = Case(B=1, Hq=2, Hkv=1, N=5, S=7, D=4, Dv=3, dtype=torch.float64, causal=True,
                mask=True)
    inputs = make_inputs(case, seed)
    q, k, v = (t.detach().requires_grad_(True) for t in (inputs.q, inputs.k, inputs.v))

    def fn(q, k, v):
        return reference_attention(q, k, v, causal=True, attn_mask=inputs.attn_mask)[0]

    ok = torch.autograd.gradcheck(fn, (q, k, v), raise_exception=False)
    return CheckResult("gradcheck", "reference", case.label(), "float64", "ok", ok,
                       direction="grad", message="torch.autograd.gradcheck "
                       + ("passed" if ok else "FAILED"))
