"""The tolerance rule at its boundaries: results built just inside and just outside each budget.

max|out - ref| <= C * max|pt - ref| + floor, C = 2 for outputs and the log-sum-exp, 3 for
gradients, floor = max(2 * rounding noise near ref, eps * sum|terms|). Each test puts an error
at 0.95 and 1.05 of one part of the budget while the other parts are 0, so moving any constant
of the rule by 10 % flips one of the two sides. Tensors are tiny and hand-built: no variant
runs here.
"""

from __future__ import annotations

import math

import pytest
import torch
from attnbench.variants.registry import Case
from attnbench.verify.agreement import budgets
from attnbench.verify.reference import make_inputs
from attnbench.verify.tolerance import (
    C_GRAD,
    C_OUTPUT,
    Agreement,
    Budget,
    budget,
    compare,
    max_abs_diff,
    rounding_floor,
)

F32, F16, F64 = torch.float32, torch.float16, torch.float64
E = 2.0**-10  # the textbook's error in these tests: exact in float32 and float64


def zeros_with(value: float, at: int = 0, n: int = 4, dtype: torch.dtype = F32) -> torch.Tensor:
    """A length-n tensor of zeros (whose rounding floor is exactly 0) with one entry set."""
    t = torch.zeros(n, dtype=dtype)
    t[at] = value
    return t


# ---- the constants, by behaviour ---------------------------------------------------------------

@pytest.mark.parametrize("quantity, C", [("out", 2.0), ("lse", 2.0), ("dq", 3.0), ("dv", 3.0)])
def test_each_quantity_is_allowed_exactly_C_times_the_textbook_error(quantity, C):
    """ref = 0 everywhere (floor 0), the textbook off by E at one entry: the variant may be off
    by C * E. 0.95 C passes, 1.05 C fails: C_OUTPUT or C_GRAD moved by 10 % fails here."""
    ref, pt = torch.zeros(4, dtype=F64), zeros_with(E)
    rule = C_OUTPUT if quantity in ("out", "lse") else C_GRAD
    inside = compare(quantity, zeros_with(0.95 * C * E, at=2), ref, [pt], rule)
    outside = compare(quantity, zeros_with(1.05 * C * E, at=2), ref, [pt], rule)
    assert inside.passed and not outside.passed
    assert inside.budget.floor == 0 and inside.budget.allowed == C * E


def test_the_constants_themselves():
    assert (C_OUTPUT, C_GRAD) == (2.0, 3.0)


def test_agreement_uses_C_output_for_out_and_C_grad_for_gradients():
    """``budgets`` (what properties may deviate) wires each constant to its quantity."""
    case = Case(B=1, Hq=1, Hkv=1, N=3, S=3, D=4, dtype=F32, backward=True)
    _, allowance = budgets(make_inputs(case, seed=0), backward=True)
    assert {k: b.C for k, b in allowance.items()} == {"out": 2.0, "dq": 3.0, "dk": 3.0,
                                                      "dv": 3.0}
    assert all(b.pt_error > 0 and b.floor > 0 for b in allowance.values())


# ---- the rounding floor ------------------------------------------------------------------------

def test_floor_is_twice_the_rounding_noise_near_the_data():
    """1.0 in float32: (1 + 0.3) - 0.3 - 1 = 2**-24, so the floor is 2 * 2**-24."""
    ref = torch.tensor([1.0, 0.0, -3.0], dtype=F64)
    noise = ((ref.float() + 0.3) - 0.3 - ref.float()).abs().max().item()
    assert noise == 2.0**-24
    assert rounding_floor(ref, F32) == 2 * noise
    assert rounding_floor(torch.tensor([1.0], dtype=F64), torch.bfloat16) == 2 * 2.0**-8
    assert rounding_floor(ref, F64) == 0.0  # float64 rounds this data exactly


def test_floor_ignores_non_finite_and_empty_data():
    ref = torch.tensor([math.inf, 1.0, math.nan], dtype=F64)
    assert rounding_floor(ref, F32) == 2 * 2.0**-24
    assert rounding_floor(torch.tensor([math.inf], dtype=F64), F32) == 0.0
    assert rounding_floor(torch.zeros(0, dtype=F64), F32) == 0.0


def test_floor_factor_at_the_boundary():
    """The textbook exact (pt = ref): only the floor 2 * noise allows anything. An error of
    1.9 * noise passes and 2.1 * noise fails: a floor factor moved by 10 % fails here."""
    ref = torch.tensor([1.0, 0.0], dtype=F64)
    noise = 2.0**-24
    pt = ref.float()
    inside = compare("out", torch.tensor([1.0, 1.9 * noise]), ref, [pt], C_OUTPUT)
    outside = compare("out", torch.tensor([1.0, 2.1 * noise]), ref, [pt], C_OUTPUT)
    assert inside.budget.pt_error == 0 and inside.budget.floor == 2 * noise
    assert inside.passed and not outside.passed
    assert outside.ratio == math.inf and outside.ratio_bound == math.inf


