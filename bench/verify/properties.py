"""Metamorphic properties: facts about attention that need no reference implementation.

Each function takes a variant, a ``Case`` (the property adjusts what it must, e.g. S = 1) and a
seed, and returns a ``CheckResult`` with ``passed``, a measured number and a message.

How much deviation is allowed: a property either compares the variant with an exact analytic
answer (single key, identical keys), judged by the tolerance rule, or compares two runs of the
variant whose exact answers are related. In the second case each run may be off by its own
rule budget (C * textbook error + floor), so the deviation may be up to the sum of the two
budgets (triangle inequality); anything larger means the variant disagrees with itself by more
than the rule would ever accept. ``value`` is then deviation / (sum of textbook errors), in the
same units as the agreement checks' error ratio, and ``bound`` the largest passing value.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from attnbench.variants.common import expand_kv, visible_mask
from attnbench.variants.registry import Case, Variant, not_supported_reasons
from attnbench.verify.agreement import budgets
from attnbench.verify.reference import (
    Inputs,
    generator,
    make_inputs,
    randn,
    reference,
    run_variant,
)
from attnbench.verify.result import CheckResult, from_agreements, merge, skipped
from attnbench.verify.textbook import textbooks
from attnbench.verify.tolerance import C_OUTPUT, Agreement, compare, max_abs_diff


def _alignment(variant: Variant, case: Case) -> str:
    return variant.caps.on(torch.device(case.device).type).causal_alignment


def _unsupported(check: str, variant: Variant, case: Case) -> CheckResult | None:
    reasons = not_supported_reasons(variant, case)
    direction = "grad" if case.backward else "fwd"
    return skipped(check, variant.name, case, reasons, direction) if reasons else None


def _self_consistency(check: str, variant: Variant, case: Case, a: Inputs, b: Inputs,
                      expected_b, rows: torch.Tensor | None = None, note: str = ""
                      ) -> CheckResult:
    """f(b) must equal expected_b(f(a)) within budget(a) + budget(b), on rows that see a key
    in both runs (and within ``rows``, if given: (N,) bool)."""
    align = _alignment(variant, case)
    ref_a, budget_a = budgets(a, align)
    ref_b, budget_b = budgets(b, align)
    out_a, _ = run_variant(variant, a)
    out_b, _ = run_variant(variant, b)
    live = ref_b.live & expected_b(ref_a.live)  # (B, Hq, N, 1)
    if rows is not None:
        live = live & rows[:, None]
    deviation = max_abs_diff(out_b, expected_b(out_a), live)
    exact = deviation == 0
    agreement = Agreement("out", deviation, budget_a["out"] + budget_b["out"],
                          "bitwise identical" if exact else "")
    return from_agreements(check, variant.name, case, [agreement], "fwd", note)


def _analytic(check: str, variant: Variant, case: Case, inputs: Inputs,
              expected: torch.Tensor) -> CheckResult:
    """Compare with an exact answer by the rule (``pt``: the textbooks on the same input)."""
    align = _alignment(variant, case)
    ref = reference(inputs, alignment=align)
    pts = textbooks(inputs, alignment=align)
    out, _ = run_variant(variant, inputs)
    agreement = compare("out", out, expected, [pt.out for pt in pts], C_OUTPUT, ref.live,
                        ref.magnitudes["out"])
    return from_agreements(check, variant.name, case, [agreement])


def permutation(variant: Variant, case: Case, seed: int = 0) -> CheckResult:
    """Permuting batch entries and heads permutes the output the same way. With GQA the query
    heads move with their key/value head and are also reversed within their group. The
    permutations are rotations, never the identity when there are two or more entries."""
    if skip := _unsupported("permutation", variant, case):
        return skip
    a = make_inputs(case, seed)
    groups = case.Hq // case.hkv
    dev = a.q.device
    batch = torch.arange(case.B, device=dev).roll(1)  # never the identity when B > 1
    kv_heads = torch.arange(case.hkv, device=dev).roll(1)
    within = torch.arange(groups, device=dev).flip(0)
    q_heads = (kv_heads[:, None] * groups + within[None, :]).reshape(-1)  # (Hq,)
    b = a.replace(q=a.q[batch][:, q_heads], k=a.k[batch][:, kv_heads], v=a.v[batch][:, kv_heads],
                  attn_mask=None if a.attn_mask is None else a.attn_mask[batch])
    return _self_consistency("permutation", variant, case, a, b,
                             lambda t: t[batch][:, q_heads])


def single_key(variant: Variant, case: Case, seed: int = 0) -> CheckResult:
    """With one key (S = 1) every visible row's output is that key's value, exactly."""
    case = replace(case, S=1, mask=False)
    if skip := _unsupported("single_key", variant, case):
        return skip
    inputs = make_inputs(case, seed)
    _, expected_v = expand_kv(inputs.k, inputs.v.double(), case.Hq)  # (B, Hq, 1, Dv)
    expected = expected_v.expand(-1, -1, case.N, -1)
    return _analytic("single_key", variant, case, inputs, expected)


def identical_keys(variant: Variant, case: Case, seed: int = 0) -> CheckResult:
    """When every key is the same, softmax is uniform: each row outputs the mean of the values
    it can see (all of them, a causal prefix, or the masked subset)."""
    if skip := _unsupported("identical_keys", variant, case):
        return skip
    inputs = make_inputs(case, seed)
    k = inputs.k[:, :, :1].expand_as(inputs.k).contiguous()
    inputs = inputs.replace(k=k)
    _, v = expand_kv(k, inputs.v.double(), case.Hq)  # (B, Hq, S, Dv)
    visible = visible_mask(case.N, case.s, causal=inputs.causal, attn_mask=inputs.attn_mask,
                           device=k.device, alignment=_alignment(variant, case))
    if visible is None:
        expected = v.mean(dim=2, keepdim=True).expand(-1, -1, case.N, -1)
    else:
        weights = visible.double()  # (..., N, S)
        expected = (weights @ v) / weights.sum(dim=-1, keepdim=True).clamp_min(1)
    return _analytic("identical_keys", variant, case, inputs, expected)


def convex_hull(variant: Variant, case: Case, seed: int = 0) -> CheckResult:
    """Each output feature lies between the smallest and largest value of that feature over the
    keys the row can see. The reference lies inside, so a variant within the rule leaves the
    hull by at most its budget; a larger excursion (weights not normalised, a stale rescale)
    is a bug seen without any reference."""
    if skip := _unsupported("convex_hull", variant, case):
        return skip
    inputs = make_inputs(case, seed)
    ref, budget = budgets(inputs, _alignment(variant, case))
    out, _ = run_variant(variant, inputs)
    _, v = expand_kv(inputs.k, inputs.v.double(), case.Hq)  # (B, Hq, S, Dv)
    visible = visible_mask(case.N, case.s, causal=inputs.causal, attn_mask=inputs.attn_mask,
                           device=v.device, alignment=_alignment(variant, case))
    if visible is None:
        visible = torch.ones(case.N, case.s, dtype=torch.bool, device=v.device)
    seen = visible[..., None]  # (..., N, S, 1)
    vv = v[:, :, None]  # (B, Hq, 1, S, Dv)
    lo = torch.where(seen, vv, float("inf")).amin(dim=-2)  # (B, Hq, N, Dv)
    hi = torch.where(seen, vv, float("-inf")).amax(dim=-2)
    o = out.double()
    excursion = torch.clamp(torch.maximum(lo - o, o - hi), min=0)
    excursion = torch.where(torch.isnan(o), float("inf"), excursion)[ref.live.expand_as(o)]
    worst = excursion.max().item() if excursion.numel() else 0.0
    agreement = Agreement("hull", worst, budget["out"], "max distance outside the value range")
    return from_agreements("convex_hull", variant.name, case, [agreement])


def _exact_grid(x: torch.Tensor, limit: float) -> torch.Tensor:
    """Round to multiples of ``limit * eps``: then any sum of such numbers below 2 * limit in
    magnitude is exact in x's dtype (every binade below has a finer spacing)."""
    step = limit * torch.finfo(x.dtype).eps
    return (x.double() / step).round().mul(step).to(x.dtype)


