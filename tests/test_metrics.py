"""The metric vocabulary (attnbench.metrics) is the one place a metric is defined: every metric
the suites write is defined there, and the results writer refuses anything else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from attnbench.metrics import METRICS, checked_row, lower_is_better, metric
from attnbench.results import ResultsWriter

BENCH = Path(__file__).resolve().parents[1] / "bench"
SUITES = {"throughput": ["throughput", "speed.py"], "stability": ["stability"],
          "verify": ["cli_verify.py", "verify"]}


def written_metrics(paths: list[Path]) -> set[str]:
    """Metric names the code writes: {"metric": "x"} literals, metric_row(cols, "x"),
    measurement.values["x"] = ..., measurement.values.update(x=...), and the keys of the
    dict literal replicated_time returns (the time metrics)."""
    found: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "metric" and \
                            isinstance(value, ast.Constant):
                        found.add(value.value)
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "metric_row":
                if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                    found.add(node.args[1].value)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr == "update" and getattr(node.func.value, "attr", "") == \
                    "values":
                found.update(k.arg for k in node.keywords if k.arg)
            elif isinstance(node, ast.Subscript) and getattr(node.value, "attr", "") == \
                    "values" and isinstance(node.slice, ast.Constant) and \
                    isinstance(node.ctx, ast.Store):
                found.add(node.slice.value)
            elif isinstance(node, ast.FunctionDef) and node.name == "replicated_time":
                ret = [n for n in ast.walk(node) if isinstance(n, ast.Return)][-1].value
                found.update(k.value for k in ret.keys if isinstance(k, ast.Constant))
    return found


def suite_files(suite: str) -> list[Path]:
    out = []
    for name in SUITES[suite]:
        where = BENCH / name
        out += sorted(where.rglob("*.py")) if where.is_dir() else [where]
    return out


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_every_metric_a_suite_writes_is_defined_for_it(suite):
    written = written_metrics(suite_files(suite))
    assert len(written) >= 2, f"the scan found too little in {suite}: {written}"
    undefined = sorted(w for w in written if w not in METRICS)
    assert not undefined, f"{suite} writes metrics attnbench.metrics does not define"
    wrong = sorted(w for w in written if suite not in METRICS[w].suites)
    assert not wrong, f"{suite} writes metrics defined only for other suites: {wrong}"


def test_the_scan_sees_the_known_metrics():
    written = written_metrics(suite_files("throughput"))
    assert {"time_median_s", "time_ci_low_s", "tflops", "mem_peak_bytes", "aa_ratio",
            "noise_floor", "sampled_error_ratio", "attention_share", "peak_tflops",
            "mem_exponent"} <= written
    assert "error_ratio" not in written  # the benchmark's accuracy has its own name
    assert {"passed", "error_ratio"} <= written_metrics(suite_files("verify"))


def test_definitions_are_complete():
    for name, m in METRICS.items():
        assert m.name == name and m.better in ("higher", "lower", "none") and m.suites
        assert len(m.meaning) > 15, name
    assert lower_is_better("time_median_s") and not lower_is_better("tokens_per_s")
    with pytest.raises(ValueError, match="not defined"):
        metric("speed")


def test_writer_fills_units_and_refuses_undefined_metrics(tmp_path):
    writer = ResultsWriter(tmp_path, "throughput")
    writer.add_case("a", [{"variant": "x", "status": "ok", "metric": "time_median_s",
                           "value": 1.0}])
    assert '"unit": "s"' in (tmp_path / "results.jsonl").read_text()
    with pytest.raises(ValueError, match="not defined"):
        writer.add_case("b", [{"variant": "x", "status": "ok", "metric": "speedy", "value": 1}])
    with pytest.raises(ValueError, match="unit"):
        writer.add_case("c", [{"variant": "x", "status": "ok", "metric": "time_median_s",
                               "value": 1.0, "unit": "ms"}])
    with pytest.raises(ValueError, match="verify"):
        checked_row("throughput", {"metric": "passed"})
