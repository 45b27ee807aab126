"""Transformer blocks: tokens/s of a block variant on an attention variant, and the share of
the block's time spent in attention.

The share is measured, not estimated: the attention call alone, at the block's shapes (q, k, v
of (B, n_heads, N, d_model // n_heads), causal, same dtype and mode), is timed in the same
process right after the block, and its median divided by the block's median.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from attnbench.throughput.cases import BenchCase, make_call
from attnbench.throughput.measure import Measurement, add_timing, check_finite
from attnbench.throughput.models import block_flops
from attnbench.throughput.timing import TimingSettings, summarize, time_callable
from attnbench.variants.registry import get


def make_block_call(case: BenchCase, seed: int = 0) -> Callable[[], Any]:
    """fwd: the block under no_grad; fwd+bwd: forward, then gradients of every parameter."""
    torch.manual_seed(seed)
    block = get(case.block).fn(case.d_model, case.Hq, attention=case.attention,
                               causal=case.causal)
    block = block.to(device=case.device, dtype=case.torch_dtype)
    gen = torch.Generator(device=case.device).manual_seed(seed)
    x = torch.randn((case.B, case.N, case.d_model), generator=gen, device=case.device,
                    dtype=case.torch_dtype)  # (B, N, d_model)
    if case.mode == "fwd":
        def forward() -> torch.Tensor:
            with torch.no_grad():
                return block(x)

        return forward
    params = [p for p in block.parameters() if p.requires_grad]
    grad_out = torch.randn(x.shape, generator=gen, device=case.device, dtype=case.torch_dtype)

    def forward_backward() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(block(x), params, grad_out)

    return forward_backward


def measure_block(case: BenchCase, settings: TimingSettings, seed: int = 0,
                  timed: bool = True) -> Measurement:
    """Check the block's result; with ``timed``, also time it and its attention call alone in
    this one process (the runner times them replicated, ``throughput.replicate``)."""
    m = Measurement()
    timing = {"device": case.device, "warmup": settings.warmup, "max_time": settings.max_time,
              "min_rounds": settings.min_rounds}
    call = make_block_call(case, seed)
    check_finite(call(), "block output" if case.mode == "fwd" else "block gradients")
    m.values["flops"] = block_flops(case)
    if not timed:
        return m
    median = add_timing(m, time_callable(call, **timing), block_flops(case))
    m.values["tokens_per_s"] = case.B * case.N / median
    attention = make_call(case.attention_case(), seed)
    attention()
    attention_samples = time_callable(attention, **timing)
    m.samples["attention_time_s"] = attention_samples
    attention_median, _ = summarize(attention_samples)
    m.values["attention_share"] = attention_median / median
    return m
