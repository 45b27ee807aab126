"""Speed calls: replicated times, the A/A noise floor, and a report that calls nothing it
cannot tell from noise (attnbench.speed, throughput.replicate, the report's speed parts)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from attnbench.results import ResultsWriter
from attnbench.speed import (
    NOISE_QUANTILE,
    noise_floor,
    per_process_medians,
    ratio_interval,
    replicated_time,
    speed_call,
    speedup,
)


def test_speed_call_needs_the_interval_beyond_the_floor():
    assert speed_call((1.06, 1.20), 0.05) == "faster"
    assert speed_call((1.04, 1.20), 0.05) == "tie"  # clears 1, not 1 + floor
    assert speed_call((0.80, 0.95), 0.05) == "slower"
    assert speed_call((0.80, 0.96), 0.05) == "tie"  # 0.96 > 1 / 1.05
    assert speed_call((0.5, 2.0), 0.0) == "tie"
    assert speed_call((3.0, 4.0), math.nan) == "tie"  # no measured floor: nothing is called
    assert speed_call((math.nan, math.nan), 0.01) == "tie"


def test_noise_floor_is_the_pinned_percentile_of_the_aa_deviation():
    assert NOISE_QUANTILE == 90  # the rule: moving it changes every call in every report
    ratios = [1.0 + d for d in (0.01, -0.02, 0.03, 0.0, -0.01, 0.02, 0.01, -0.04, 0.05, 0.0)]
    floor = noise_floor(ratios)
    assert floor["noise_floor"] == pytest.approx(0.041, abs=1e-9)  # numpy's linear percentile
    assert floor["aa_worst_dev"] == pytest.approx(0.05)
    assert floor["aa_controls"] == 10
    assert math.isnan(noise_floor([])["noise_floor"])


def test_replicated_time_is_the_median_of_process_medians():
    got = replicated_time([[1.0, 1.1, 0.9], [2.0, 2.0, 2.2], [1.5, 1.4, 1.6], []])
    assert got["time_median_s"] == 1.5  # medians 1.0, 2.0, 1.5
    assert got["time_processes"] == 3 and got["time_n"] == 9
    assert got["time_ci_low_s"] <= 1.5 <= got["time_ci_high_s"]
    assert got["time_process_spread"] == pytest.approx(1.0)
    assert got["time_min_s"] == 1.4  # fastest samples 0.9, 2.0, 1.4
    with pytest.raises(ValueError):
        replicated_time([[], []])


def test_ratios_are_paired_by_process():
    # every process is biased differently, but the variant is 2x faster in each one
    base, variant = [1.0, 3.0, 2.0], [0.5, 1.5, 1.0]
    assert ratio_interval(base, variant) == (2.0, 2.0, 2.0)
    assert speedup(base, variant, 0.05)["call"] == "faster"
    assert speedup(base, [0.5, math.nan, 1.0], 0.05)["speedup"] == 2.0  # a missing process
    assert speedup(base, base, 0.0)["call"] == "tie"


def test_per_process_medians_keeps_process_indices():
    store = {"time_s:p0": [1.0, 3.0], "time_s:p2": [5.0]}
    got = per_process_medians(store.get)
    assert got[0] == 2.0 and math.isnan(got[1]) and got[2] == 5.0 and len(got) == 3


# ---- the report, fed runs whose variants cannot be told apart ------------------------------

SHAPE = dict(kind="attention", B=1, Hq=2, Hkv=2, S=256, D=64, Dv=64, dtype="float32",
             causal=False, mode="fwd", device="cpu", preset="t", measure="full")
NOISE = [[1.00, 1.02, 0.99], [1.04, 1.05, 1.03], [0.97, 0.98, 0.99]]  # three processes


def write_run(out: Path, factors: dict[str, float], floor: float = 0.03) -> Path:
    """A throughput results directory: each variant's samples are NOISE times its factor, at
    three lengths, plus a noise floor row."""
    writer = ResultsWriter(out, "throughput", extra={"variants": {}})
    for n in (256, 512, 1024):
        for variant, factor in factors.items():
            case_id = f"attention:{variant}:N{n}:fwd"
            per_process = [[x * factor * n * 1e-6 for x in p] for p in NOISE]
            values = replicated_time(per_process)
            values.update(flops=1e9 * n, tflops=1e-3 * n / values["time_median_s"])
            rows = [{"variant": variant, "attention": variant, **SHAPE, "N": n, "S": n,
                     "status": "ok", "metric": k, "value": v} for k, v in values.items()]
            writer.add_case(case_id, rows, {f"time_s:p{r}": s for r, s in enumerate(per_process)})
    writer.add_case("noise_floor", [{"variant": "aa_control", "kind": "control",
                                     "status": "ok", "metric": "noise_floor", "value": floor}])
    writer.finish()
    return out


def speed_cells(dirs: list[Path]) -> tuple[list, dict]:
    from attnbench.reports.load import load_bundle
    from attnbench.reports.sections.common import attention_cases
    from attnbench.reports.sections.throughput import speedup_table, speedups
    from attnbench.reports.summary import fastest

    bundle = load_bundle(dirs, baseline="sdpa")
    cases = attention_cases(bundle)
    table = speedup_table(bundle, speedups(bundle, cases, "sdpa"))
    return table, fastest(bundle)[0]


def test_report_calls_nothing_between_identical_variants_or_runs(tmp_path):
    twins = [write_run(tmp_path / f"run{i}", {"sdpa": 1.0, "sdpa_flash": 1.0})
             for i in range(2)]
    table, regimes = speed_cells(twins)
    assert table, "the speed-up table must have rows"
    for row in table:
        speed_cell = next(c for c in row if hasattr(c, "tone"))
        assert speed_cell.tone == "", row  # neutral: a tie
        assert "faster" not in " ".join(map(str, row)) and "slower" not in " ".join(map(str, row))
    assert regimes and all(text.startswith("never called fastest") for text in regimes.values())
    # ... and the whole page (answers per reader, per-shape tables) calls nothing either
    from attnbench.reports import write_report
    from test_report_render import Page

    write_report(twins, tmp_path / "page")
    page = Page((tmp_path / "page" / "index.html").read_text(encoding="utf-8"))
    calls = [text for _, text in page.cells if re.search(r"\b(faster|slower)$", text)]
    assert calls == [] and not re.search(r"\d+ (faster|slower)", page.text["summary"])
    assert re.search(r"sdpa_flash: .*vs sdpa: 3 tie of 3", page.text["summary"])
    assert sum(text.endswith(" tie") for _, text in page.cells) >= 3  # per-shape sdpa_flash rows


def test_report_calls_a_real_difference(tmp_path):
    table, regimes = speed_cells([write_run(tmp_path / "run", {"sdpa": 1.0, "naive": 3.0})])
    (row,) = table
    assert next(c for c in row if hasattr(c, "tone")).tone == "warn"  # naive 3x slower
    assert "3 slower" in row
    assert {v: text for (_, v), text in regimes.items()} == {
        "sdpa": "all 3 problems", "naive": "never called fastest (3 problems compared)"}
