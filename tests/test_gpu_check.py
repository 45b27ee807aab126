"""The prepared GPU check's own logic, run on CPU: correctness recording and target ratios.

The GPU machine has no nox and a tight time budget, so a typo found there costs a whole run;
these tests exercise the same functions at tiny CPU shapes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from attnbench.gpu_check import correctness, targets
from attnbench.results import ResultsWriter, load_results


def test_correctness_records_every_check(tmp_path: Path) -> None:
    results = correctness(tmp_path / "verify", 0, device="cpu", variants=("sdpa_flash",),
                          dtypes=(torch.float32,), shapes=[(4, 2, 17, 33, 16)])
    real = [r for r in results if r.check.startswith("real_shape_")]
    assert {r.check for r in real} == {"real_shape_out", "real_shape_lse", "real_shape_grad"}
    assert not [r for r in results if r.failed]
    table = load_results(tmp_path / "verify")
    assert set(table.metric) >= {"passed", "error_ratio"}
    assert len(table[table.metric == "passed"]) == len(results)


def _row(variant: str, N: int, mode: str, value: float, metric: str = "tflops") -> dict:
    return {"variant": variant, "status": "ok", "metric": metric, "value": value, "N": N,
            "D": 128, "dtype": "bfloat16", "causal": False, "mode": mode, "Hq": 16, "Hkv": 16}


def test_targets_are_same_run_ratios(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path, "throughput")
    writer.add_case("peak", [{"variant": "matmul_peak", "status": "ok", "metric": "peak_tflops",
                              "value": 800.0, "dtype": "bfloat16"}])
    for N, mine, base in ((2048, 100.0, 400.0), (4096, 450.0, 500.0), (8192, 480.0, 500.0)):
        writer.add_case(f"f{N}", [_row("triton_flash", N, "fwd", mine)])
        writer.add_case(f"s{N}", [_row("sdpa_flash", N, "fwd", base)])
        writer.add_case(f"fb{N}", [_row("triton_flash", N, "bwd", mine / 2)])
        writer.add_case(f"sb{N}", [_row("sdpa_flash", N, "bwd", base / 2)])
    writer.add_case("memfit", [{"variant": "triton_flash", "status": "ok",
                                "metric": "mem_exponent", "value": 1.01}])
    numbers = targets(tmp_path)
    assert numbers["fwd_vs_sdpa_flash_min"] == pytest.approx(0.9)  # N=2048 is below 4096
    assert numbers["fwd_fraction_of_bf16_matmul_min"] == pytest.approx(450 / 800)
    assert numbers["bwd_vs_sdpa_flash_min"] == pytest.approx(0.25)  # bwd counts every N
    assert numbers["triton_flash_mem_exponents"] == [1.01]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_refuses_without_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from attnbench.gpu_check import main

    assert main(["--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err
