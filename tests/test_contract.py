"""The output contract: shape, dtype and device of the output and the gradients, on every call
under test; a variant breaking it fails ``attnbench verify`` with the breach in words."""

from __future__ import annotations

import sys

import attnbench.variants  # noqa: F401  (registers the built-ins)
import pytest
import torch
from attnbench.cli import main
from attnbench.variants import plugins
from attnbench.variants.registry import Case, get, register_attention, unregister
from attnbench.verify.contract import ContractViolation, contract_case, output_problems, require

PLUGIN = "plugin_examples.contract_breakers"


def qkv(dtype=torch.float16, Hkv=2, Dv=8):
    q = torch.randn(2, 4, 5, 6, dtype=dtype)  # (B, Hq, N, D)
    k = torch.randn(2, Hkv, 7, 6, dtype=dtype)  # (B, Hkv, S, D)
    v = torch.randn(2, Hkv, 7, Dv, dtype=dtype)  # (B, Hkv, S, Dv)
    return q, k, v


def test_a_correct_output_has_no_problems():
    q, k, v = qkv()
    out = torch.zeros(2, 4, 5, 8, dtype=torch.float16)
    assert output_problems(q, k, v, out, (torch.zeros_like(q), torch.zeros_like(k), None)) == []


@pytest.mark.parametrize("make, words", [
    (lambda q: torch.zeros(2, 4, 5, 8), "out dtype float32, expected float16 (the inputs' dtype)"),
    (lambda q: torch.zeros(2, 5, 4, 8, dtype=q.dtype),
     "out shape (2, 5, 4, 8), expected (B, Hq, N, Dv) = (2, 4, 5, 8)"),
    (lambda q: torch.zeros(2, 4, 5, 6, dtype=q.dtype), "out shape (2, 4, 5, 6), expected"),
    (lambda q: torch.zeros(2, 4, 5, 8, dtype=q.dtype, device="meta"),
     "out on meta, expected cpu (the inputs' device)"),
    (lambda q: (torch.zeros(2, 4, 5, 8, dtype=q.dtype),), "out is tuple, expected a tensor"),
])
def test_each_breach_is_named(make, words):
    q, k, v = qkv()
    problems = output_problems(q, k, v, make(q))
    assert any(words in p for p in problems), problems


def test_gradient_breaches_are_named():
    q, k, v = qkv()
    out = torch.zeros(2, 4, 5, 8, dtype=q.dtype)
    grads = (q.float(), torch.zeros(2, 4, 7, 6, dtype=q.dtype), v)
    problems = output_problems(q, k, v, out, grads)
    assert problems == ["dq dtype float32, expected float16 (the inputs' dtype)",
                        "dk shape (2, 4, 7, 6), expected k.shape = (2, 2, 7, 6)"]
    with pytest.raises(ContractViolation, match="variant 'x' breaks the output contract: dq"):
        require("x", q, k, v, out, grads)


def test_contract_case_keeps_what_the_variant_supports():
    base = Case(B=2, Hq=4, N=40, S=56, D=32)
    general = contract_case(get("naive"), base)
    assert (general.hkv, general.dv, general.causal, general.backward) == (2, 48, True, True)
    try:
        register_attention("test_contract_plain", gqa=False, distinct_value_dim=False,
                           backward=False)(lambda q, k, v, **kw: q)
        plain = contract_case(get("test_contract_plain"), base)
        assert (plain.hkv, plain.dv, plain.causal, plain.backward) == (4, 32, True, False)
    finally:
        unregister("test_contract_plain")


@pytest.fixture
def breakers():
    def clean():
        for name in ("plugin_fp32_out", "plugin_heads_last"):
            unregister(name)
        sys.modules.pop(PLUGIN, None)
        plugins._loaded.discard(PLUGIN)

    clean()
    yield
    clean()


@pytest.mark.parametrize("variant, dtype, words", [
    ("plugin_fp32_out", "fp16", "out dtype float32, expected float16 (the inputs' dtype)"),
    ("plugin_heads_last", "fp32", "out shape (2, 40, 4, 48), expected (B, Hq, N, Dv)"),
])
def test_contract_breakers_fail_attnbench_verify(breakers, capsys, variant, dtype, words):
    code = main(["verify", "--plugin", PLUGIN, "--variant", variant, "--dtype", dtype,
                 "--check", "contract", "out", "grad"])
    out = capsys.readouterr().out
    assert code == 1, out
    failed = out[out.index("FAILED:"):]
    assert f"{variant} {dtype.replace('fp', 'float')} contract" in failed, failed
    assert words in failed
    assert ": raised" not in failed  # judged, not crashed


def test_builtin_variants_keep_the_contract():
    from attnbench.verify.contract import check_contract

    for name in ("naive", "tiled", "sdpa", "sdpa_math"):
        result = check_contract(get(name), Case(B=2, Hq=4, N=40, S=56, D=32,
                                                dtype=torch.bfloat16))
        assert result.passed, (name, result.message)
        assert result.case == "B2-H4/2-N40xS56-D32/48-bfloat16-cpu-causal-bwd"
