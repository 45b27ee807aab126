"""The report rendered from the fixture results (tests/fixtures/report, see make.py there):
every section present and in order, self-contained HTML, Markdown with its figures, the combined
CSV, run labels, and byte-identical output for identical input."""

from __future__ import annotations

import base64
import importlib.util
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from attnbench.reports import write_report

FIXTURES = Path(__file__).parent / "fixtures" / "report"
# The core sections in reading order. Numbers are the renderer's: a new section (one module
# registered with an order key) may appear anywhere among these without a test edit.
CORE = ["Summary", "Environment and provenance", "Capability and semantics matrix",
        "Correctness", "Throughput", "Per-shape results", "Roofline", "Memory", "Blocks",
        "Training stability", "Gate verdicts", "Triton kernels compiled for the GPU"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Collects what the tests look at: headings, text per section, images, scripts, links."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.headings: list[str] = []
        self.text: dict[str, str] = {}
        self.images: dict[str, list[str]] = {}
        self.tags: list[str] = []
        self.links: list[str] = []
        self.cells: list[tuple[str, str]] = []  # (class, text) of every td
        self._section, self._in_h2, self._td = "", False, None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self._section = a["id"] or ""
            self.text[self._section], self.images[self._section] = "", []
        elif tag == "h2":
            self._in_h2 = True
            self.headings.append("")
        elif tag == "img":
            self.images[self._section].append(a["src"] or "")
        elif tag == "td":
            self._td = [a.get("class") or "", ""]
        for name in ("href", "src"):
            if a.get(name):
                self.links.append(a[name] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_h2 = False
        elif tag == "td" and self._td is not None:
            self.cells.append((self._td[0], self._td[1]))
            self._td = None

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.headings[-1] += data
        if self._section:
            self.text[self._section] += data
        if self._td is not None:
            self._td[1] += data


def check_headings(headings: list[str]) -> None:
    """Numbered 1, 2, ... in order, and the core sections all there in their order."""
    numbers, titles = zip(*(h.split(". ", 1) for h in headings), strict=True)
    assert list(numbers) == [str(i) for i in range(1, len(headings) + 1)], headings
    positions = [titles.index(t) for t in CORE]
    assert positions == sorted(positions), titles


def render(out: Path, *dirs: Path, **kwargs) -> Path:
    write_report([str(d) for d in dirs] or [str(FIXTURES)], out, **kwargs)
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("report"), gate_path=FIXTURES / "gate.json")


@pytest.fixture(scope="module")
def page(report: Path) -> Page:
    return Page((report / "index.html").read_text(encoding="utf-8"))


def test_every_section_in_order(page: Page) -> None:
    check_headings(page.headings)


def test_html_is_self_contained(page: Page) -> None:
    assert "script" not in page.tags and "link" not in page.tags
    external = [u for u in page.links if not u.startswith(("data:image/png;base64,", "#"))]
    assert external == []
    for section in ("correctness", "throughput", "roofline", "memory", "blocks", "stability"):
        assert page.images[section], f"section {section} has no figure"
        for src in page.images[section]:
            assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)


def test_summary_answers_the_three_questions(page: Page) -> None:
    summary = page.text["summary"]
    assert "FAIL: 1 failed, 1 raised, of 10 checks" in summary  # tiled, bf16 grad + lse error
    assert "pass: 9 of 9 checks; worst error 35% of bound" in summary  # sdpa
    assert "pass: 10 of 10 checks; worst error 50% of bound" in summary  # naive (one bound inf)
    assert "all 16 problems" in summary and "never called fastest" in summary
    assert "fwd 2.00" in summary and "fwd 1.00" in summary  # naive quadratic, flash linear
    assert "4 of 9 healthy; unigram_collapse 5×" in summary  # post_ln
    assert "reproduced" in summary and "not measured" in summary  # findings
    assert "Gate: fail; 1 failing finding(s) among 3" in summary


def test_failures_and_verdicts_are_highlighted(page: Page) -> None:
    bad = {text for cls, text in page.cells if cls == "bad"}
    assert {"FAIL", "ERROR", "regressed", "blowup"} <= bad
    assert any(text.startswith("FAIL: 1 failed") for text in bad)


def test_sections_state_conventions_and_ceilings(page: Page) -> None:
    assert "FLOP convention: useful FLOPs" in page.text["throughput"]
    assert "790" in page.text["roofline"] and "Memory bandwidth ceiling: not measured" in \
        page.text["roofline"]
    assert "Speed-up against sdpa" in page.text["throughput"]
    assert "CUDA out of memory" in page.text["throughput"]  # failed cases listed, not hidden
    assert "lowest diverging lr" in page.text["stability"]
    assert "attn:tiled:B1-H8-N2048-D64-float32-bwd-c1" in page.text["gate"]
    assert "Gate verdict: fail (exit 1); base: commit=bbbbbbbbbb" in page.text["gate"]
    assert "sdpa_cudnn skipped on both sides" in page.text["gate"]


def test_runs_are_labelled_and_differences_flagged(page: Page) -> None:
    for label in ("aaaaaaa @ NVIDIA H200", "bbbbbbb @ cpu"):
        assert label in page.text["summary"] and label in page.text["throughput"]
    assert "These runs differ in commit, device" in page.text["environment"]


def test_markdown_has_sections_and_its_figures(report: Path) -> None:
    text = (report / "report.md").read_text(encoding="utf-8")
    headings = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert headings[0] == "Contents"
    check_headings(headings[1:])
    figures = [part.split(")", 1)[0] for part in text.split("](figures/")[1:]]
    assert len(figures) >= 10
    for name in figures:
        assert (report / "figures" / name).read_bytes().startswith(PNG_MAGIC)
    assert "**✗ FAIL: 1 failed" in text


def test_csv_is_the_combined_table(report: Path) -> None:
    import pandas as pd

    table = pd.read_csv(report / "results.csv")
    expected = sum(len((FIXTURES / d / "results.jsonl").read_text().splitlines())
                   for d in ("cpu", "gpu", "stability", "verify"))
    assert len(table) == expected
    assert list(table.columns[:8]) == ["run", "results_dir", "suite", "case_id", "variant",
                                       "status", "metric", "value"]
    assert set(table["run"]) == {"aaaaaaa @ NVIDIA H200", "bbbbbbb @ cpu"}


def test_same_inputs_same_bytes(report: Path, tmp_path: Path) -> None:
    again = render(tmp_path / "again", gate_path=FIXTURES / "gate.json")
    names = sorted(p.relative_to(report) for p in report.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in names:
        assert (report / name).read_bytes() == (again / name).read_bytes(), name


def test_fixture_is_what_make_py_writes(tmp_path: Path) -> None:
    """The committed fixture and its generator agree (regenerate with make.py if not)."""
    spec = importlib.util.spec_from_file_location("make_report_fixtures", FIXTURES / "make.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    make.main(tmp_path)
    for path in sorted(tmp_path.rglob("*.json*")):
        assert path.read_bytes() == (FIXTURES / path.relative_to(tmp_path)).read_bytes(), path
    assert json.loads((FIXTURES / "verify" / "provenance.json").read_text())["schema"] == \
        "attnbench-results/1"