def test_magnitude_raises_the_floor_to_eps_times_the_terms():
    """Results that cancel to 0 (floor 0) still get eps(dtype) * max sum|terms|."""
    ref, pt = torch.zeros(4, dtype=F64), torch.zeros(4)
    magnitude = torch.tensor([10.0, 1000.0, 3.0, 0.0], dtype=F64)
    allowed = torch.finfo(F32).eps * 1000.0
    inside = compare("dq", zeros_with(0.95 * allowed), ref, [pt], C_GRAD, magnitude=magnitude)
    outside = compare("dq", zeros_with(1.05 * allowed), ref, [pt], C_GRAD, magnitude=magnitude)
    assert inside.budget.floor == allowed
    assert inside.passed and not outside.passed
    # eps of another dtype (the lse: float32 result from logits rounded in float16)
    lse = compare("lse", zeros_with(0.0), ref, [pt], C_OUTPUT, magnitude=magnitude,
                  eps_dtype=F16)
    assert lse.budget.floor == torch.finfo(F16).eps * 1000.0


def test_magnitude_never_lowers_the_plain_floor_and_counts_only_selected_entries():
    ref = torch.tensor([1.0, 0.0], dtype=F64)
    tiny = torch.tensor([1e-3, 1e-3], dtype=F64)
    assert budget(ref, [ref.float()], C_OUTPUT, F32, magnitude=tiny)[0].floor == 2 * 2.0**-24
    huge_elsewhere = torch.tensor([1.0, 1e6], dtype=F64)
    first = torch.tensor([True, False])
    b, _ = budget(ref, [ref.float()], C_OUTPUT, F32, where=first, magnitude=huge_elsewhere)
    assert b.floor == max(2 * 2.0**-24, torch.finfo(F32).eps * 1.0)


# ---- the textbooks: the worse one counts; non-finite entries are noted and ignored -------------

def test_the_worse_textbook_sets_the_budget():
    ref = torch.zeros(3, dtype=F64)
    b, note = budget(ref, [zeros_with(E, n=3), zeros_with(-3 * E, at=1, n=3)], C_OUTPUT, F32)
    assert b.pt_error == 3 * E and note == ""
    b, _ = budget(ref, [zeros_with(-3 * E, at=1, n=3), zeros_with(E, n=3)], C_OUTPUT, F32)
    assert b.pt_error == 3 * E


def test_a_textbook_overflow_is_noted_and_its_entries_ignored():
    ref = torch.zeros(4, dtype=F64)
    pt = torch.tensor([math.inf, E, math.nan, 0.0])
    b, note = budget(ref, [pt], C_OUTPUT, F32)
    assert b.pt_error == E and note == "textbook not finite at 2 entries"
    b, note = budget(ref, [torch.full((4,), math.inf)], C_OUTPUT, F32)
    assert b.pt_error == 0 and note == "textbook not finite at 4 entries"
    b, note = budget(ref, [pt, zeros_with(math.nan)], C_OUTPUT, F32)
    assert note == "textbook not finite at 3 entries"  # counted over both textbooks
    a = compare("out", zeros_with(0.0), ref, [pt], C_OUTPUT)
    assert a.note == "textbook not finite at 2 entries" and a.describe().endswith(f"({a.note})")


def test_the_budget_is_measured_in_the_results_dtype():
    """ref is rounded to the result's dtype before the textbook is compared: a float16 result
    is not charged float16's rounding of ref."""
    ref = torch.tensor([0.1, 0.2], dtype=F64)
    pt = ref.half()
    assert budget(ref, [pt], C_OUTPUT, F16)[0].pt_error == 0
    assert compare("out", pt, ref, [pt], C_OUTPUT).error == 0
    assert budget(ref, [pt], C_OUTPUT, F32)[0].pt_error > 0


# ---- selections: where, empty, non-finite, missing ---------------------------------------------

def test_max_abs_diff():
    a, b = torch.tensor([1.0, 5.0, -2.0]), torch.tensor([1.0, 1.0, 1.0], dtype=F64)
    assert max_abs_diff(a, b) == 4.0
    assert max_abs_diff(a, b, torch.tensor([True, False, True])) == 3.0
    assert max_abs_diff(a, b, torch.tensor([False, False, False])) == 0.0
    assert max_abs_diff(torch.tensor([math.nan, 1.0]), torch.ones(2)) == math.inf
    assert max_abs_diff(torch.tensor([math.nan, 1.0]), torch.ones(2),
                        torch.tensor([False, True])) == 0.0
    # float64 arithmetic: a float32 subtraction would round 2**-30 away
    assert max_abs_diff(torch.tensor([1.0]), torch.tensor([1.0 + 2.0**-30], dtype=F64)) == \
        2.0**-30