def shift_invariance(variant: Variant, case: Case, seed: int = 0) -> CheckResult:
    """Adding a constant to every logit of a row changes nothing, however large the constant.

    Construction: add one vector c to every key of a (batch, kv head). Then
    q_i . (k_j + c) = q_i . k_j + q_i . c, a shift that depends on the row i but not on the key
    j, which is exactly the invariance of softmax. k and c are put on a grid so that k + c is
    exact in the test dtype (|k| <= 4, |c| <= 112, |k + c| < 128); the shifts reach about +-150
    logits, beyond exp's float32 range (88.7), so forgetting the max subtraction fails.
    """
    if skip := _unsupported("shift_invariance", variant, case):
        return skip
    a = make_inputs(case, seed)
    k = _exact_grid(a.k.clamp(-4, 4), 64.0)
    gen = generator(seed + 2)
    c = (torch.rand((case.B, case.hkv, 1, case.D), generator=gen, dtype=torch.float64) * 2 - 1)
    c = _exact_grid((112 * c).to(case.dtype), 64.0).to(k.device)  # (B, Hkv, 1, D)
    shifted = k + c
    if not torch.equal((shifted.double() - c.double()), k.double()):
        raise AssertionError("shift_invariance: k + c is not exact in the test dtype")
    a = a.replace(k=k)
    b = a.replace(k=shifted)
    scale = a.q.shape[-1] ** -0.5 if a.scale is None else a.scale
    largest = (a.q.double() @ expand_kv(c.double(), c.double(), case.Hq)[0].transpose(-2, -1)
               ).abs().max().item() * scale
    return _self_consistency("shift_invariance", variant, case, a, b, lambda t: t,
                             note=f"largest row shift {largest:.3g}")


