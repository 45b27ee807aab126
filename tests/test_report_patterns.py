"""The report's patterns section, fed small synthetic ``patterns`` results directories: it
renders, calls nothing between variants that cannot be told apart, calls a real difference,
and says where block sparsity starts to pay."""

from __future__ import annotations

import re
from pathlib import Path

from attnbench.results import ResultsWriter
from attnbench.speed import replicated_time

PATTERN = "sliding_window:window=256"
SHAPE = dict(kind="attention", B=1, Hq=2, Hkv=2, D=64, Dv=64, dtype="float32", causal=False,
             mode="fwd", device="cpu", preset="patterns", measure="full", pattern=PATTERN)
NOISE = [[1.00, 1.02, 0.99], [1.04, 1.05, 1.03], [0.97, 0.98, 0.99]]  # three processes
LENGTHS = (1024, 2048, 4096)
VIA = {"sdpa": "dense_mask", "flex": "native", "naive": "native"}


def write_run(out: Path, factors: dict[str, dict[int, float]], floor: float = 0.03) -> Path:
    """A patterns results directory: each variant's samples at N are NOISE times N * its
    factor there (identical factors: indistinguishable variants), plus a noise floor row."""
    writer = ResultsWriter(out, "patterns", extra={"variants": {}, "preset": "patterns"})
    for n in LENGTHS:
        for variant, by_n in factors.items():
            case_id = f"attention:{variant}:B1-H2-N{n}-D64-float32-cpu~sliding_window-w256:fwd"
            per_process = [[x * by_n[n] * n * 1e-6 for x in p] for p in NOISE]
            values = replicated_time(per_process)
            values.update(mem_peak_bytes=float(n * n * (4 if variant != "flex" else 0.1)))
            if variant == "flex":
                values["compile_s"] = 20.0 if n == LENGTHS[0] else 0.5
            rows = [{"variant": variant, "attention": variant, **SHAPE, "N": n, "S": n,
                     "pattern_via": VIA[variant], "status": "ok", "metric": k, "value": v}
                    for k, v in values.items()]
            writer.add_case(case_id, rows, {f"time_s:p{r}": s for r, s in enumerate(per_process)})
    writer.add_case("attention:flex:B1-H2-N1024-D64-float32-cpu~sliding_window-w256:fwd+bwd", [
        {"variant": "flex", **SHAPE, "N": 1024, "S": 1024, "mode": "fwd+bwd",
         "status": "skipped", "metric": "run", "reason": "backward not supported"}])
    writer.add_case("noise_floor", [{"variant": "aa_control", "kind": "control",
                                     "preset": "patterns", "status": "ok",
                                     "metric": "noise_floor", "value": floor}])
    writer.finish()
    return out


def flat(factor: float) -> dict[int, float]:
    return {n: factor for n in LENGTHS}


def section(dirs: list[Path]):
    from attnbench.reports.load import load_bundle
    from attnbench.reports.sections.patterns import build

    return build(load_bundle(dirs, baseline="sdpa"))


def cells(sec) -> list[str]:
    from attnbench.reports.document import Table

    return [c.text for item in sec.items if isinstance(item, Table) for row in item.rows
            for c in row]


def test_identical_variants_make_no_speed_call(tmp_path):
    sec = section([write_run(tmp_path / "run", {"sdpa": flat(1.0), "flex": flat(1.0)})])
    texts = cells(sec)
    speed = [t for t in texts if "×" in t and "[" in t]
    assert len(speed) == 3 and all(t.endswith(" tie") for t in speed), speed
    assert not any(re.search(r"\b(faster|slower)\b", t) for t in texts)
    assert any(t.startswith("does not pay in this range (N 1024–4096; calls: 3 tie)")
               for t in texts)


