"""The analytic FLOP and memory models, checked against brute force, FlopCounterMode and memray."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from attnbench.throughput.cases import BenchCase, make_call
from attnbench.throughput.memory import peak_memory_bytes
from attnbench.throughput.models import (
    attention_flops,
    attention_memory_bytes,
    block_flops,
    fit_exponent,
    no_memory_model_reason,
    visible_pairs,
)
from torch.utils.flop_counter import FlopCounterMode


def case(**kw) -> BenchCase:
    base = dict(kind="attention", attention="naive", B=2, Hq=4, Hkv=4, N=128, S=128, D=32,
                Dv=32, dtype="float32", causal=False, mode="fwd", device="cpu")
    return BenchCase(**{**base, **kw})


@pytest.mark.parametrize("N,S", [(1, 1), (5, 5), (7, 3), (3, 7), (64, 100), (100, 64)])
def test_visible_pairs_counts_top_left_causal_pairs(N, S):
    brute = sum(1 for i in range(N) for j in range(S) if j <= i)
    assert visible_pairs(N, S, causal=True) == brute
    assert visible_pairs(N, S, causal=False) == N * S


def test_attention_flops_follow_the_stated_convention():
    c = case(B=2, Hq=8, N=256, S=256, D=64, Dv=64)
    assert attention_flops(c) == 4 * 2 * 8 * 256**2 * 64  # 4 B H N^2 D
    causal = attention_flops(case(B=2, Hq=8, N=256, S=256, D=64, Dv=64, causal=True))
    assert causal == pytest.approx(attention_flops(c) * (256 + 1) / (2 * 256))
    assert attention_flops(case(mode="bwd")) == 2 * attention_flops(case())
    assert attention_flops(case(mode="fwd+bwd")) == 3 * attention_flops(case())
    assert attention_flops(case(Hkv=1)) == attention_flops(case())  # GQA: FLOPs scale with Hq


@pytest.mark.parametrize("mode,factor", [("fwd", 1), ("fwd+bwd", 3)])
def test_flop_model_matches_flop_counter_on_naive(mode, factor):
    """FlopCounterMode counts naive's matmuls exactly (non-causal: it computes every pair)."""
    c = case(mode=mode, N=96, S=80, D=16, Dv=24)
    call = make_call(c)
    with FlopCounterMode(display=False) as counter:
        call()
    assert counter.get_total_flops() == attention_flops(c)
    assert attention_flops(c) == factor * 2 * c.B * c.Hq * c.N * c.S * (c.D + c.Dv)


def test_block_flops_are_24d2_plus_4Nd_per_token():
    c = BenchCase(kind="block", attention="sdpa", block="pre_ln", B=3, Hq=4, Hkv=4, N=64, S=64,
                  D=32, Dv=32, d_model=128, dtype="float32", causal=False, mode="fwd",
                  device="cpu")
    assert block_flops(c) == 3 * 64 * (24 * 128**2 + 4 * 64 * 128)
    from dataclasses import replace

    assert block_flops(replace(c, mode="fwd+bwd")) == 3 * block_flops(c)


def test_fit_exponent_recovers_power_laws_and_rejects_bad_input():
    lengths = [512, 1024, 2048, 4096]
    assert fit_exponent(lengths, [3.0 * n**2 for n in lengths]) == pytest.approx(2.0)
    assert fit_exponent(lengths, [7.0 * n + 0.0 for n in lengths]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="distinct lengths"):
        fit_exponent([512, 512], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        fit_exponent([512, 1024], [0.0, 2.0])


def test_memory_model_families():
    naive = attention_memory_bytes(case(N=512, S=512))
    fused = attention_memory_bytes(case(attention="sdpa_flash", N=512, S=512))
    assert naive == 2 * 2 * 4 * 512 * 512 * 4  # two fp32 score matrices
    assert fused == 2 * 4 * 512 * 32 * 4 + 2 * 4 * 512 * 4  # out + fp32 LSE
    big = attention_memory_bytes(case(N=1024, S=1024))
    assert big / naive == 4  # quadratic
    assert attention_memory_bytes(case(attention="tiled", N=1024, S=1024)) / fused == 2


def test_memory_model_is_read_from_the_registration():
    """A variant brings its own model (one place: its registration); one without a
    declaration gets no model and a reason naming it, never a silent blank."""
    from attnbench.variants.registry import register_attention, unregister

    def chunked(c, mode):  # e.g. a kernel that holds one (B, Hq, N, 64) fp32 block
        return c.B * c.Hq * c.N * 64 * 4 * (1 if mode == "fwd" else 2)

    try:
        register_attention("test_models_chunked", memory=chunked)(lambda q, k, v, **kw: q)
        register_attention("test_models_undeclared")(lambda q, k, v, **kw: q)
        assert attention_memory_bytes(case(attention="test_models_chunked")) == 2 * 4 * 128 * 256
        assert no_memory_model_reason(case(attention="test_models_chunked")) is None
        assert attention_memory_bytes(case(attention="test_models_undeclared")) is None
        assert "variant 'test_models_undeclared' declares no memory behaviour" in \
            no_memory_model_reason(case(attention="test_models_undeclared"))
        from attnbench.throughput.measure import measure_case

        measured = measure_case(case(attention="test_models_undeclared", measure="memory",
                                     N=16, S=16))
        assert "mem_model_bytes" not in measured.values
        assert "declares no memory behaviour" in measured.skipped["mem_model_bytes"]
    finally:
        unregister("test_models_chunked")
        unregister("test_models_undeclared")


needs_memray = pytest.mark.skipif(importlib.util.find_spec("memray") is None,
                                  reason="memray not installed")


@needs_memray
@pytest.mark.parametrize("mode", ["fwd", "bwd", "fwd+bwd"])
@pytest.mark.parametrize("causal", [False, True])
def test_naive_memory_model_matches_memray(mode, causal):
    """The materialising model is exact for the textbook algorithm (within 5 %)."""
    c = case(N=256, S=256, D=32, Dv=32, mode=mode, causal=causal)
    call = make_call(c)
    call()
    measured, _ = peak_memory_bytes(call, "cpu")
    assert measured == pytest.approx(attention_memory_bytes(c), rel=0.05)


@needs_memray
@pytest.mark.parametrize("name", ["sdpa_flash", "tiled"])
def test_fused_memory_model_is_a_lower_bound_and_linear(name):
    sizes = []
    for N in (256, 1024):
        c = case(attention=name, N=N, S=N, mode="fwd")
        call = make_call(c)
        call()
        measured, _ = peak_memory_bytes(call, "cpu")
        assert measured >= attention_memory_bytes(c)
        sizes.append(measured)
    assert math.log(sizes[1] / sizes[0], 4) < 1.3  # far from naive's 2


@needs_memray
def test_peak_memory_sees_torch_allocations():
    peak, result = peak_memory_bytes(lambda: torch.empty(1 << 20, dtype=torch.float32), "cpu")
    assert peak >= 4 << 20 and result.numel() == 1 << 20
