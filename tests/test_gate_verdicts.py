"""Hard gates, exit codes, ordering and the two output formats, on hand-made findings."""

from __future__ import annotations

import json

import pytest
from attnbench.gate.report import GateReport, load_report, render_markdown, write_outputs
from attnbench.gate.stats import compare
from attnbench.gate.verdicts import (
    GateCheck,
    GateFinding,
    TimePolicy,
    correctness_finding,
    exit_code,
    memory_finding,
    structural_finding,
    time_finding,
    worst_first,
)

KiB, MiB = 1024, 2**20
CONTRACT_KEYS = {"case", "variant", "kind", "verdict", "ratio", "ci_low", "ci_high", "p_value",
                 "detail"}


# ---- memory: max(5 %, 256 KiB) ----------------------------------------------------------------

@pytest.mark.parametrize("base,head,expected", [
    (100 * MiB, 104 * MiB, "unchanged"),  # +4 %: under 5 %
    (100 * MiB, 106 * MiB, "regressed"),  # +6 %
    (1 * MiB, 1 * MiB + 200 * KiB, "unchanged"),  # +20 %, but under the 256 KiB floor
    (1 * MiB, 1 * MiB + 300 * KiB, "regressed"),  # over both
    (100 * MiB, 90 * MiB, "improved"),
])
def test_memory_margin_is_the_larger_of_5_percent_and_256_kib(base, head, expected):
    f = memory_finding("c", "v", base, head)
    assert f.verdict == expected
    assert f.fails_gate == (expected == "regressed")


# ---- correctness: newly failing fails, failing on both sides does not ------------------------

PASS = GateCheck(True, 1.0, 2.0)
FAIL = GateCheck(False, 40.0, 2.0, "out: FAIL")


@pytest.mark.parametrize("base,head,expected,fails", [
    (PASS, PASS, "unchanged", False),
    (PASS, FAIL, "regressed", True),  # newly fails / ratio crossed its bound
    (None, FAIL, "regressed", True),  # a new case that fails is new breakage
    (FAIL, FAIL, "failing", False),  # old breakage: reported, not blamed on this change
    (FAIL, PASS, "improved", False),
])
def test_correctness_verdicts(base, head, expected, fails):
    f = correctness_finding("c", "v", base, head)
    assert (f.verdict, f.fails_gate) == (expected, fails)


def test_structural_checks_warn_by_default_and_fail_when_asked():
    assert structural_finding("c", "v", False, "d").verdict == "warning"
    assert not structural_finding("c", "v", False, "d").fails_gate
    assert structural_finding("c", "v", False, "d", as_error=True).fails_gate
    assert structural_finding("c", "v", True, "d").verdict == "passed"


# ---- exit codes and ordering ------------------------------------------------------------------

def _findings() -> list[GateFinding]:
    slow = time_finding("t", "sdpa", compare([1.0, 1.01, 0.99, 1.0, 1.02, 0.98] * 3,
                                             [1.5, 1.51, 1.49, 1.5, 1.52, 1.48] * 3), TimePolicy())
    return [memory_finding("m", "naive", MiB, MiB), slow,
            correctness_finding("c", "tiled", PASS, FAIL),
            structural_finding("s", "tiled", False, "exponent grew")]


def test_exit_code_is_1_only_when_a_finding_fails_the_gate():
    findings = _findings()
    assert exit_code(findings) == 1
    assert exit_code([f for f in findings if not f.fails_gate]) == 0
    assert exit_code([]) == 0


def test_worst_first_puts_gate_failures_first_correctness_before_time():
    ordered = worst_first(_findings())
    assert [f.kind for f in ordered] == ["correctness", "time", "structural", "memory"]


# ---- outputs ----------------------------------------------------------------------------------

def test_json_keeps_the_report_contract_and_markdown_has_one_line_per_finding(tmp_path):
    report = GateReport("trees", {"description": "abc base"}, {"description": "working tree"},
                        _findings(), notes=["tiled: a | pipe in a note"],
                        settings={"threshold": 0.1})
    json_path, md_path = write_outputs(report, tmp_path / "out")
    data = load_report(json_path)
    assert data["verdict"] == "fail" and data["exit_code"] == 1
    assert all(CONTRACT_KEYS <= set(f) for f in data["findings"])
    assert [f["kind"] for f in data["findings"]][0] == "correctness"
    json.dumps(data)  # plain JSON: no NaN, no objects
    text = md_path.read_text()
    assert text == render_markdown(report)
    assert "FAIL (2 findings fail the gate)" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == len(_findings())
    assert rows[0].count("correctness") and "\\|" in text  # pipes escaped inside cells


def test_a_skipped_report_passes_and_says_why(tmp_path):
    report = GateReport("trees", {"description": "HEAD~1"}, {"description": "working tree"},
                        notes=["unknown revision 'HEAD~1'"], skipped=True)
    assert report.exit_code == 0 and report.verdict == "skipped"
    assert "SKIPPED" in render_markdown(report)


def test_unwritable_output_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="--out"):
        write_outputs(GateReport("trees", {}, {}), blocker / "sub")
