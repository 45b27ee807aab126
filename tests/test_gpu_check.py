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
    assert numbers["fwd_vs_sdpa_flash_target"] == 1.1 and numbers["bwd_vs_sdpa_flash_target"] == 0.8
    assert numbers["fwd_vs_sdpa_cudnn_target"] == 0.9
    assert numbers["fwd_fraction_of_bf16_matmul_min"] == pytest.approx(450 / 800)
    assert numbers["bwd_vs_sdpa_flash_min"] == pytest.approx(0.25)  # bwd counts every N
    assert numbers["triton_flash_mem_exponents"] == [1.01]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_refuses_without_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from attnbench.gpu_check import main

    assert main(["--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def _fake_stage_tools(monkeypatch: pytest.MonkeyPatch, calls: list) -> None:
    """Stand-ins for the CUDA-only steps: each records its call and writes real results."""
    import attnbench.gpu_check as gc

    def throughput(out: Path, selection: list[str]) -> int:
        calls.append(("bench", out.relative_to(out.parent.parent).as_posix(), selection))
        writer = ResultsWriter(out, "throughput")
        writer.add_case("f", [_row("triton_flash", 4096, "fwd", 450.0)])
        writer.add_case("s", [_row("sdpa_flash", 4096, "fwd", 500.0)])
        return 0

    def correctness(out: Path, seed: int, **kwargs) -> list:
        calls.append(("verify", out.name, sorted(kwargs)))
        return []

    monkeypatch.setattr(gc, "throughput", throughput)
    monkeypatch.setattr(gc, "correctness", correctness)
    monkeypatch.setattr("attnbench.cli.main", lambda argv: calls.append(("cli", argv[0])) or 0)


def test_smoke_stage_writes_its_summary_before_the_full_stage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run cut off after the smoke stage still leaves summary.json with smoke numbers."""
    import json

    from attnbench.gpu_check import SMOKE_BENCH, run_stages

    calls: list = []
    _fake_stage_tools(monkeypatch, calls)
    run_stages(tmp_path, 0, budget_s=1e6, smoke_only=True)
    assert calls[0] == ("verify", "verify", ["shapes", "suite", "variants"])  # smoke: no suite
    assert calls[1][2] == SMOKE_BENCH
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stage"] == "smoke"
    assert summary["targets"]["fwd_vs_sdpa_flash_min"] == pytest.approx(0.9)
    assert len([c for c in calls if c[0] in ("bench", "verify")]) == 2


def test_full_steps_that_do_not_fit_the_budget_are_listed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from attnbench.gpu_check import FULL_BENCH, run_stages

    calls: list = []
    _fake_stage_tools(monkeypatch, calls)
    run_stages(tmp_path, 0, budget_s=0)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stage"] == "full"
    assert summary["not_run"][:2] == ["full throughput", "full verify"]
    assert len(summary["not_run"]) == 2 + 8 + 3  # every flex pattern step, listed
    assert all(step.startswith("flex ") for step in summary["not_run"][2:])
    calls.clear()
    run_stages(tmp_path / "roomy", 0, budget_s=1e6)
    steps = [c for c in calls if c[0] != "cli"]
    assert [c[0] for c in steps] == ["verify", "bench", "bench", "verify"]
    assert steps[2][2] == FULL_BENCH and steps[3][2] == []  # full verify: every check
    assert json.loads((tmp_path / "roomy" / "summary.json").read_text())["not_run"] == []


def test_flex_patterns_step_runs_on_cpu_and_records(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The flex step's own code at CPU shapes: every built-in pattern, then a real-shape one
    (shrunk); forward judged, backward a skipped row (CPU), the results directory written."""
    import attnbench.gpu_check as gc

    monkeypatch.setattr(gc, "FLEX_REAL_SHAPE", (2, 1, 40, 56, 16))
    results, not_run = gc.flex_patterns(tmp_path / "flex", 0, lambda: 1e6, device="cpu",
                                        dtypes=(torch.float32,),
                                        real=["sliding_window:window=8"])
    assert not_run == [] and not [r for r in results if r.failed]
    judged = {(r.extra["pattern"], r.check) for r in results if r.status == "ok"}
    assert ("sliding_window-w8", "pattern_real_shape") in judged
    assert len({p for p, check in judged if check == "pattern"}) == 8
    assert {r.direction for r in results if r.status == "skipped"} == {"grad"}
    table = load_results(tmp_path / "flex")
    assert set(table.pattern) >= {"sliding_window-w8", "alibi"}


def test_flex_patterns_step_records_errors_and_respects_the_budget(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import attnbench.gpu_check as gc
    from attnbench.verify import runner

    def crash(*args, **kwargs):
        raise RuntimeError("inductor exploded")

    monkeypatch.setattr(runner, "verify_attention", crash)
    monkeypatch.setattr(runner, "check_pattern_case", crash)
    results, not_run = gc.flex_patterns(tmp_path / "a", 0, lambda: 1e6, device="cpu",
                                        dtypes=(torch.float32,), real=["causal"])
    assert len(results) == 9 and all(r.status == "error" for r in results)
    assert "inductor exploded" in results[0].message
    results, not_run = gc.flex_patterns(tmp_path / "b", 0, lambda: 0.0, device="cpu",
                                        dtypes=(torch.float32,), real=["causal"])
    assert results == [] and len(not_run) == 9 and not_run[-1] == "flex causal real shape"
