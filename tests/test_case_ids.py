"""One case-id grammar: the gate names its findings with the benchmark's case ids."""

from __future__ import annotations

from attnbench.gate.measure import Shape, case_key
from attnbench.throughput.cases import BenchCase


def test_gate_case_ids_are_the_benchmarks():
    for shape in (Shape(), Shape(causal=True, Hkv=2)):
        bench = BenchCase(kind="attention", attention="sdpa", B=shape.B, Hq=shape.Hq,
                          Hkv=shape.Hkv, N=shape.N, S=shape.N, D=shape.D, Dv=shape.D,
                          dtype=shape.dtype, causal=shape.causal, mode="fwd+bwd",
                          device=shape.device)
        assert case_key("sdpa", "fwd+bwd", shape) == bench.case_id
