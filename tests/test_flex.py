"""The FlexAttention variants: declarations, eager fallback, compile log, block sparsity.

The fast tests run ``flex`` eager (conftest sets ATTNBENCH_FLEX_EAGER=1); the compiled path,
8-22 s per problem cold on 2 cores, is tested under ``slow``.
"""

from __future__ import annotations

import attnbench.variants  # noqa: F401
import pytest
import torch
from attnbench.variants import flex
from attnbench.variants.patterns import BUILTIN_PATTERNS, PatternShape, parse_pattern
from attnbench.variants.registry import Case, get, not_supported_reasons
from attnbench.verify.agreement import check_case


def test_declarations():
    caps = get("flex").caps
    assert caps.patterns == "all" and caps.fully_masked_rows == "zero"
    assert caps.on("cpu").backward is False and caps.on("cuda").backward is True
    assert caps.on("cpu").exposes_lse is False and caps.on("cuda").exposes_lse  # compiled lse
    assert not_supported_reasons(get("flex"), Case(backward=True)) == ["backward not supported"]
    assert caps.default_checks == ("out", "pattern")


def test_eager_mode_is_declared_and_not_timed(monkeypatch):
    monkeypatch.setenv(flex.EAGER_ENV, "1")
    assert flex.mode() == ("eager", f"{flex.EAGER_ENV} is set")
    assert "unfused fallback" in get("flex").untimeable_reason()
    monkeypatch.setenv(flex.EAGER_ENV, "0")
    assert flex.mode() == ("compiled", "")
    assert get("flex").untimeable_reason() is None


@pytest.mark.parametrize("pattern", BUILTIN_PATTERNS, ids=lambda p: p.id)
def test_eager_flex_agrees_with_the_reference_on_every_pattern(pattern):
    results = check_case(get("flex"), Case(B=1, Hq=2, N=24, S=40, D=16, pattern=pattern))
    assert {r.status for r in results} == {"ok"}
    assert all(r.passed for r in results), [r.message for r in results]


def test_compile_log_records_each_problem_once():
    flex.reset_compile_log()
    q = torch.randn(1, 2, 16, 8)
    for _ in range(2):
        get("flex")(q, q, q, pattern=parse_pattern("alibi"))
    log = flex.compile_log()
    assert list(log) == ["eager:float32:1.2/2.16.16.8.8:alibi:causal=False,mask=False,"
                         "lse=False,grad=True"]
    assert all(seconds > 0 for seconds in log.values())
    flex.reset_compile_log()
    assert flex.compile_log() == {}


def break_compile(monkeypatch, message: str, *, worked: bool) -> torch.Tensor:
    """Make every compile raise ``message``, as if an earlier one had ``worked`` or not; returns
    a small q (= k = v) to call flex with."""
    def broken(*args, **kwargs):
        raise RuntimeError(message)

    monkeypatch.setenv(flex.EAGER_ENV, "0")
    monkeypatch.setattr(flex, "_compiled", broken)
    monkeypatch.setattr(flex, "_compile_failure", None)
    monkeypatch.setattr(flex, "_compile_worked", worked)
    return torch.randn(1, 1, 8, 8)


def test_a_failing_compile_falls_back_to_eager_and_says_why(monkeypatch):
    q = break_compile(monkeypatch, "no C++ compiler", worked=False)
    out = get("flex")(q, q, q, causal=True)
    torch.testing.assert_close(out, get("naive")(q, q, q, causal=True))
    assert flex.mode() == ("eager", "torch.compile failed: RuntimeError: no C++ compiler")
    assert "unfused fallback" in get("flex").untimeable_reason()


def test_a_failure_after_a_working_compile_is_raised(monkeypatch):
    q = break_compile(monkeypatch, "this problem is not supported", worked=True)
    with pytest.raises(RuntimeError, match="this problem is not supported"):
        get("flex")(q, q, q)
    assert flex.mode() == ("compiled", "")


def test_sliding_window_block_mask_is_block_sparse():
    """At N = 1024 with a 128-key window, each query block of 128 sees at most 2 key blocks
    of the 8: the compiled kernel skips the rest."""
    pattern = parse_pattern("sliding_window:window=128")
    _, _, block = flex._mods_for(pattern, False, PatternShape(1, 1, 1024, 1024))
    assert block.kv_num_blocks.max().item() <= 2
    assert block.sparsity() > 70


def test_pattern_and_masking_attn_mask_together_are_refused():
    q = torch.randn(1, 1, 8, 8)
    with pytest.raises(ValueError, match="a pattern or an attn_mask with masks, not both"):
        get("flex")(q, q, q, attn_mask=torch.ones(8, 8, dtype=torch.bool),
                          pattern=parse_pattern("causal"))


@pytest.mark.slow
def test_compiled_flex_agrees_and_logs_its_compile_time(monkeypatch):
    monkeypatch.setenv(flex.EAGER_ENV, "0")
    flex.reset_compile_log()
    for text in ("sliding_window:window=16", "causal+softcap:cap=2"):
        results = check_case(get("flex"), Case(B=1, Hq=2, N=45, S=70, D=32,
                                               pattern=parse_pattern(text)))
        assert all(r.passed for r in results), [r.message for r in results]
    compiled = {k: s for k, s in flex.compile_log().items() if k.startswith("compiled:")}
    assert len(compiled) >= 2 and all(s > 0 for s in compiled.values())
    assert flex.mode() == ("compiled", "")
    before = flex.compile_log()
    q = torch.randn(1, 2, 45, 32)
    k = torch.randn(1, 2, 70, 32)
    with torch.no_grad():  # the same problem again: no new first call
        get("flex")(q, k, k, pattern=parse_pattern("sliding_window:window=16"))
    assert flex.compile_log() == before
