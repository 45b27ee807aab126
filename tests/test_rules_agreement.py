"""The agreement checks and their textbooks on tiny problems: the textbooks are exact in
float64, real variants pass, deliberately broken ones fail, and fully masked rows are held to
the declared semantics. Small shapes only (a few seconds): the mutation session runs this file
for every mutant of agreement.py and textbook.py."""

from __future__ import annotations

import math
from dataclasses import replace

import attnbench.variants  # noqa: F401 (registers the built-in variants)
import mutants
import pytest
import torch
from attnbench.variants.registry import Case, get
from attnbench.verify.agreement import (
    budgets,
    check_agreement,
    check_case,
    check_masked_rows,
    masked_rows_verdict,
)
from attnbench.verify.reference import make_inputs, reference
from attnbench.verify.textbook import flash_textbook, textbook_inputs, textbooks

TINY = Case(B=1, Hq=2, Hkv=1, N=5, S=7, D=4, dtype=torch.float32)


# ---- declared semantics of fully masked rows ---------------------------------------------------

def test_masked_rows_verdict_for_each_declaration():
    live = torch.tensor([[True], [False], [False]])  # (N, 1): rows 1 and 2 see no key
    nan_rows = torch.tensor([[1.0, 2.0], [math.nan, math.nan], [math.nan, math.nan]])
    zero_rows = torch.tensor([[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    off_rows = torch.tensor([[1.0, 2.0], [0.0, -3.0], [math.nan, 0.0]])
    assert masked_rows_verdict(nan_rows, live, "nan") == (
        True, "2 fully masked rows are NaN as declared")
    assert masked_rows_verdict(zero_rows, live, "nan") == (
        False, "2 fully masked rows are NOT all NaN as declared")
    assert masked_rows_verdict(zero_rows, live, "zero") == (
        True, "2 fully masked rows are 0 as declared")
    assert masked_rows_verdict(off_rows, live, "zero") == (
        False, "2 fully masked rows are NOT 0 as declared (max|value| inf)")
    assert masked_rows_verdict(zero_rows + torch.tensor([0.0, 0.5]), live, "zero")[1].endswith(
        "(max|value| 0.5)")
    assert masked_rows_verdict(off_rows, live, "undefined") == (
        None, "2 fully masked rows not judged (declared undefined)")
    assert masked_rows_verdict(zero_rows, live, "error") == (
        False, "2 fully masked rows returned a value although declared 'error'")
    assert masked_rows_verdict(off_rows, torch.ones(3, 1, dtype=torch.bool), "zero") == (None, "")


# ---- the textbooks ------------------------------------------------------------------------------

@pytest.mark.parametrize("causal, mask", [(False, False), (True, False), (False, True)])
def test_both_textbooks_are_exact_in_float64(causal, mask):
    """In float64 both formulations equal the reference (out, lse, dq, dk, dv with grouped
    heads): any changed sign, scale or reduction in them shows as an O(1) difference."""
    case = replace(TINY, dtype=torch.float64, causal=causal, mask=mask, backward=True)
    inputs = make_inputs(case, seed=1)
    ref = reference(inputs, backward=True)
    pts = textbooks(inputs, backward=True, lse=True)
    assert [pt.name for pt in pts] == ["naive", "flash"]
    for pt in pts:
        live = ref.live.expand_as(ref.out)
        torch.testing.assert_close(pt.out[live], ref.out[live], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(pt.lse.double(), ref.lse.float().double(), rtol=1e-6, atol=0)
        assert pt.lse.dtype == torch.float32
        for got, want in zip(pt.grads, ref.grads, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)


def test_textbooks_without_lse_or_backward_compute_neither():
    inputs = make_inputs(TINY, seed=0)
    for pt in textbooks(inputs):
        assert pt.lse is None and pt.grads is None and pt.out.dtype == torch.float32


def test_explicit_scale_reaches_the_flash_textbook():
    case = replace(TINY, dtype=torch.float64)
    inputs = make_inputs(case, seed=2, scale=0.7)
    ref = reference(inputs)
    torch.testing.assert_close(flash_textbook(inputs, False, False).out, ref.out)


def test_rows_that_see_no_key_get_every_key_and_zero_dout():
    """Bottom-right causal with N > S hides every key from the first N - S rows."""
    case = replace(TINY, N=6, S=3, causal=True, backward=True)
    inputs = make_inputs(case, seed=0)
    plain = textbook_inputs(inputs, "bottom_right")
    assert not plain.causal and plain.attn_mask is not None
    assert bool(plain.attn_mask[..., :3, :].all())  # the dead rows: given every key
    live_rows = plain.attn_mask[..., 3:, :].reshape(-1, 3, 3)[0]  # bottom-right causal
    assert live_rows.tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert bool((plain.dout[..., :3, :] == 0).all()) and bool((plain.dout[..., 3:, :] != 0).all())
    top = textbook_inputs(inputs, "top_left")
    assert top is inputs  # top-left with N > S: every row sees key 0, nothing to change
    unmasked = replace(TINY)
    plain_inputs = make_inputs(unmasked, seed=0)
    assert textbook_inputs(plain_inputs, "bottom_right") is plain_inputs


def test_budgets_of_a_backward_problem():
    ref, allowance = budgets(make_inputs(replace(TINY, backward=True), seed=0), backward=True)
    assert set(allowance) == {"out", "dq", "dk", "dv"} and ref.grads is not None
    _, forward_only = budgets(make_inputs(TINY, seed=0))
    assert set(forward_only) == {"out"}


# ---- real variants pass, broken ones fail -------------------------------------------------------

@pytest.mark.parametrize("name", ["naive", "sdpa", "tiled"])
def test_real_variants_pass_every_judged_quantity(name):
    case = replace(TINY, causal=True, backward=True)
    results = check_case(get(name), case)
    judged = {"naive": 3, "sdpa": 2, "tiled": 3}[name]  # out, grad, and lse where exposed
    assert len(results) == judged and all(r.passed for r in results), \
        [r.message for r in results]
    assert check_agreement(get(name), replace(TINY, mask=True)).passed


def test_check_agreement_chooses_what_to_judge():
    naive = get("naive")
    grad = check_agreement(naive, replace(TINY, backward=True))
    assert grad.passed and grad.direction == "grad"
    lse = check_agreement(naive, TINY, judged="lse")
    assert lse.passed and lse.direction == "fwd"
    skipped = check_agreement(get("sdpa"), TINY, judged="lse")
    assert skipped.status == "skipped" and "does not expose its log-sum-exp" in skipped.message
    unsupported = check_agreement(naive, replace(TINY, device="cuda"))
    assert unsupported.status == "skipped"
    assert check_case(naive, replace(TINY, device="cuda"))[0].status == "skipped"


@pytest.mark.parametrize("broken, how", [
    ("mut_scale_dmodel", "case"), ("mut_causal_off_by_one", "case"),
    ("mut_detached_v", "case"), ("mut_lse_log2", "case"), ("mut_gqa_modulo", "case"),
    ("mut_masked_rows_lie", "masked"), ("mut_ignores_mask", "masked"),
])
def test_broken_variants_fail(broken, how):
    with mutants.registered():
        variant = get(broken)
        if how == "case":
            case = replace(TINY, Hq=4, Hkv=2, causal=True, backward=True)
            results = check_case(variant, case)
            assert any(r.passed is False for r in results), [r.message for r in results]
        else:
            assert check_masked_rows(variant, replace(TINY, backward=True)).passed is False


@pytest.mark.parametrize("name", ["naive", "sdpa", "tiled"])
def test_masked_rows_of_real_variants_hold_their_declaration(name):
    result = check_masked_rows(get(name), replace(TINY, N=6, backward=True))
    assert result.passed, result.message
    assert "fully masked rows" in result.message or "masked_rows" in str(result.extra)
