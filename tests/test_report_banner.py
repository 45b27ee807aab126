"""The page's top: the verdict banner checked against the results files it came from, the
gate verdict in it, the per-reader answers, readable figures, and the section registry
(numbers assigned at render time, a new section is one registration). No speed call between
identical runs: tests/test_speed_calls.py, which also renders the page."""

from __future__ import annotations

import json
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from attnbench.reports import build_sections, write_report
from attnbench.reports.document import Figure, Section
from attnbench.reports.load import load_bundle
from attnbench.reports.sections import _REGISTRY, register_section
from test_report_render import FIXTURES, Page, check_headings


class Banner(HTMLParser):
    """The text of the banner's verdict lines and badges."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[tuple[str, str]] = []  # (class, text)
        self.badges: list[str] = []
        self._depth, self._current = 0, None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id") == "verdict":
            self._depth = 1
        elif self._depth and tag == "div":
            self._depth += 1
        if self._depth and tag in ("p", "li"):
            self._current = [tag, a.get("class") or "", ""]

    def handle_endtag(self, tag: str) -> None:
        if self._depth and tag == "div":
            self._depth -= 1
        if self._current and tag == self._current[0]:
            kind, cls, text = self._current
            (self.lines.append((cls, text)) if kind == "p" else self.badges.append(text))
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._current:
            self._current[2] += data


def banner(out: Path) -> Banner:
    return Banner((out / "index.html").read_text(encoding="utf-8"))


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def expected_verify(path: Path) -> Counter[str]:
    """Outcome per check, straight from results.jsonl (not through the report's code)."""
    by_case: dict[str, list[dict]] = {}
    for r in rows(path):
        by_case.setdefault(r["case_id"], []).append(r)
    tally: Counter[str] = Counter()
    for found in by_case.values():
        if any(r["status"] == "error" for r in found):
            tally["raised"] += 1
        elif all(r["status"] == "skipped" for r in found):
            tally["skipped"] += 1
        elif any(r["metric"] == "passed" and r["status"] == "ok" and r["value"] != 1
                 for r in found):
            tally["failed"] += 1
        else:
            tally["passed"] += 1
    return tally


@pytest.fixture(scope="module")
def with_gate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("with-gate")
    write_report([FIXTURES], out, gate_path=FIXTURES / "gate.json")
    return out


def test_banner_counts_match_the_results(with_gate: Path) -> None:
    verify = expected_verify(FIXTURES / "verify" / "results.jsonl")
    ran = verify["passed"] + verify["failed"] + verify["raised"]
    gate = json.loads((FIXTURES / "gate.json").read_text())
    failing = sum(bool(f.get("fails_gate")) for f in gate["findings"])
    findings = Counter(
        "not measured" if r["status"] != "ok" else
        ("reproduced" if r["value"] == 1 else "not reproduced")
        for r in rows(FIXTURES / "stability" / "results.jsonl")
        if r["case_id"].startswith("finding:") and r["metric"] == "reproduced")
    lines = dict((text.split(":")[0], (cls, text)) for cls, text in banner(with_gate).lines)
    assert lines["Verify"] == ("note bad", (
        f"Verify: FAIL, {ran} checks run, {verify['failed']} failed, {verify['raised']} raised, "
        f"{verify['skipped']} skipped (unsupported by the variant)"))
    assert (ran, verify["failed"], verify["raised"], verify["skipped"]) == (29, 1, 1, 1)
    assert lines["Gate"] == ("note bad", f"Gate: {gate['verdict'].upper()}, {failing} failing "
                             f"finding(s) among {len(gate['findings'])} ({FIXTURES / 'gate.json'})")
    parts = ", ".join(f"{findings[k]} {k}" for k in ("reproduced", "not reproduced",
                                                    "not measured") if findings[k])
    trained = [r for r in rows(FIXTURES / "stability" / "results.jsonl")
               if r["metric"] == "final_val_loss"]
    healthy = sum(r.get("verdict", "healthy") == "healthy" for r in trained)
    assert lines["Stability findings"][1].startswith(
        f"Stability findings: {parts} of {sum(findings.values())}; {healthy} of "
        f"{len(trained)} training runs healthy")
    badges = dict(b.split(": ", 1) for b in banner(with_gate).badges)
    assert badges["GPU"] == "NVIDIA H200" and badges["device"] == "NVIDIA H200 and CPU"
    assert badges["Triton"] == "interpreter in some runs, compiled in others"


def test_gate_verdict_in_banner(tmp_path: Path) -> None:
    """A passing gate file shows PASS; no gate file says how to produce one."""
    gate = tmp_path / "gate.json"
    gate.write_text(json.dumps({"verdict": "pass", "exit_code": 0, "findings": [
        {"case": "attn:sdpa:B1-H4-N256-D64-float32-fwd-c0", "kind": "time",
         "verdict": "unchanged", "ratio": 1.01, "ci_low": 0.97, "ci_high": 1.05,
         "fails_gate": False}]}))
    write_report([FIXTURES / "cpu"], tmp_path / "pass", gate_path=gate)
    lines = banner(tmp_path / "pass").lines
    assert ("note good", f"Gate: PASS, 0 failing finding(s) among 1 ({gate})") in lines
    write_report([FIXTURES / "cpu"], tmp_path / "none")
    (cls, text), = [line for line in banner(tmp_path / "none").lines
                    if line[1].startswith("Gate")]
    assert cls == "note muted" and "attnbench gate --base" in text and "--gate" in text
    page = Page((tmp_path / "pass" / "index.html").read_text(encoding="utf-8"))
    assert "Verdict: pass" in page.text["summary"]  # the CI owner's answer agrees


def test_answers_for_each_reader(with_gate: Path) -> None:
    page = Page((with_gate / "index.html").read_text(encoding="utf-8"))
    summary = page.text["summary"]
    for reader in ("Kernel author", "LM researcher", "CI owner"):
        assert reader in summary
    assert "[bbbbbbb @ cpu] tiled: right FAIL 1 failed, 1 raised" in summary
    assert "[bbbbbbb @ cpu] post_ln: best lr 1e-3, loss 1.64 nats (depth 2)" in summary
    assert "Regime: d_model 64, depth 2, 6, 12, 300 steps, 1 seed(s) per point" in summary
    assert "Verdict: FAIL; verify 2 check(s) failed; gate failed" in summary
    assert "Worst: verify tiled" in summary
    html = (with_gate / "index.html").read_text(encoding="utf-8")
    assert html.index('id="verdict"') < html.index("Kernel author") < html.index("<img")


def test_a_new_section_is_one_registration(tmp_path: Path) -> None:
    """Registered between Throughput (50) and Per-shape (55): numbered, anchored and its figure
    file named by position, with no list edited."""
    from attnbench.reports import figures

    @register_section(order=52)
    def build(bundle) -> Section:
        return Section("extra", "Extra", "How.", [Figure("extra-fig", figures.to_png(
            figures.grid(1)[0]), "An extra figure")])

    try:
        sections = build_sections(load_bundle([FIXTURES / "cpu"]))
        check_headings([s.heading for s in sections])
        titles = [s.title for s in sections]
        assert titles.index("Throughput") + 1 == titles.index("Extra") == \
            titles.index("Per-shape results") - 1
        extra = sections[titles.index("Extra")]
        assert extra.heading == f"{extra.number}. Extra"
        assert extra.items[0].slug == f"{extra.number:02d}-extra-fig"
        with pytest.raises(ValueError, match="order 52 is already taken"):
            register_section(order=52)(lambda bundle: None)
    finally:
        del _REGISTRY[f"{build.__module__}.{build.__qualname__}"]


def test_figure_text_is_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every figure is drawn at the column width and no text in it is below SMALLEST_TEXT
    points (9 pt = 12.5 px at 100 dpi; ~12 px as displayed in the 1302-px image box of a
    1366-px window, above the 10 px the issue asks for)."""
    import matplotlib.text
    from attnbench.reports import figures

    seen: list[tuple[float, float]] = []
    original = figures.to_png

    def checked(fig) -> bytes:
        sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text)
                 if t.get_visible() and t.get_text().strip()]
        seen.append((fig.get_figwidth(), min(sizes)))
        return original(fig)

    monkeypatch.setattr(figures, "to_png", checked)
    write_report([FIXTURES], tmp_path)
    assert len(seen) >= 10
    assert all(width == figures.WIDTH for width, _ in seen), seen
    assert min(size for _, size in seen) >= figures.SMALLEST_TEXT == 9
    assert figures.WIDTH * figures.DPI == 1320  # the page's column: max-width 1360 - 2 x 20
