"""Test-only plugin: ``gate_probe`` doing about 1.3x the work (30 % of rows computed twice)."""

from attnbench.testing.gate_common import register_probe

register_probe(extra_work=0.3)
