"""Test-only plugin: ``gate_probe`` without a fault, the baseline of the gate's self-check."""

from attnbench.testing.gate_common import register_probe

register_probe()
