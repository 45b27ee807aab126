"""Timing API, accuracy sampling, -k selection and the shipped presets (no timing asserted)."""

from __future__ import annotations

import os
import time

import pytest
import torch
from attnbench.throughput.accuracy import sample_rows, sampled_error_ratio
from attnbench.throughput.cases import BenchCase, make_call
from attnbench.throughput.measure import CaseFailure, check_finite, measure_case
from attnbench.throughput.presets import available_presets, expand, load_preset
from attnbench.throughput.selection import Selection, parse_filter
from attnbench.throughput.timing import (
    TimingSettings,
    cpu_clock,
    pinned_cpus,
    summarize,
    time_callable,
)
from attnbench.throughput.worker import Worker

FAST = TimingSettings(max_time=0.01, min_rounds=2, warmup=0)


def case(**kw) -> BenchCase:
    base = dict(kind="attention", attention="naive", B=1, Hq=2, Hkv=2, N=64, S=64, D=16,
                Dv=16, dtype="float32", causal=False, mode="fwd", device="cpu")
    return BenchCase(**{**base, **kw})


def test_time_callable_gives_one_sample_per_round_and_counts_calls():
    calls = []
    samples = time_callable(lambda: calls.append(1), rounds=7, warmup=2)
    assert len(samples) == 7 and all(s >= 0 for s in samples)
    assert len(calls) == 9  # 2 warm-up + 7 measured
    auto = time_callable(lambda: sum(range(1000)), max_time=0.01, min_rounds=3)
    assert len(auto) >= 3
    with pytest.raises(ValueError, match="rounds"):
        time_callable(lambda: None, rounds=0)
    with pytest.raises(ValueError, match="device"):
        time_callable(lambda: None, device="tpu")


def test_cpu_clock_is_cpu_time_for_one_thread():
    assert cpu_clock(1)[0] is time.thread_time
    assert cpu_clock(2)[0] is time.perf_counter


def test_summarize_median_and_iqr():
    median, iqr = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert median == 3.0 and 0 < iqr < 100
    with pytest.raises(ValueError):
        summarize([])


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 31])
def test_summarize_uses_pytest_benchmarks_statistics(n):
    """The own timer's statistics are pytest-benchmark's (median, quartile method, IQR)."""
    stats_module = pytest.importorskip("pytest_benchmark.stats")  # a test dependency
    samples = [((7 * i) % 13 + 0.5 * i) * 1e-3 for i in range(n)]
    stats = stats_module.Stats()
    for x in samples:
        stats.update(x)
    assert summarize(samples) == pytest.approx((stats.median, stats.iqr), rel=1e-12, abs=0)


def test_time_callable_calibrates_loops_for_fast_calls():
    calls = []
    samples = time_callable(lambda: calls.append(1), warmup=0, max_time=0.005, min_rounds=3)
    assert len(samples) >= 3 and len(calls) > 2 * len(samples)  # several calls per round


def test_sample_rows_cover_both_ends_and_are_unique():
    rows = sample_rows(1000, count=32, seed=3)
    assert rows[0] == 0 and rows[-1] == 999 and len(set(rows.tolist())) == 32
    assert torch.equal(rows, rows.sort().values)
    assert sample_rows(10).tolist() == list(range(10))


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("causal", [False, True])
def test_sampled_error_ratio_tells_exact_from_wrong(mode, causal):
    c = case(mode=mode, causal=causal, N=100, S=100)
    result = make_call(c)()
    result = result if mode == "fwd" else result[0]
    honest = sampled_error_ratio(c, result)
    assert honest["checked"] == ("out" if mode == "fwd" else "dq")
    assert honest["sampled_error_ratio"] < 10  # naive against its own dtype's textbook run
    broken = sampled_error_ratio(c, result + 1e-2)
    assert broken["sampled_error_ratio"] > 1000