def causal_prefix(variant: Variant, case: Case, seed: int = 0) -> CheckResult:
    """Under causal masking (S = N) the outputs of rows <= i do not depend on keys and values
    after position i: replace those with fresh random numbers and rows <= i must not move."""
    case = replace(case, causal=True, S=None)
    if skip := _unsupported("causal_prefix", variant, case):
        return skip
    a = make_inputs(case, seed)
    i = int(torch.randint(0, case.N, (1,), generator=generator(seed + 3)))
    gen = generator(seed + 4)
    k, v = a.k.clone(), a.v.clone()
    k[:, :, i + 1:] = randn(tuple(k[:, :, i + 1:].shape), case.dtype, case.device, gen)
    v[:, :, i + 1:] = randn(tuple(v[:, :, i + 1:].shape), case.dtype, case.device, gen)
    rows = torch.arange(case.N, device=k.device) <= i
    return _self_consistency("causal_prefix", variant, case, a, a.replace(k=k, v=v),
                             lambda t: t, rows, f"keys after position {i} replaced")


def gqa_repeat(variant: Variant, case: Case, seed: int = 0) -> CheckResult:
    """Grouped-query attention equals ordinary attention with each key/value head repeated for
    its group of query heads (query head h reads kv head h // (Hq // Hkv))."""
    if case.hkv == case.Hq:
        case = replace(case, Hq=2 * case.Hq, Hkv=case.Hq)
    if skip := _unsupported("gqa_repeat", variant, case):
        return skip
    a = make_inputs(case, seed)
    k, v = expand_kv(a.k, a.v, case.Hq)  # (B, Hq, S, D)
    return _self_consistency("gqa_repeat", variant, case, a, a.replace(k=k, v=v), lambda t: t)


def grad_linearity(variant: Variant, case: Case, seed: int = 0) -> CheckResult:
    """Gradients are linear in dO: g(dO1 + dO2) = g(dO1) + g(dO2) and g(2 dO) = 2 g(dO) (the
    latter is exact in floating point for any implementation that is linear in dO)."""
    case = replace(case, backward=True)
    if skip := _unsupported("grad_linearity", variant, case):
        return skip
    one = make_inputs(case, seed)
    two = one.replace(dout=randn(tuple(one.dout.shape), case.dtype, case.device,
                                 generator(seed + 5)))
    both = one.replace(dout=one.dout + two.dout)
    double = one.replace(dout=one.dout * 2)
    align = _alignment(variant, case)
    runs = {name: (run_variant(variant, x, backward=True)[1], budgets(x, align, True)[1])
            for name, x in (("one", one), ("two", two), ("both", both), ("double", double))}
    results = []
    shapes = (one.q.shape, one.k.shape, one.v.shape)
    for i, name in enumerate(("dq", "dk", "dv")):
        g = {key: (torch.zeros(shapes[i], dtype=torch.float64, device=one.q.device)
                   if grads[i] is None
                   else grads[i].double(), b[name]) for key, (grads, b) in runs.items()}
        additive = Agreement(f"{name} additivity", max_abs_diff(
            g["both"][0], g["one"][0] + g["two"][0]), g["both"][1] + g["one"][1] + g["two"][1])
        homogeneous = Agreement(f"{name} x2", max_abs_diff(g["double"][0], 2 * g["one"][0]),
                                g["double"][1] + g["one"][1] + g["one"][1])
        results.append(from_agreements("grad_linearity", variant.name, case,
                                       [additive, homogeneous], "grad"))
    return merge(results)
