"""Attention patterns as data: ids, parsing, definitions vs references, how variants run them."""

from __future__ import annotations

import re
import sys

import attnbench.variants  # noqa: F401  (registers the built-in variants)
import pytest
import torch
from attnbench.errors import UsageError
from attnbench.variants import plugins
from attnbench.variants.pattern_families import alibi_slopes, document_ids
from attnbench.variants.patterns import (
    BUILTIN_PATTERNS,
    compose,
    get_pattern,
    list_patterns,
    parse_pattern,
    pattern_kwargs,
    register_pattern,
    support,
    unregister_pattern,
)
from attnbench.variants.registry import Case, get, not_supported_reasons

SHAPES = [(2, 3, 9, 9), (1, 2, 7, 13), (1, 4, 13, 7), (2, 1, 1, 5)]  # (B, H, N, S)
BUILTIN_FAMILIES = {"causal", "sliding_window", "prefix_lm", "document", "alibi", "softcap"}


def test_every_builtin_family_has_one_pattern_in_the_default_set():
    assert {f.name for f in list_patterns()} >= BUILTIN_FAMILIES
    covered = {name for p in BUILTIN_PATTERNS for name in p.families}
    assert covered == BUILTIN_FAMILIES


@pytest.mark.parametrize("text, id_", [
    ("causal", "causal"), ("sliding_window:window=256", "sliding_window-w256"),
    ("softcap:cap=20", "softcap-c20"), ("causal+softcap:cap=20", "causal+softcap-c20"),
    ("softcap:cap=2.5", "softcap-c2p5"), ("document:lengths=16/8/40", "document-l16_8_40"),
    ("prefix_lm:prefix=0", "prefix_lm-p0"), ("alibi", "alibi")])
def test_ids_are_case_safe_and_text_reads_back(text, id_):
    pattern = parse_pattern(text)
    assert pattern.id == id_
    assert re.fullmatch(r"[a-z0-9_+-]+", pattern.id)
    assert parse_pattern(pattern.text) == pattern
    assert hash(parse_pattern(pattern.text)) == hash(pattern)


def test_get_pattern_converts_and_equals_parsed():
    assert get_pattern("sliding_window", window=16) == parse_pattern("sliding_window:window=16")
    assert get_pattern("softcap", cap=20) == parse_pattern("softcap:cap=20.0")
    assert get_pattern("document", lengths=[4, 5]).id == "document-l4_5"


@pytest.mark.parametrize("text, words", [
    ("nope", ["unknown family 'nope'", "causal", "sliding_window"]),
    ("sliding_window", ["missing parameter(s) window", "window (int)"]),
    ("sliding_window:width=3", ["unknown parameter(s) width", "window (int)"]),
    ("sliding_window:window=three", ["parameter window", "integer", "'three'"]),
    ("sliding_window:window=2.5", ["parameter window", "integer", "'2.5'"]),
    ("sliding_window:window=0", ["parameter window", "> 0", "0"]),
    ("prefix_lm:prefix=-1", ["parameter prefix", ">= 0", "-1"]),
    ("softcap:cap=0", ["parameter cap", "> 0"]),
    ("document:lengths=4/0", ["parameter lengths", "> 0"]),
    ("document:lengths=a/b", ["parameter lengths", "separated by '/'"]),
    ("causal+causal", ["causal appears twice"]),
    ("softcap:cap", ["expected name=value", "'cap'"]),
    ("", ["expected text like"])])
def test_parse_errors_name_the_argument_expected_and_actual(text, words):
    with pytest.raises(UsageError) as info:
        parse_pattern(text)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("pattern", BUILTIN_PATTERNS, ids=lambda p: p.id)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_definition_agrees_with_the_independent_reference(pattern, shape):
    """The mask_mod / score_mod evaluated densely equals the reference, -inf for -inf."""
    scores = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got, want = pattern.apply_dense(scores), pattern.reference_scores(scores)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    finite = torch.isfinite(want)
    torch.testing.assert_close(got[finite], want[finite], rtol=1e-6, atol=1e-6)
    mask = pattern.dense_mask(*shape)
    if mask is not None:
        assert mask.shape == shape and mask.dtype == torch.bool
        assert torch.equal(mask, finite)


def test_definitions_pinned_on_a_small_example():
    """The conventions in words, on 5 positions: a move of any of them fails here."""
    def visible(text):
        return parse_pattern(text).dense_mask(1, 1, 5, 5)[0, 0].int().tolist()
    assert visible("sliding_window:window=2") == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0],
                                                  [0, 1, 1, 0, 0], [0, 0, 1, 1, 0],
                                                  [0, 0, 0, 1, 1]]
    assert visible("prefix_lm:prefix=2") == [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0],
                                             [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert document_ids((2, 1), 7).tolist() == [0, 0, 1, 2, 2, 3, 4]
    assert visible("document:lengths=2/1")[:3] == [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0],
                                                   [0, 0, 1, 0, 0]]
    assert alibi_slopes(4).tolist() == [0.25, 0.0625, 0.015625, 0.00390625]
    bias = parse_pattern("alibi").apply_dense(torch.zeros(1, 2, 2, 3, dtype=torch.float64))
    assert bias[0, 0].tolist() == [[0.0, 0.0625, 0.125], [-0.0625, 0.0, 0.0625]]
    capped = parse_pattern("softcap:cap=2").apply_dense(torch.tensor([[[[1e6, -1e6, 0.0]]]]))
    assert capped.flatten().tolist() == [2.0, -2.0, 0.0]