def test_measure_case_reports_the_vocabulary():
    m = measure_case(case(mode="fwd+bwd"), FAST)
    for metric in ("time_median_s", "time_iqr_s", "time_n", "flops", "tflops",
                   "sampled_error_ratio", "mem_model_bytes"):
        assert metric in m.values
    assert len(m.samples["time_s"]) == m.values["time_n"]
    untimed = measure_case(case(mode="fwd"), FAST, timed=False)
    assert "time_median_s" not in untimed.values and "flops" in untimed.values
    block = BenchCase(kind="block", attention="sdpa", block="pre_ln", B=1, Hq=2, Hkv=2, N=32,
                      S=32, D=16, Dv=16, d_model=32, dtype="float32", causal=True,
                      mode="fwd+bwd", device="cpu")
    b = measure_case(block, FAST)
    assert {"tokens_per_s", "attention_share", "time_median_s"} <= set(b.values)
    assert 0 < b.values["attention_share"]


def test_check_finite_names_the_bad_tensor():
    with pytest.raises(CaseFailure, match=r"gradients\[1\] contains NaN"):
        check_finite((torch.zeros(2), torch.tensor([float("nan")])), "gradients")


@pytest.mark.parametrize("expr,hit,miss", [
    ("naive", "attention:naive:x", "attention:tiled:x"),
    ("naive and not causal", "a:naive:N64", "a:naive:N64-causal"),
    ("(tiled or naive) and N1024", "x:tiled:N1024", "x:tiled:N256"),
    ("NAIVE", "x:naive:y", "x:sdpa:y"),
])
def test_keyword_filter(expr, hit, miss):
    keep = parse_filter(expr)
    assert keep(hit) and not keep(miss)


@pytest.mark.parametrize("expr", ["", "naive and", "(naive", "naive tiled", "or naive"])
def test_malformed_keyword_filter_is_a_clear_error(expr):
    with pytest.raises(ValueError, match="-k"):
        parse_filter(expr)


def test_selection_narrows_by_variant_mode_and_dtype():
    attention = case(mode="fwd")
    block = BenchCase(kind="block", attention="naive", block="pre_ln", B=1, Hq=2, Hkv=2, N=32,
                      S=32, D=16, Dv=16, d_model=32, dtype="float32", causal=True, mode="fwd",
                      device="cpu")
    assert Selection(attention=("naive",)).keeps(attention)
    assert Selection(attention=("naive",)).keeps(block)
    assert not Selection(blocks=("pre_ln",)).keeps(attention)
    assert Selection(blocks=("pre_ln",)).keeps(block)
    assert not Selection(modes=("bwd",)).keeps(attention)
    assert not Selection(dtypes=("bfloat16",)).keeps(attention)


# ids avoid the bare word "gpu": conftest skips items whose keywords contain it
@pytest.mark.parametrize("name", ["quick", "full", "gpu"], ids=lambda n: f"{n}_preset")
def test_shipped_presets_load_and_expand(name):
    assert name in available_presets()
    preset = load_preset(name)
    cases = expand(preset)
    assert cases and len({c.case_id for c in cases}) == len(cases)
    assert {c.device for c in cases} == {preset.device}


def test_quick_preset_leaves_out_flex_unless_asked():
    """flex compiles each shape in each worker, so the quick preset excludes it from "every
    registered variant" (the patterns preset times it); naming it still runs it."""
    quick = load_preset("quick")
    assert quick.exclude == ("flex",)
    assert "flex" not in {c.attention for c in expand(quick)}
    assert {c.attention for c in expand(quick, variants=("flex",))} == {"flex"}


def test_preset_exclude_with_an_unknown_variant_is_an_error():
    from dataclasses import replace

    from attnbench.errors import UsageError

    typo = replace(load_preset("quick"), exclude=("flx",))
    with pytest.raises(UsageError, match=r"exclude names unknown attention variants \['flx'\]"
                                         r"; registered: .*flex"):
        expand(typo)


