"""Verification of attention and block variants: a library first, ``attnbench verify`` on top.

Everything is judged against a float64 reference with the FlashAttention tolerance rule
(``tolerance``), so each result is a measured number, not only a bit:

    reference      inputs, the float64 reference (out, lse, gradients), calling a variant
    textbook       the rule's ``pt``: textbook attention in the test dtype, two formulations
    tolerance      the rule: max|out-ref| <= C * max|pt-ref| + floor, and the error ratio
    agreement      output / lse / gradient agreement, declared masked-row semantics
    properties     metamorphic properties (permutation, single key, shift, prefix, ...)
    adversarial    huge logits, N = 1, odd shapes, non-contiguous NaN-fenced views
    blocks         blocks vs torch.nn.TransformerEncoderLayer on every attention variant
    runner         the plan `attnbench verify` runs, crash-proof
    strategies     hypothesis strategies for cases a variant supports

Typical use in a test of a new variant:

    from attnbench.verify import check_agreement, verify_attention
    results = verify_attention(get("my_attention"), torch.bfloat16)
    assert not [r for r in results if r.failed]
"""

from attnbench.verify.agreement import check_agreement, check_masked_rows
from attnbench.verify.blocks import check_block
from attnbench.verify.reference import Inputs, make_inputs, reference, reference_attention
from attnbench.verify.result import CheckResult
from attnbench.verify.runner import (
    ATTENTION_CHECKS,
    CHECK_NAMES,
    reference_gradcheck,
    verify_attention,
    verify_blocks,
)
from attnbench.verify.tolerance import Agreement, Budget, compare

__all__ = ["ATTENTION_CHECKS", "Agreement", "Budget", "CHECK_NAMES", "CheckResult", "Inputs",
           "check_agreement", "check_block", "check_masked_rows", "compare", "make_inputs",
           "reference", "reference_attention", "reference_gradcheck", "verify_attention",
           "verify_blocks"]
