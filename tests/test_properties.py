"""Metamorphic properties and adversarial inputs hold for every variant, and can fail.

Each drawn example picks a property (or adversarial input), a case within the variant's
capabilities and a seed; every property also runs once per variant as an explicit example.
Drawn cases run in float32; float16 and bfloat16 run the explicit examples. The second half
shows each property is not vacuous: it flags the bug it was designed for.
"""

from __future__ import annotations

from dataclasses import replace

import attnbench.variants  # noqa: F401
import mutants
import pytest
import torch
from attnbench.variants.registry import Case, dtype_name, get, list_variants, not_supported_reasons
from attnbench.verify import adversarial, properties
from attnbench.verify.strategies import cases, seeds
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

ATTENTION = [v.name for v in list_variants("attention")]
CHECKS = [properties.permutation, properties.single_key, properties.identical_keys,
          properties.convex_hull, properties.shift_invariance, properties.causal_prefix,
          properties.gqa_repeat, properties.grad_linearity, adversarial.large_logits,
          adversarial.single_query, adversarial.odd_shapes, adversarial.non_contiguous]
BASE = Case(B=1, Hq=2, N=37, S=45, D=24, causal=True, backward=True)


def examples(name: str) -> int:
    n = settings.default.max_examples
    interpreted = get(name).untimeable_reason() is not None  # ~1000x slower than compiled
    return max(3, n // 5) if interpreted else n


def with_every_check(test):
    """One explicit example per property, so none depends on what hypothesis draws."""
    for i, check in enumerate(CHECKS):
        test = example(check=check, case=BASE, seed=i)(test)
    return test


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16],
                         ids=dtype_name)
@pytest.mark.parametrize("name", ATTENTION)
def test_properties_hold(name, dtype):
    variant = get(name)
    reasons = not_supported_reasons(variant, Case(dtype=dtype))
    if reasons:
        pytest.skip("; ".join(reasons))

    # float32 draws cases; other dtypes run the explicit examples (one per property)
    drawn = {} if dtype == torch.float32 else {"phases": [Phase.explicit]}

    @settings(max_examples=examples(name), **drawn)
    @given(check=st.sampled_from(CHECKS), case=cases(variant, dtype, max_len=96), seed=seeds())
    @with_every_check
    def holds(check, case, seed):
        case = replace(case, dtype=dtype)
        result = check(variant, case, seed)
        assert not result.failed, f"{check.__name__} {result.case} seed={seed}: {result.message}"

    holds()


# ---------------------------------------------------------------- each property can fail

@pytest.fixture(scope="module")
def broken():
    with mutants.registered():
        yield get


@pytest.mark.parametrize("check, mutant", [
    (properties.permutation, "mut_head_mixing"),
    (properties.single_key, "mut_head_mixing"),
    (properties.identical_keys, "mut_causal_off_by_one"),
    (properties.convex_hull, "mut_alignment_lie"),
    (properties.shift_invariance, "mut_no_max_subtraction"),
    (properties.causal_prefix, "mut_causal_off_by_one"),
    (properties.gqa_repeat, "mut_gqa_modulo"),
    (adversarial.large_logits, "mut_no_max_subtraction"),
    (adversarial.odd_shapes, "mut_truncated_head_dim"),
    (adversarial.non_contiguous, "mut_assumes_contiguous"),
    (adversarial.single_query, "mut_detached_v"),
], ids=lambda x: getattr(x, "__name__", x))
def test_each_property_flags_its_bug(broken, check, mutant):
    result = check(broken(mutant), BASE, 0)
    assert result.status == "ok" and result.passed is False, result.message


def test_grad_linearity_flags_a_backward_that_is_not_linear(broken):
    """A backward normalising dO (a bug that survives every single-dO comparison scaled
    consistently) breaks homogeneity and additivity."""
    from attnbench.variants.registry import register_attention, unregister

    class Normalised(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, grad):
            return grad / grad.abs().max()

    def fn(q, k, v, *, causal=False, scale=None, attn_mask=None):
        """naive with dO normalised in the backward."""
        return Normalised.apply(get("naive").fn(q, k, v, causal=causal, scale=scale,
                                                attn_mask=attn_mask))

    register_attention("test_nonlinear_backward")(fn)
    try:
        result = properties.grad_linearity(get("test_nonlinear_backward"), BASE, 0)
    finally:
        unregister("test_nonlinear_backward")
    assert result.passed is False, result.message


def test_self_consistent_properties_are_bitwise_for_naive():
    """Permuting, repeating GQA heads and changing future keys move naive by exactly 0."""
    for check in (properties.permutation, properties.causal_prefix, properties.gqa_repeat):
        result = check(get("naive"), Case(B=2, Hq=4, Hkv=2, N=20, D=16), 0)
        assert result.passed and result.value == 0, (check.__name__, result.message)


def test_shift_reaches_beyond_float32_exp_range():
    result = properties.shift_invariance(get("naive"), BASE, 0)
    largest = float(result.message.rsplit("largest row shift ", 1)[1])
    assert largest > 88.7  # exp(88.7) overflows float32


def test_large_logits_reach_the_target():
    result = adversarial.large_logits(get("naive"), BASE, 0)
    assert result.extra["largest_logit"] == pytest.approx(1e4, rel=1e-2)
    fp16 = adversarial.large_logits(get("naive"), replace(BASE, dtype=torch.float16), 0)
    assert 1e3 < fp16.extra["largest_logit"] < 1e4  # capped so q.k stays representable