def test_where_excludes_entries_from_error_textbook_and_floor():
    ref = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=F64)
    pt = torch.tensor([[1.0, 0.0], [E, 0.0]])
    out = torch.tensor([[1.0, 0.0], [1.0, math.nan]])
    keep = torch.tensor([[True], [False]])  # broadcasts over the last dimension
    a = compare("out", out, ref, [pt], C_OUTPUT, where=keep)
    assert a.passed and a.error == 0 and a.budget.pt_error == 0
    assert a.budget.floor == 2 * 2.0**-24  # from the kept 1.0, not from the rows left out
    assert not compare("out", out, ref, [pt], C_OUTPUT).passed


def test_an_empty_selection_passes_with_nothing_allowed():
    ref = torch.ones(3, dtype=F64)
    nothing = torch.zeros(3, dtype=torch.bool)
    a = compare("out", torch.full((3,), 7.0), ref, [ref.float()], C_OUTPUT, where=nothing,
                magnitude=torch.full((3,), 1e6, dtype=F64))
    assert a.error == 0 and a.budget.allowed == 0 and a.passed
    assert a.closeness == 0.0 and a.ratio == 0.0


def test_non_finite_results_fail_whatever_the_budget():
    ref = torch.zeros(2, dtype=F64)
    for bad in (math.nan, math.inf, -math.inf):
        a = compare("out", torch.tensor([0.0, bad]), ref, [torch.tensor([0.0, 1e30])], C_OUTPUT)
        assert a.error == math.inf and not a.passed and a.closeness == math.inf


def test_a_missing_gradient_counts_as_zeros_in_the_textbooks_dtype():
    ref = torch.tensor([0.0, E], dtype=F64)
    pt = torch.tensor([0.0, E], dtype=F16)
    a = compare("dv", None, ref, [pt], C_GRAD)
    assert a.error == E and not a.passed and a.quantity == "dv"
    tenth = torch.tensor([0.1, 0.0], dtype=F64)  # its rounding floor differs by dtype
    assert rounding_floor(tenth, F16) != rounding_floor(tenth, F32)
    assert compare("dv", None, tenth, [tenth.half()], C_GRAD).budget.floor == \
        rounding_floor(tenth, F16)
    assert compare("dv", None, torch.zeros(2, dtype=F64), [pt], C_GRAD).passed


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"dk: shape \(3,\), expected \(2,\)"):
        compare("dk", torch.zeros(3), torch.zeros(2, dtype=F64), [torch.zeros(2)], C_GRAD)


# ---- Budget and Agreement on both sides of the bound -------------------------------------------

def test_budget_arithmetic():
    b = Budget(pt_error=E, floor=E / 4, C=2.0)
    assert b.allowed == 2 * E + E / 4
    assert b.ratio(3 * E) == 3.0 and b.ratio_bound == 2.25
    assert Budget(0.0, E, 2.0).ratio(0.0) == 0.0
    assert Budget(0.0, E, 2.0).ratio(E) == math.inf
    assert Budget(0.0, E, 2.0).ratio_bound == math.inf
    total = b + Budget(pt_error=2 * E, floor=E / 2, C=3.0)
    assert total == Budget(3 * E, 3 * E / 4, 3.0)
    assert (Budget(E, 0.0, 3.0) + Budget(E, 0.0, 2.0)).C == 3.0


def test_exactly_at_the_bound_passes_and_one_step_beyond_fails():
    b = Budget(pt_error=1.0, floor=0.5, C=2.0)  # allowed 2.5 exactly
    at = Agreement("out", 2.5, b)
    beyond = Agreement("out", math.nextafter(2.5, math.inf), b)
    assert at.passed and not beyond.passed
    assert at.closeness == 1.0 and beyond.closeness > 1.0
    assert at.ratio == 2.5 and at.ratio_bound == 2.5


def test_closeness_on_both_sides_and_at_zero_allowance():
    b = Budget(pt_error=E, floor=0.0, C=2.0)
    assert Agreement("out", E, b).closeness == 0.5
    assert Agreement("out", 4 * E, b).closeness == 2.0
    assert Agreement("out", 0.0, b).closeness == 0.0
    assert Agreement("out", math.inf, b).closeness == math.inf
    nothing = Budget(0.0, 0.0, 2.0)
    assert Agreement("out", 0.0, nothing).closeness == 0.0
    assert Agreement("out", 1e-30, nothing).closeness == math.inf


def test_describe_on_both_sides_of_the_bound():
    b = Budget(pt_error=1e-3, floor=1e-4, C=2.0)
    ok = Agreement("dq", 1.5e-3, b).describe()
    bad = Agreement("dq", 3e-3, b, note="textbook not finite at 1 entries").describe()
    assert ok == "dq: ok max|err|=0.0015 vs 2*0.001+0.0001 (ratio 1.5, bound 2.1)"
    assert bad == ("dq: FAIL max|err|=0.003 vs 2*0.001+0.0001 (ratio 3, bound 2.1) "
                   "(textbook not finite at 1 entries)")
    assert Agreement("out", math.nan, b).describe().startswith("out: FAIL")
