"""Test-only plugin: ``gate_probe`` with a correctness break (softmax scale 5 % too large)."""

from attnbench.testing.gate_common import register_probe

register_probe(scale_error=0.05)