def test_cuda_preset_is_the_issue_matrix():
    preset = load_preset("gpu")
    cases = [c for c in expand(preset) if c.kind == "attention" and c.measure == "full"]
    assert {c.attention for c in cases} == {"triton_flash", "sdpa_flash", "sdpa_efficient",
                                            "sdpa_cudnn", "naive"}
    assert {c.B * c.N for c in cases} == {16384} and {c.N for c in cases} == {
        1024, 2048, 4096, 8192, 16384}
    assert {c.dtype for c in cases} == {"bfloat16", "float16"} and {c.D for c in cases} == {
        64, 128}
    assert {c.mode for c in cases} == {"fwd", "bwd", "fwd+bwd"}
    capped = [c for c in cases if preset.limit_reason(c)]
    assert capped and {c.attention for c in capped} == {"naive"}
    assert min(c.N for c in capped) == 8192


def test_bad_preset_files_name_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('device = "cpu"\nspeed = 3\n')
    with pytest.raises(ValueError, match=r"unknown keys \['speed'\]"):
        load_preset(str(bad))
    bad.write_text('[[attention]]\nB = 1\nHq = 2\nN = 64\nD = 16\ndtype = "fp32"\n'
                   'causal = false\nmode = "sideways"\n')
    with pytest.raises(ValueError, match="mode must be one of"):
        expand(load_preset(str(bad)))
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        load_preset("nope")


def test_time_interleaved_alternates_rounds_and_isolates_a_failure():
    from attnbench.throughput.timing import time_interleaved

    log: list[str] = []

    def slow(tag: str):
        return lambda: (log.append(tag), sum(range(20000)))

    def broken():
        if len(log) > 40:
            raise RuntimeError("fails later")
        log.append("x")

    got = time_interleaved({"a": slow("a"), "b": slow("b"), "x": broken}, warmup=0,
                           max_time=0.01, min_rounds=4)
    assert len(got["a"]) >= 4 and len(got["b"]) >= 4 and isinstance(got["x"], RuntimeError)
    measured = "".join(t for t in log if t in "ab")
    assert "ab" in measured and "ba" in measured  # both orders: A B, then B A


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
def test_pinned_worker_runs_on_the_chosen_cpu():
    """``[timing] pin = true``: the worker process (and torch's threads, started after the
    mask is set) may run only on ``pinned_cpus(threads)``, the last CPUs of the allowed set."""
    cpus = pinned_cpus(1)
    assert cpus == (max(os.sched_getaffinity(0)),)
    assert pinned_cpus(len(os.sched_getaffinity(0)) + 1) is None
    worker = Worker([], 1, cpus)
    try:
        status, got = worker.call(os.sched_getaffinity, (0,), 120)
    finally:
        worker.close()
    assert (status, got) == ("ok", set(cpus))
    assert load_preset("quick").timing.pin  # the quick preset pins (see its comment)


def test_workers_allocate_by_one_fixed_policy():
    """Every timing worker gets the memory policy that makes processes with different
    histories allocate alike (throughput.worker's docstring has the measurements); the gate's
    side workers get the same one."""
    from attnbench.gate.sides import FIXED_ENV
    from attnbench.throughput.worker import MALLOC_ENV

    assert MALLOC_ENV == {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
                          "MALLOC_TRIM_THRESHOLD_": str(16 * 2**30),
                          "MALLOC_TOP_PAD_": str(2**30), "THP_MEM_ALLOC_ENABLE": "1"}
    assert MALLOC_ENV.items() <= FIXED_ENV.items()
    worker = Worker([], 1)
    try:
        got = {k: worker.call(os.getenv, (k,), 120) for k in MALLOC_ENV}
    finally:
        worker.close()
    assert got == {k: ("ok", v) for k, v in MALLOC_ENV.items()}
    assert "MALLOC_TOP_PAD_" not in os.environ  # the parent's environment is restored
