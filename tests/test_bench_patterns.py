"""Benchmark cases on attention patterns: presets, case ids, the one calling path, a run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from attnbench.errors import UsageError
from attnbench.results import load_provenance, load_results
from attnbench.throughput.cases import BenchCase, make_call
from attnbench.throughput.models import attention_flops
from attnbench.throughput.presets import expand, load_preset
from attnbench.throughput.runner import RunConfig, run_throughput
from attnbench.variants.patterns import parse_pattern

TINY = """
description = "test preset: patterns at tiny shapes"
device = "cpu"
threads = 1
time_limit_s = 120
variants = ["sdpa", "naive"]

[timing]
max_time = 0.005
min_rounds = 2
warmup = 0
processes = 2

[[attention]]
B = 1
Hq = 2
N = [64, 128]
D = 16
dtype = "float32"
pattern = ["sliding_window:window=16", "causal+softcap:cap=5"]
mode = "fwd"
"""
CASE = BenchCase(kind="attention", attention="sdpa", B=1, Hq=2, Hkv=2, N=64, S=64, D=16, Dv=16,
                 dtype="float32", causal=False, mode="fwd", device="cpu",
                 pattern="sliding_window:window=16")


def preset_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return str(path)


def test_the_patterns_preset_is_a_patterns_suite_of_flex_sdpa_and_naive():
    preset = load_preset("patterns")
    cases = expand(preset)
    assert preset.suite == "patterns" and load_preset("quick").suite == "throughput"
    assert {c.attention for c in cases} == {"flex", "sdpa", "naive"}
    window = {c.N for c in cases if c.pattern == "sliding_window:window=256" and c.mode == "fwd"}
    assert window == {512, 1024, 2048, 4096}  # a line, so the report can place the pay-off
    assert all(c.pattern and not c.causal for c in cases)


def test_case_id_names_the_pattern_in_the_shared_grammar():
    assert CASE.case_id == "attention:sdpa:B1-H2-N64-D16-float32-cpu~sliding_window-w16:fwd"
    assert CASE.registry_case().pattern == parse_pattern("sliding_window:window=16")
    assert CASE.columns()["pattern"] == "sliding_window:window=16"
    assert "pattern" not in replace(CASE, pattern=None).columns()  # plain rows unchanged


def test_pattern_grids_are_checked(tmp_path):
    grid = TINY.split("[[attention]]")[0] + "[[attention]]\nB = 1\nHq = 2\nN = 64\nD = 16\n" \
        'dtype = "float32"\nmode = "fwd"\n'
    with pytest.raises(UsageError, match=r"#1 name a pattern but #2 do not"):
        load_preset(preset_file(tmp_path, TINY + grid.split("[timing]")[1].split(
            "processes = 2")[1]))
    with pytest.raises(UsageError, match=r"causal = true with pattern 'sliding_window"):
        expand(load_preset(preset_file(tmp_path, TINY + "causal = true\n")))
    with pytest.raises(UsageError, match=r"\[\[memory\]\] #1 has unknown keys \['pattern'\]"):
        load_preset(preset_file(tmp_path, TINY + "\n[[memory]]\nB = 1\nHq = 2\nN = 64\n"
                                'D = 16\ndtype = "float32"\ncausal = false\nmode = "fwd"\n'
                                'pattern = "causal"\n'))
    with pytest.raises(UsageError, match=r"pattern 'nope': unknown|unknown family 'nope'"):
        expand(load_preset(preset_file(tmp_path, TINY.replace("causal+softcap:cap=5",
                                                              "nope"))))


def test_every_variant_is_called_through_pattern_kwargs():
    dense = make_call(CASE)()  # sdpa: the pattern's dense mask
    native = make_call(replace(CASE, attention="naive"))()  # naive: the pattern itself
    torch.testing.assert_close(dense, native, rtol=1e-5, atol=1e-6)
    plain = make_call(replace(CASE, pattern=None))()
    assert not torch.allclose(dense, plain, atol=1e-3)  # the window changed the output


def test_flops_count_the_pattern_visible_pairs():
    window = sum(min(i + 1, 16) for i in range(64))  # i - 16 < j <= i
    assert attention_flops(CASE) == 2.0 * 2 * window * (16 + 16)
    causal = replace(CASE, pattern="causal+softcap:cap=5")
    assert attention_flops(causal) == attention_flops(replace(CASE, pattern=None, causal=True))


def test_a_patterns_run_writes_the_patterns_suite(tmp_path):
    out = tmp_path / "run"
    summary = run_throughput(RunConfig(preset=load_preset(preset_file(tmp_path, TINY)), out=out))
    assert summary["errors"] == 0
    assert load_provenance(out)["suite"] == "patterns"
    frame = load_results(out)
    assert (frame.suite == "patterns").all()
    skipped = frame[(frame.status == "skipped") & (frame.metric == "run")]
    assert set(skipped.variant) == {"sdpa"} and set(skipped.pattern) == {"causal+softcap:cap=5"}
    assert skipped.reason.str.contains("modifies scores").all()
    timed = frame[frame.metric == "time_median_s"]
    assert len(timed) == 2 * 2 + 2  # sdpa and naive on the window, naive on soft-capping
    via = dict(zip(timed.variant, timed.pattern_via, strict=False))
    assert via == {"sdpa": "dense_mask", "naive": "native"}
    accuracy = frame[frame.metric == "sampled_error_ratio"]
    assert (accuracy.value < 10).all()  # the sampled check applies the pattern too
    (noise,) = frame[frame.metric == "noise_floor"].itertuples()
    assert noise.status == "ok" and noise.aa_controls == 2  # sdpa's twin on the window


def test_compile_seconds_is_the_first_call_minus_the_warm_ones():
    from attnbench.throughput.measure import COMPILE_WARM_CALLS, compile_log, compile_seconds

    assert COMPILE_WARM_CALLS == 3
    calls = []
    assert compile_seconds(lambda: calls.append(1), "cpu", 5.0) == pytest.approx(5.0, abs=0.05)
    assert len(calls) == 3
    assert compile_seconds(lambda: None, "cpu", 0.0) == 0.0  # never negative
    assert compile_log(CASE) is None  # sdpa does not compile
    assert compile_log(replace(CASE, attention="flex")) is not None


@pytest.mark.slow
def test_flex_compile_time_is_recorded_once_per_problem_and_apart_from_time():
    from attnbench.throughput.measure import measure_case
    from attnbench.throughput.timing import TimingSettings

    case = replace(CASE, attention="flex", N=80, S=80, D=8, Dv=8)  # a problem no test compiles
    settings = TimingSettings(max_time=0.01, min_rounds=2, warmup=1, processes=1)
    first = measure_case(case, settings)
    assert first.values["compile_s"] > first.values["time_median_s"]  # compiling dominates
    assert first.values["sampled_error_ratio"] < 10
    assert measure_case(case, settings).values["compile_s"] == 0.0  # compiled: nothing to pay
