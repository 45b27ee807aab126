"""A plugin variant that raises when called: verification must record it, not crash."""

from __future__ import annotations

from attnbench.variants.registry import register_attention

NAME = "plugin_raises"


@register_attention(NAME, notes="test plugin that always raises")
def raises(q, k, v, *, causal=False, scale=None, attn_mask=None):
    """Always fails."""
    raise RuntimeError("kernel launch failed: out of shared memory (simulated)")
