"""The report under hostile or partial input: names that look like markup, missing suites,
corrupted or incompatible files, and the layering rule (reports read files, run nothing)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from attnbench.cli import main
from attnbench.reports import write_report
from attnbench.results import ResultsError
from test_report_render import FIXTURES, Page, check_headings

REPO = Path(__file__).resolve().parent.parent
EVIL = '<script>alert("x")</script>'


def copy(tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        shutil.copytree(FIXTURES / name, tmp_path / name)
        out.append(tmp_path / name)
    return out


def append_rows(directory: Path, rows: list[dict]) -> None:
    with open(directory / "results.jsonl", "a", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def test_names_from_results_are_escaped(tmp_path: Path) -> None:
    (verify,) = copy(tmp_path, "verify")
    base = {"suite": "verify", "check": "reference", "dtype": "float32", "direction": "fwd",
            "case": "B1|H2 *bold* <b>", "unit": "", "reason": ""}
    append_rows(verify, [
        {**base, "case_id": "evil-1", "variant": EVIL, "status": "ok", "metric": "passed",
         "value": 0},
        {**base, "case_id": "evil-2", "variant": EVIL, "status": "error", "metric": "passed",
         "value": None, "reason": "<img src=x onerror=alert(1)>"}])
    provenance = json.loads((verify / "provenance.json").read_text())
    provenance["variants"][EVIL] = {"kind": "attention", "doc": "</td><td>injected",
                                    "capabilities": {"notes": "<iframe>"}}
    provenance["hostname"] = "<b>host</b>"
    (verify / "provenance.json").write_text(json.dumps(provenance))
    write_report([verify], tmp_path / "out")
    text = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    page = Page(text)
    assert not {"script", "iframe"} & set(page.tags)  # no markup got through ...
    assert page.tags.count("b") == len(page.headings)  # ... only the page's "How to read" ...
    assert all(u.startswith(("data:image/png;base64,", "#")) for u in page.links)  # ... images
    assert EVIL in page.text["summary"] and EVIL in page.text["correctness"]
    assert "<img src=x onerror=alert(1)>" in page.text["correctness"]
    assert "</td><td>injected" in page.text["capabilities"]
    assert "&lt;script&gt;" in text and "Content-Security-Policy" in text
    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "<script" not in markdown and "<img" not in markdown
    assert "&lt;script&gt;" in markdown and r"B1\|H2 \*bold\*" in markdown


def test_missing_suites_say_not_measured(tmp_path: Path) -> None:
    """Only a verify run: every other section is a short note, never a crash or empty plot."""
    write_report([FIXTURES / "verify"], tmp_path)
    page = Page((tmp_path / "index.html").read_text(encoding="utf-8"))
    check_headings(page.headings)
    for section in ("throughput", "roofline", "memory", "blocks", "stability", "gate", "kernels"):
        assert "Not measured" in page.text[section], section
        assert page.images[section] == []
    assert page.images["correctness"]  # what was measured is still drawn
    assert "Not measured: block training stability" in page.text["summary"]


def test_empty_and_interrupted_results(tmp_path: Path) -> None:
    (verify,) = copy(tmp_path, "verify")
    (verify / "results.jsonl").write_text("")
    provenance = json.loads((verify / "provenance.json").read_text())
    provenance["end_time"] = None
    (verify / "provenance.json").write_text(json.dumps(provenance))
    write_report([verify], tmp_path / "out")
    page = Page((tmp_path / "out" / "index.html").read_text(encoding="utf-8"))
    assert "Not measured: verification" in page.text["correctness"]
    assert "Interrupted or still running" in page.text["environment"]


def test_unknown_baseline_is_a_note(tmp_path: Path) -> None:
    write_report([FIXTURES / "cpu"], tmp_path, baseline="flash9000")
    page = Page((tmp_path / "index.html").read_text(encoding="utf-8"))
    assert "Baseline 'flash9000' was not measured" in page.text["throughput"]
    assert page.images["throughput"]


@pytest.mark.parametrize("damage, expected", [
    (lambda d: (d / "results.jsonl").write_text('{"a": 1}\nnot json\n{"b": 2}\n'),
     "results.jsonl: line 2 is not a valid JSON record"),
    (lambda d: (d / "provenance.json").write_text("{oops"),
     "provenance.json: corrupted provenance record"),
    (lambda d: (d / "provenance.json").write_text('{"schema": "other/9"}'),
     "provenance.json: schema 'other/9'"),
    (lambda d: (d / "provenance.json").unlink(), "no provenance.json"),
    (lambda d: append_rows(d, [{"suite": "verify", "case_id": "x", "variant": "v",
                                "status": "ok", "metric": "m", "value": "fast"}]),
     "results.jsonl: row 56 has a non-numeric value 'fast'"),
    (lambda d: append_rows(d, [{"suite": "verify", "case_id": "x", "variant": "v",
                                "status": "maybe", "metric": "m", "value": 1}]),
     "results.jsonl: unknown status ['maybe']"),
    (lambda d: append_rows(d, [{"suite": "throughput", "case_id": "x", "variant": "v",
                                "status": "ok", "metric": "m", "value": 1}]),
     "rows of suite ['throughput'] but provenance.json says 'verify'"),
    (lambda d: append_rows(d, [{"case_id": "x", "value": 1}]),
     "results.jsonl: row 56 lacks 'suite'"),
    (lambda d: (d / "results.jsonl").write_text('{"case_id": "x", "value": 1}\n'),
     "results.jsonl: incompatible results, missing columns"),
    (lambda d: (d / "samples.jsonl").write_text('{"metric": "m"}\n'),
     "samples.jsonl: record without case_id"),
])
def test_bad_files_give_an_error_naming_the_file(tmp_path: Path, damage, expected: str) -> None:
    (verify,) = copy(tmp_path, "verify")
    damage(verify)
    with pytest.raises(ResultsError, match=expected.replace("[", r"\[").replace("(", r"\(")):
        write_report([verify], tmp_path / "out")
    assert not (tmp_path / "out" / "index.html").exists()


def test_bad_gate_file_and_bad_paths(tmp_path: Path) -> None:
    gate = tmp_path / "gate.json"
    gate.write_text('{"findings": [{"verdict": "pass"}]}')
    with pytest.raises(ResultsError, match="gate.json: finding 1 lacks 'case'"):
        write_report([FIXTURES / "verify"], tmp_path / "out", gate_path=gate)
    gate.write_text("[1, 2")
    with pytest.raises(ResultsError, match="gate.json: not valid JSON"):
        write_report([FIXTURES / "verify"], tmp_path / "out", gate_path=gate)
    with pytest.raises(ResultsError, match="holds no results.jsonl"):
        write_report([tmp_path], tmp_path / "out")
    with pytest.raises(ResultsError, match="given twice"):
        write_report([FIXTURES / "verify", FIXTURES / "verify"], tmp_path / "out")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["report", str(FIXTURES / "verify"), "--out", str(out)]) == 0
    assert f"report: {out / 'index.html'}" in capsys.readouterr().out
    (broken,) = copy(tmp_path, "verify")
    (broken / "provenance.json").write_text("{")
    assert main(["report", str(broken)]) == 2
    assert f"{broken / 'provenance.json'}: corrupted" in capsys.readouterr().err


def test_reports_import_no_variant_or_kernel() -> None:
    """Layering: the report package reads files only."""
    code = ("import sys, reports, reports.sections.stability; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('variants', 'kernels')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_gate_as_bare_list_with_many_quiet_findings(tmp_path: Path) -> None:
    """A plain list of findings is accepted; beyond 40 findings the unchanged ones are counted,
    not listed, and a failing one still comes first."""
    findings = [{"case": f"case-{i:02d}", "verdict": "unchanged", "kind": "time", "ratio": 1.0}
                for i in range(50)]
    findings.append({"case": "zz-slow", "verdict": "regressed", "kind": "time", "ratio": 1.4,
                     "ci_low": 1.3, "ci_high": 1.5, "p_value": 0.001})
    gate = tmp_path / "gate.json"
    gate.write_text(json.dumps(findings))
    write_report([FIXTURES / "verify"], tmp_path / "out", gate_path=gate)
    page = Page((tmp_path / "out" / "index.html").read_text(encoding="utf-8"))
    text = page.text["gate"]
    assert "zz-slow" in text and "case-07" not in text
    assert "50 more findings unchanged or passed" in text
    assert "Gate: fail; 1 failing finding(s) among 51" in page.text["summary"]


def test_partial_stability_run(tmp_path: Path) -> None:
    """Training rows only (no init diagnostics, sensitivity, curves), a NaN loss and a verdict
    this report has never heard of: drawn, with notes for what is missing."""
    (stability,) = copy(tmp_path, "stability")
    rows = [json.loads(line) for line in (stability / "results.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["case_id"].startswith("train:")]
    for r in rows:
        if r["case_id"] == "train:pre_ln:sdpa:L12:lr0.1:w0:s0":
            r["verdict"] = "spiky"
            if r["metric"] == "final_val_loss":
                r["value"] = None
    (stability / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (stability / "samples.jsonl").write_text("")
    write_report([stability], tmp_path / "out")
    page = Page((tmp_path / "out" / "index.html").read_text(encoding="utf-8"))
    text = page.text["stability"]
    assert "spiky" in text
    for missing in ("learning-rate sensitivity", "initialisation diagnostics", "loss curves"):
        assert f"Not measured: {missing}" in text
    assert len(page.images["stability"]) == 2  # loss vs lr, divergence map
