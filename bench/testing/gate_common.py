"""The gate's probe variant and its injected faults (loaded by the gate self-check only).

``gate_probe`` is textbook attention. Each plugin module in this folder registers it under
the same name, with or without one fault, so that a gate run whose base loads
``gate_probe`` and whose head loads a faulty module sees exactly one change:

    gate_probe     no fault (the baseline)
    gate_slow      recomputes 30 % of the query rows: about 1.3x the work
    gate_memory    holds an extra scratch buffer: peak memory up by max(scores, 1 MiB)
    gate_wrong     softmax scale 5 % too large: outputs off far beyond the tolerance rule

``attnbench gate --self-check`` uses them to measure the gate's power.
"""

from __future__ import annotations

import math

import torch
from attnbench.variants.registry import register_attention

NAME = "gate_probe"


def probe_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                    scale: float | None, extra_work: float = 0.0) -> torch.Tensor:
    """Textbook attention (GQA by repeating K/V heads). ``extra_work`` > 0 appends that
    fraction of the query rows a second time, inside the same matrix products, and drops their
    outputs: (1 + extra_work)x the FLOPs through exactly the same operations."""
    N, S, Hq = q.shape[-2], k.shape[-2], q.shape[1]
    k = k.repeat_interleave(Hq // k.shape[1], dim=1)  # (B, Hq, S, D)
    v = v.repeat_interleave(Hq // v.shape[1], dim=1)  # (B, Hq, S, Dv)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    rows = torch.arange(N, device=q.device)
    rows = torch.cat([rows, rows[: round(extra_work * N)]])  # the same code path when 0
    q = q[:, :, rows]  # (B, Hq, N + extra, D)
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, Hq, N + extra, S)
    if causal:
        visible = torch.arange(S, device=q.device)[None, :] <= rows[:, None]  # (N + extra, S)
        scores = scores.masked_fill(~visible, float("-inf"))
    return (torch.softmax(scores, dim=-1) @ v)[:, :, :N]  # (B, Hq, N, Dv)


def register_probe(*, extra_work: float = 0.0, extra_memory: bool = False,
                   scale_error: float = 0.0) -> None:
    """Register ``gate_probe`` with the given fault (all zero: the faithful baseline)."""

    @register_attention(NAME, attn_mask=False,
                        notes="test-only probe for measuring the gate; see gate_common.py")
    def gate_probe(q, k, v, *, causal=False, scale=None, attn_mask=None):
        """Textbook attention used to measure the regression gate (test-only plugin)."""
        if scale_error:
            scale = (1 / math.sqrt(q.shape[-1]) if scale is None else scale) * (1 + scale_error)
        scratch = None
        if extra_memory:  # a buffer the size of the scores (>= 1 MiB), alive during the call
            nbytes = max(q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * 4, 2**20)
            scratch = torch.ones(nbytes // 4, dtype=torch.float32, device=q.device)
        out = probe_attention(q, k, v, causal, scale, extra_work)
        if scratch is not None:
            out = out + 0 * scratch[:1].sum()
        return out
