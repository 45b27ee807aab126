"""Test-only plugin: ``gate_probe`` with a memory regression (a >= 1 MiB scratch buffer)."""

from tests.plugin_examples.gate_common import register_probe

register_probe(extra_memory=True)
