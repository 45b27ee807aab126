"""The throughput run end to end: results schema, failing plugin variants, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from attnbench.results import REQUIRED_COLUMNS, load_provenance, load_results, load_samples
from attnbench.throughput.presets import load_preset
from attnbench.throughput.runner import RunConfig, run_throughput
from attnbench.throughput.selection import Selection

REPO = Path(__file__).resolve().parent.parent
METRICS = {"time_median_s", "time_ci_low_s", "time_ci_high_s", "time_iqr_s", "time_n",
           "time_processes", "time_process_spread", "time_min_s", "flops", "tflops",
           "peak_fraction", "mem_peak_bytes", "mem_model_bytes", "sampled_error_ratio",
           "tokens_per_s", "attention_share", "peak_tflops", "mem_exponent", "run", "aa_ratio",
           "noise_floor"}
TINY_PRESET = """
description = "test preset: tiny shapes, a few milliseconds of timing"
device = "cpu"
threads = 1
time_limit_s = 60
control = "sdpa_flash"

[timing]
max_time = 0.005
min_rounds = 2
warmup = 0
processes = 2

[[attention]]
B = 1
Hq = 2
N = 64
D = 16
dtype = "float32"
causal = [false, true]
mode = ["fwd", "fwd+bwd"]

[[memory]]
B = 1
Hq = 2
N = [64, 128, 256]
D = 16
dtype = "float32"
causal = false
mode = "fwd"

