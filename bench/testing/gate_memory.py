"""Test-only plugin: ``gate_probe`` with a memory regression (a >= 1 MiB scratch buffer)."""

from attnbench.testing.gate_common import register_probe

register_probe(extra_memory=True)