def test_score_mods_come_before_the_mask():
    """causal+softcap: masked scores are -inf, not -cap (the soft-cap-after-mask bug)."""
    scores = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    for text in ("causal+softcap:cap=2", "softcap:cap=2+causal"):
        pattern = parse_pattern(text)
        for out in (pattern.apply_dense(scores), pattern.reference_scores(scores)):
            assert torch.isinf(out[0, 0].triu(1)[out[0, 0].triu(1) != 0]).all()
            assert out[0, 0, 0, 1] == float("-inf")
    assert parse_pattern("causal+softcap:cap=2").mask_only is False
    assert compose(parse_pattern("causal"), parse_pattern("alibi")).text == "causal+alibi"


def test_how_each_variant_runs_a_pattern():
    causal, alibi = parse_pattern("causal"), parse_pattern("alibi")
    naive, sdpa = get("naive"), get("sdpa")
    assert support(naive.caps, alibi) == "native"
    assert support(sdpa.caps, causal) == "dense_mask"
    assert support(sdpa.caps, alibi) is None
    assert pattern_kwargs(naive, alibi, 1, 2, 3, 4, "cpu") == {"pattern": alibi}
    assert pattern_kwargs(sdpa, None, 1, 2, 3, 4, "cpu") == {}
    dense = pattern_kwargs(sdpa, causal, 1, 2, 3, 4, "cpu")["attn_mask"]
    assert dense.shape == (1, 2, 3, 4) and torch.equal(dense[0, 1], torch.ones(3, 4).tril() > 0)
    with pytest.raises(UsageError, match="variant 'sdpa': pattern alibi: modifies scores"):
        pattern_kwargs(sdpa, alibi, 1, 2, 3, 4, "cpu")
    case = Case(pattern=alibi)
    assert "alibi" in case.label()
    assert any("pattern alibi" in r for r in not_supported_reasons(sdpa, case))
    assert not not_supported_reasons(naive, case)


def test_a_pattern_argument_reaches_only_variants_that_declared_it():
    q = torch.randn(1, 1, 4, 8)
    with pytest.raises(ValueError, match="call it through pattern_kwargs"):
        get("sdpa")(q, q, q, pattern=parse_pattern("causal"))
    with pytest.raises(TypeError, match="pattern must be an attnbench Pattern"):
        get("naive")(q, q, q, pattern="causal")


def test_register_pattern_refuses_incomplete_families():
    def mod(shape):
        return lambda b, h, q, kv: q >= kv
    with pytest.raises(ValueError, match="mask_mod and reference_mask come together"):
        register_pattern("half", mask_mod=mod)
    with pytest.raises(ValueError, match="already registered"):
        register_pattern("causal", mask_mod=mod, reference_mask=lambda B, H, N, S: None)
    with pytest.raises(ValueError, match="distinct letters"):
        register_pattern("two", params={"width": "int", "wide": "int"}, mask_mod=mod,
                         reference_mask=lambda B, H, N, S: None)
    with pytest.raises(ValueError, match="pattern name"):
        register_pattern("Bad-Name", mask_mod=mod, reference_mask=lambda B, H, N, S: None)
    assert "half" not in {f.name for f in list_patterns()}


@pytest.fixture
def pattern_plugin():
    module = "plugin_examples.pattern_plugin"
    yield module
    unregister_pattern("dilated")
    sys.modules.pop(module, None)
    plugins._loaded.discard(module)


def test_a_plugin_registers_a_pattern_that_verifies(pattern_plugin):
    from attnbench.verify.agreement import check_case

    plugins.load_plugin(pattern_plugin)
    pattern = parse_pattern("dilated:every=3")
    assert pattern.id == "dilated-e3" and pattern.mask_only
    for shape in SHAPES:
        assert torch.equal(pattern.dense_mask(*shape),
                           torch.isfinite(pattern.reference_scores(torch.zeros(shape))))
    for name in ("naive", "sdpa", "tiled"):
        results = check_case(get(name), Case(B=1, Hq=2, N=20, S=24, D=16, pattern=pattern,
                                             backward=True))
        assert results and all(r.passed for r in results), [r.message for r in results]


def test_verify_cli_runs_the_named_patterns_and_records_them(tmp_path, capsys):
    from attnbench.cli import main
    from attnbench.results import load_results

    out = tmp_path / "verify"
    rc = main(["verify", "--variant", "naive", "sdpa", "--dtype", "fp32", "--check", "pattern",
               "--pattern", "sliding_window:window=8", "--pattern", "causal+softcap:cap=3",
               "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "patterns, float32" in printed and "causal+softcap-c3" in printed
    table = load_results(out)
    assert set(table.pattern) == {"sliding_window-w8", "causal+softcap-c3", ""}  # "": gradcheck
    sdpa = table[(table.variant == "sdpa") & (table.pattern == "causal+softcap-c3")]
    assert set(sdpa.status) == {"skipped"} and "modifies scores" in sdpa.reason.iloc[0]
    assert (table[(table.variant == "naive") & (table.metric == "passed")].value == 1).all()


def test_verify_cli_rejects_a_bad_pattern(capsys):
    from attnbench.cli import main

    assert main(["verify", "--variant", "naive", "--pattern", "sliding_window:wdth=3"]) == 2
    assert "unknown parameter(s) wdth" in capsys.readouterr().err


def test_verify_cli_takes_a_plugin_pattern(pattern_plugin, capsys):
    from attnbench.cli import main

    rc = main(["verify", "--plugin", pattern_plugin, "--variant", "tiled", "--dtype", "fp32",
               "--check", "pattern", "--pattern", "dilated:every=2"])
    assert rc == 0 and "dilated-e2" in capsys.readouterr().out


def test_list_shows_how_each_variant_runs_patterns(capsys):
    from attnbench.cli import main

    assert main(["list", "--kind", "attention"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert "all" in rows["flex"] and "all" in rows["tiled"] and "mask-only" in rows["sdpa"]
    assert "causal" in rows["triton_flash"]