[[block]]
block = "pre_ln"
B = 1
N = 32
d_model = 32
n_heads = 2
dtype = "float32"
mode = "fwd"
"""
FAULTY_PLUGIN = '''
import time
import torch
from attnbench.variants.registry import register_attention

@register_attention("bench_test_raises")
def raises(q, k, v, *, causal=False, scale=None, attn_mask=None):
    """Always raises."""
    raise RuntimeError("deliberate failure for the test")

@register_attention("bench_test_nan")
def returns_nan(q, k, v, *, causal=False, scale=None, attn_mask=None):
    """Returns NaN."""
    return torch.full(q.shape[:-1] + v.shape[-1:], float("nan"), dtype=q.dtype)

@register_attention("bench_test_hangs")
def hangs(q, k, v, *, causal=False, scale=None, attn_mask=None):
    """Never returns."""
    time.sleep(3600)
'''


@pytest.fixture
def tiny_preset(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_PRESET)
    return path


def test_results_directory_schema(tmp_path, tiny_preset):
    out = tmp_path / "run"
    config = RunConfig(preset=load_preset(str(tiny_preset)), out=out,
                       selection=Selection(attention=("naive", "sdpa_flash", "tiled")))
    summary = run_throughput(config)
    assert summary["errors"] == 0 and summary["worker_starts"] == 2  # one per process

    provenance = load_provenance(out)
    for key in ("git_commit", "git_dirty", "packages", "cpu_model", "torch_threads", "timer",
                "seeds", "command_line", "start_time", "end_time", "variants", "preset",
                "flop_convention"):
        assert key in provenance, key
    assert provenance["end_time"] and provenance["suite"] == "throughput"
    assert provenance["variants"]["naive"]["capabilities"]["devices"] == ["cpu", "cuda"]

    frame = load_results(out)
    assert set(REQUIRED_COLUMNS) <= set(frame.columns)
    assert set(frame.status) <= {"ok", "skipped", "error"} and set(frame.metric) <= METRICS
    assert (frame.suite == "throughput").all()
    timed = frame[frame.metric == "time_n"]
    assert len(timed) == 3 * 4 + 3  # attention cases, then one block per attention variant
    samples = load_samples(out)
    for row in timed.itertuples():  # both processes timed every case
        per_process = [samples[(row.case_id, f"time_s:p{p}")] for p in (0, 1)]
        assert sum(map(len, per_process)) == row.value
    assert set(frame[frame.metric == "time_processes"].value) == {2}
    controls = frame[frame.metric == "aa_ratio"]  # the A/A control on every attention shape
    assert len(controls) == 4 and (controls.status == "ok").all()
    assert set(controls.case_id) == {f"control:{c}" for c in timed.case_id
                                     if c.startswith("attention:sdpa_flash:")}
    (noise,) = frame[frame.metric == "noise_floor"].itertuples()
    assert noise.status == "ok" and noise.value >= 0 and noise.aa_controls == 4
    peak = frame[frame.variant == "matmul_peak"]
    assert list(peak.metric) == ["peak_tflops"] and (peak.value > 0).all()
    assert (frame[frame.metric == "peak_fraction"].value > 0).all()
    fits = frame[frame.metric == "mem_exponent"]
    assert sorted(fits.case_id) == [f"memfit:{v}:fwd:float32:False"
                                    for v in ("naive", "sdpa_flash", "tiled")]
    blocks = frame[(frame.kind == "block") & (frame.status == "ok")]
    assert {"tokens_per_s", "attention_share"} <= set(blocks.metric)
    assert set(blocks.block) == {"pre_ln"} and set(blocks.d_model) == {32}


def cli(*args: str, env_extra: dict[str, str] | None = None, plugin_dir: Path | None = None,
        **popen) -> subprocess.Popen:
    env = {**os.environ, **(env_extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugin_dir or ""), str(REPO),
                                                    env.get("PYTHONPATH", "")) if p)
    return subprocess.Popen([sys.executable, "-m", "attnbench", "bench", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_failing_plugin_variants_become_error_rows(tmp_path, tiny_preset):
    (tmp_path / "faulty_plugin.py").write_text(FAULTY_PLUGIN)
    out = tmp_path / "run"
    proc = cli("--plugin", "faulty_plugin", "--preset", str(tiny_preset), "--out", str(out),
               "--variant", "bench_test_raises,bench_test_nan,bench_test_hangs,naive",
               "--mode", "fwd", "-k", "attention and not causal", "--time-limit", "3",
               plugin_dir=tmp_path)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    frame = load_results(out)
    reasons = {r.variant: r.reason for r in frame[frame.status == "error"].itertuples()}
    assert "deliberate failure for the test" in reasons["bench_test_raises"]
    assert "NaN" in reasons["bench_test_nan"]
    assert "time limit of 3 s" in reasons["bench_test_hangs"]
    # the case after the hang ran in a fresh worker
    assert "time_median_s" in set(frame[frame.variant == "naive"].metric)
    assert "3 case(s) failed" in stdout


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _wait_for(predicate, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the benchmark"
        time.sleep(0.2)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_kill_and_interrupt_keep_finished_rows_and_resume_finishes(tmp_path, tiny_preset):
    (tmp_path / "faulty_plugin.py").write_text(FAULTY_PLUGIN)
    out, marker = tmp_path / "run", f"ATTNBENCH_TEST_{uuid.uuid4().hex}"
    args = ["--plugin", "faulty_plugin", "--preset", str(tiny_preset), "--out", str(out),
            "--variant", "naive,bench_test_hangs", "--mode", "fwd", "-k", "attention"]
    naive_id = "attention:naive:B1-H2-N64-D16-float32-cpu:fwd"

    def finished() -> set[str]:
        return set(load_results(out).case_id) if (out / "results.jsonl").exists() else set()

    # 1. SIGKILL while a case hangs: the worker must not outlive its parent. The non-causal
    # hang's error row is written when its check hits the 10 s limit; the kill then lands in
    # the causal shape's check (a shape's other rows wait for its last replicate).
    hang_id = naive_id.replace("naive", "bench_test_hangs")
    proc = cli(*args, "--time-limit", "10", env_extra={marker: "1"}, plugin_dir=tmp_path)
    _wait_for(lambda: hang_id in finished(), seconds=600)  # two workers start first
    proc.kill()
    proc.wait()
    _wait_for(lambda: not _processes_with(marker), seconds=20)
    before = load_results(out)
    assert hang_id in set(before.case_id)

    # 2. Resume, then Ctrl-C during the same hang: exit 130, rows kept, nothing redone.
    proc = cli(*args, "--resume", plugin_dir=tmp_path)
    _wait_for(lambda: json.loads((out / "provenance.json").read_text())["resumed_from"],
              seconds=60)
    time.sleep(2)  # most likely inside the hanging case by now; either way it is interrupted
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "finished results are kept" in stderr

    # 3. Resume with a time limit: the hang becomes an error row; naive ran exactly once.
    proc = cli(*args, "--resume", "--time-limit", "2", plugin_dir=tmp_path)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    after = load_results(out)
    assert len(after[after.case_id == hang_id]) == 1  # the finished row was kept, not redone
    naive_rows = after[after.case_id == naive_id]
    assert naive_rows.metric.value_counts().max() == 1 and "time_median_s" in set(
        naive_rows.metric)
    hang = after[after.variant == "bench_test_hangs"]
    assert len(hang) == 2 and set(hang.status) == {"error"}  # causal and not
    assert all("time limit of" in reason for reason in hang.reason)
    assert any("time limit of 2 s" in reason for reason in hang.reason)  # the resumed one
    assert load_provenance(out)["resumed_from"]


@pytest.mark.parametrize("groups,processes", [(0, 3), (1, 3), (5, 3), (30, 3), (40, 5), (7, 1)])
def test_stagger_spreads_each_groups_replicates_and_bounds_what_is_in_flight(groups, processes):
    from attnbench.throughput.replicate import STAGGER_GROUPS, stagger

    order = stagger(groups, processes)
    assert sorted(order) == [(g, r) for g in range(groups) for r in range(processes)]
    position = {step: i for i, step in enumerate(order)}
    lag = max(1, min(STAGGER_GROUPS, -(-groups // processes)))
    for g in range(groups):
        for r in range(1, processes):  # replicates in order
            assert position[(g, r)] > position[(g, r - 1)]
        if processes > 1:  # `lag` other groups start between a group's first two replicates
            between = order[position[(g, 0)] + 1:position[(g, 1)]]
            assert len({h for h, q in between if q == 0}) == min(lag, groups - 1 - g)
    in_flight = 0
    for _, r in order:  # a group is in flight from its first replicate to its last
        in_flight += (r == 0) - (r == processes - 1)
        assert in_flight <= STAGGER_GROUPS * (processes - 1) + 1


def test_stagger_pins_its_lag_and_rejects_bad_arguments():
    from attnbench.throughput.replicate import STAGGER_GROUPS, stagger

    assert STAGGER_GROUPS == 8  # replicates of one group about half a minute apart (quick)
    assert stagger(3, 2) == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]  # lag 2
    with pytest.raises(ValueError, match="processes >= 1"):
        stagger(3, 0)
