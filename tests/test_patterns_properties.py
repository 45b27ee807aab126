"""Metamorphic properties of the attention patterns, on the references and on the variants.

Each property relates two problems whose answers must agree (a window wider than the sequence
is causal attention; a document mask is each document run on its own; ...). They hold for the
float64 references exactly and for every variant that runs patterns within float32 rounding,
on shapes drawn by hypothesis. Glossary: B batch, H heads, N query length, S key length.
"""

from __future__ import annotations

import attnbench.variants  # noqa: F401  (registers the built-in variants)
import pytest
import torch
from attnbench.variants import pattern_families
from attnbench.variants.patterns import parse_pattern, pattern_kwargs
from attnbench.variants.registry import get
from hypothesis import given, settings
from hypothesis import strategies as st

VARIANTS = ["naive", "tiled", "sdpa", "flex"]  # flex eager here (tests/conftest.py)
TOL = {"rtol": 2e-5, "atol": 2e-5}  # float32: two computations of one answer


def examples(name: str) -> int:
    """Eager flex traces each new problem (~0.5 s on 2 cores): fewer draws."""
    n = settings.default.max_examples
    return max(5, n // 4) if name.startswith("flex") else n


def inputs(B: int, H: int, N: int, S: int, seed: int, D: int = 16):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen) for shape in ((B, H, N, D), (B, H, S, D),
                                                           (B, H, S, D))]


def run(name: str, q, k, v, text: str | None = None, **kwargs) -> torch.Tensor:
    """One variant on one pattern (None: plain), called the way every suite calls it."""
    variant = get(name)
    pattern = parse_pattern(text) if text else None
    (B, H, N, _), S = q.shape, k.shape[2]
    return variant(q, k, v, **kwargs, **pattern_kwargs(variant, pattern, B, H, N, S, "cpu"))


def scores(B: int, H: int, N: int, S: int, seed: int) -> torch.Tensor:
    return torch.randn(B, H, N, S, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(seed))


sizes = st.integers(1, 40)
shapes = st.tuples(st.integers(1, 2), st.integers(1, 4), sizes, sizes)  # (B, H, N, S)
seeds = st.integers(0, 2**31 - 1)


# --- the references -------------------------------------------------------------------------

@given(shape=shapes, seed=seeds, extra=st.integers(0, 20))
def test_reference_relations(shape, seed, extra):
    B, H, N, S = shape
    s = scores(*shape, seed)

    def ref(text: str) -> torch.Tensor:
        return parse_pattern(text).reference_scores(s)
    L = max(N, S)
    assert torch.equal(ref(f"sliding_window:window={L + extra}"), ref("causal"))
    assert torch.equal(ref("prefix_lm:prefix=0"), ref("causal"))
    assert torch.equal(ref(f"prefix_lm:prefix={S + extra}"), s)
    assert torch.equal(ref(f"document:lengths={L + extra}"), s)
    torch.testing.assert_close(ref("softcap:cap=1e9"), s, rtol=1e-12, atol=1e-12)
    assert torch.equal(ref("sliding_window:window=1"),
                       s.masked_fill(~torch.eye(N, S, dtype=torch.bool), float("-inf")))


# --- the variants ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", VARIANTS)
def test_wide_window_is_causal_and_prefix_extremes(name):
    @settings(max_examples=examples(name))
    @given(shape=shapes, seed=seeds, extra=st.integers(0, 20))
    def holds(shape, seed, extra):
        B, H, N, S = shape
        q, k, v = inputs(*shape, seed)
        causal = run(name, q, k, v, causal=True)
        window = run(name, q, k, v, f"sliding_window:window={max(N, S) + extra}")
        torch.testing.assert_close(window, causal, **TOL)
        torch.testing.assert_close(run(name, q, k, v, "prefix_lm:prefix=0"), causal, **TOL)
        torch.testing.assert_close(run(name, q, k, v, f"prefix_lm:prefix={S + extra}"),
                                   run(name, q, k, v), **TOL)
    holds()


@pytest.mark.parametrize("name", VARIANTS)
def test_document_mask_equals_each_document_alone(name):
    @settings(max_examples=examples(name))
    @given(lengths=st.lists(st.integers(1, 12), min_size=1, max_size=4), H=st.integers(1, 3),
           seed=seeds, causal=st.booleans())
    def holds(lengths, H, seed, causal):
        L = sum(lengths)
        q, k, v = inputs(1, H, L, L, seed)
        text = ("causal+" if causal else "") + "document:lengths=" + "/".join(map(str, lengths))
        packed = run(name, q, k, v, text)
        start = 0
        for n in lengths:  # every document on its own
            part = slice(start, start + n)
            alone = run(name, q[:, :, part], k[:, :, part], v[:, :, part], causal=causal)
            torch.testing.assert_close(packed[:, :, part], alone, **TOL)
            start += n
    holds()


@pytest.mark.parametrize("name", [v for v in VARIANTS if v != "sdpa"])  # sdpa: no score_mods
def test_alibi_with_zero_slopes_and_softcap_with_huge_cap_are_plain(name, monkeypatch):
    @settings(max_examples=examples(name))
    @given(shape=shapes, seed=seeds)
    def holds(shape, seed):
        q, k, v = inputs(*shape, seed)
        plain = run(name, q, k, v)
        torch.testing.assert_close(run(name, q, k, v, "softcap:cap=1e6"), plain, **TOL)
        torch.testing.assert_close(run(name, q, k, v, "causal+softcap:cap=1e6"),
                                   run(name, q, k, v, causal=True), **TOL)
        with monkeypatch.context() as patch:
            patch.setattr(pattern_families, "alibi_slopes",
                          lambda H, device="cpu": torch.zeros(H, device=device))
            torch.testing.assert_close(run(name, q, k, v, "alibi"), plain, **TOL)
    holds()


@pytest.mark.parametrize("name", [v for v in VARIANTS if v != "sdpa"])
def test_alibi_is_a_key_position_bias(name):
    """m_h * (j - i) differs from m_h * j by a constant per row, which softmax ignores: ALiBi
    equals attention with the bias m_h * j, computed here by appending it to q and k."""
    @settings(max_examples=examples(name))
    @given(shape=shapes, seed=seeds)
    def holds(shape, seed):
        B, H, N, S = shape
        q, k, v = inputs(*shape, seed)
        D = q.shape[-1]
        slopes = 0.5 ** (8 * torch.arange(1, H + 1, dtype=torch.float32) / H)
        # q.k / sqrt(D) + m_h * j  ==  [q, sqrt(D) m_h] . [k, j] / sqrt(D)
        q2 = torch.cat([q, (D ** 0.5) * slopes.view(1, H, 1, 1).expand(B, H, N, 1)], dim=-1)
        k2 = torch.cat([k, torch.arange(S, dtype=torch.float32).view(1, 1, S, 1)
                        .expand(B, H, S, 1)], dim=-1)
        biased = get("naive")(q2, k2, v, scale=D ** -0.5)
        torch.testing.assert_close(run(name, q, k, v, "alibi"), biased, **TOL)
    holds()