def test_a_real_difference_is_called_and_placed(tmp_path):
    # flex ties at N 1024, then is 2x and 4x faster; naive is 3x slower everywhere
    flex = {1024: 1.0, 2048: 0.5, 4096: 0.25}
    sec = section([write_run(tmp_path / "run", {"sdpa": flat(1.0), "flex": flex,
                                                "naive": flat(3.0)})])
    texts = cells(sec)
    assert "pays from N = 2048 (2.00× [2.00, 2.00]) in N 1024–4096" in texts
    assert any(t.startswith("does not pay in this range") and "slower" in t for t in texts)
    assert "4.00× [4.00, 4.00] faster" in texts and "0.33× [0.33, 0.33] slower" in texts
    always = {1024: 0.5, 2048: 0.5, 4096: 0.25}
    texts = cells(section([write_run(tmp_path / "b", {"sdpa": flat(1.0), "flex": always})]))
    assert "pays at every N measured (N 1024–4096; 2.00× [2.00, 2.00] at N 1024): the " \
           "crossover lies below this range" in texts
    assert "20" in texts and "0.5" in texts  # compile seconds, their own column
    assert "0.03×" in texts  # flex's peak memory against the dense-mask baseline's


def test_the_floor_decides_the_call(tmp_path):
    flex = {1024: 1 / 1.04, 2048: 1 / 1.04, 4096: 1 / 1.04}  # 4 % faster
    tight = cells(section([write_run(tmp_path / "a", {"sdpa": flat(1.0), "flex": flex}, 0.01)]))
    loose = cells(section([write_run(tmp_path / "b", {"sdpa": flat(1.0), "flex": flex}, 0.05)]))
    assert sum(t.endswith(" faster") for t in tight) == 3
    assert not any(t.endswith(" faster") for t in loose)


def test_section_renders_in_both_outputs(tmp_path):
    from attnbench.reports import write_report
    from test_report_render import Page

    run = write_run(tmp_path / "run", {"sdpa": flat(1.0), "flex": {1024: 1.0, 2048: 0.5,
                                                                   4096: 0.25},
                                       "naive": flat(3.0)})
    write_report([run], tmp_path / "page")
    page = Page((tmp_path / "page" / "index.html").read_text(encoding="utf-8"))
    assert any(h.endswith("Attention patterns") for h in page.headings)
    assert page.images["patterns"], "the time / memory figure"
    assert "pays from N = 2048" in page.text["patterns"]
    md = (tmp_path / "page" / "report.md").read_text(encoding="utf-8")
    assert "Attention patterns" in md and "pays from N = 2048" in md
    assert r"sliding\_window: window=256" in md  # Markdown escapes the underscore
    assert "Pattern cases not measured" in md and "backward not supported" in md


def test_no_patterns_run_says_so(tmp_path):
    from test_speed_calls import write_run as plain_run

    sec = section([plain_run(tmp_path / "plain", {"sdpa": 1.0})])
    assert "Not measured: attention patterns" in sec.items[0].text


def test_pattern_labels_break_on_a_phone_and_still_parse():
    from attnbench.reports.sections.patterns import pattern_label
    from attnbench.variants.patterns import parse_pattern

    text = "causal+softcap:cap=20"
    assert pattern_label(text) == "causal + softcap: cap=20"
    assert parse_pattern(pattern_label(text)) == parse_pattern(text)


def test_peak_memory_reads_in_three_digits():
    from attnbench.reports.document import fmt_bytes

    assert fmt_bytes(512) == "512 B" and fmt_bytes(1035327) == "0.987 MiB"  # not 1.01e+03 KiB
    assert fmt_bytes(9515240) == "9.07 MiB" and fmt_bytes(5e9) == "4.66 GiB"


def test_a_patterns_run_beside_a_throughput_run_stays_apart(tmp_path):
    from attnbench.reports.load import load_bundle
    from attnbench.reports.sections.common import attention_cases
    from attnbench.reports.sections.throughput import noise_floors
    from test_speed_calls import write_run as plain_run

    plain = plain_run(tmp_path / "throughput", {"sdpa": 1.0, "naive": 2.0}, floor=0.03)
    patterns = write_run(tmp_path / "patterns", {"sdpa": flat(1.0), "flex": flat(0.5)}, 0.07)
    bundle = load_bundle([plain, patterns])
    assert not bundle.several_runs  # one commit, one machine: one label, two suites
    assert set(attention_cases(bundle)["variant"]) == {"sdpa", "naive"}  # no pattern rows
    assert set(noise_floors(bundle).values()) == {0.03}
    assert set(noise_floors(bundle, "patterns").values()) == {0.07}
