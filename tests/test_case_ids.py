"""One case-id grammar (``attnbench.case_ids``) for verify, the benchmark and the gate: the same
problem has the same shape part everywhere, every id the suites write parses back to the row's
fields, and readers of verify ids accept the form written before the grammar was shared."""

from __future__ import annotations

import attnbench.variants  # noqa: F401  (registers the built-ins)
import pandas as pd
import pytest
import torch
from attnbench.case_ids import CaseShape, case_id, parse_case_id, parse_shape, verify_case_id
from attnbench.gate.measure import Shape, case_key
from attnbench.gate.stored import checks as gate_checks
from attnbench.gate.stored import compare_results
from attnbench.results import load_results
from attnbench.throughput.cases import BenchCase
from attnbench.throughput.presets import expand, load_preset
from attnbench.variants.patterns import parse_pattern
from attnbench.variants.registry import Case, get
from attnbench.verify.blocks import check_block
from attnbench.verify.result import skipped
from attnbench.verify.results import open_results
from attnbench.verify.runner import verify_attention


def bench_case(shape: Shape, variant: str = "sdpa", mode: str = "fwd+bwd") -> BenchCase:
    return BenchCase(kind="attention", attention=variant, B=shape.B, Hq=shape.Hq, Hkv=shape.Hkv,
                     N=shape.N, S=shape.N, D=shape.D, Dv=shape.D, dtype=shape.dtype,
                     causal=shape.causal, mode=mode, device=shape.device)


def test_gate_case_ids_are_the_benchmarks():
    for shape in (Shape(), Shape(causal=True, Hkv=2)):
        assert case_key("sdpa", "fwd+bwd", shape) == bench_case(shape).case_id


@pytest.mark.parametrize("causal", [False, True])
def test_verify_and_benchmark_ids_share_the_shape_part(causal: bool):
    """The same attention problem, checked by verify and timed by the benchmark: one shape."""
    case = Case(B=1, Hq=4, Hkv=2, N=70, D=32, dtype=torch.bfloat16, causal=causal,
                backward=True)
    verified = parse_case_id(skipped("grad", "sdpa", case, "n/a", direction="grad").case_id())
    timed = parse_case_id(bench_case(Shape(B=1, Hq=4, Hkv=2, N=70, D=32, dtype="bfloat16",
                                           causal=causal)).case_id)
    assert verified.shape == timed.shape == CaseShape(1, 4, 2, 70, 70, 32, 32, "bfloat16",
                                                      "cpu", causal)
    assert (verified.subject, verified.mode) == (timed.subject, timed.mode) == ("sdpa",
                                                                               "fwd+bwd")
    assert (verified.kind, timed.kind) == ("verify.grad", "attention")


def test_every_benchmark_id_parses_back_to_its_fields():
    cases = expand(load_preset("quick"), variants=("naive", "sdpa"))
    patterned = expand(load_preset("patterns"), variants=("naive", "sdpa"))
    assert {c.registry_case().pattern.id for c in patterned} >= {"sliding_window-w256"}
    cases = [*cases, *patterned]
    assert {c.kind for c in cases} == {"attention", "block"} and \
        {c.measure for c in cases} >= {"full", "memory"}
    for c in cases:
        parsed = parse_case_id(c.case_id)
        assert str(parsed) == c.case_id
        assert parsed.shape == c.registry_case().id_shape(c.d_model)
        assert parsed.mode == c.mode and not parsed.backward
        assert parsed.subject == (f"{c.block}/{c.attention}" if c.kind == "block"
                                  else c.attention)


def test_verify_writes_ids_that_parse_back_to_the_row_fields(tmp_path):
    results = verify_attention(get("naive"), torch.float32, checks=["out", "mask", "grad"])
    results.append(check_block(get("pre_ln"), get("naive"), torch.float32))
    record = open_results(tmp_path, seed=0, argv=["test"])
    record(results + results[:1], finish=True)  # the last one repeats the first's id
    frame = load_results(tmp_path)
    ids = frame.drop_duplicates("case_id")
    assert len(ids) == len(results) + 1
    for _, row in ids.iterrows():
        parsed = parse_case_id(row["case_id"])
        shape, backward = parse_shape(row["case"])
        assert parsed.kind == f"verify.{row['check']}" and parsed.shape == shape
        assert parsed.mode == ("fwd+bwd" if backward or row["direction"] == "grad" else "fwd")
        assert parsed.shape.dtype == row["dtype"]
        assert parsed.subject == (f"{row['variant']}/{row['attention']}" if row["attention"]
                                  else row["variant"])
    assert parse_case_id(ids["case_id"].iloc[-1]).repeat == 2
    block = ids[ids["check"] == "encoder_layer"]["case_id"].iloc[0]
    assert block.startswith("verify.encoder_layer:pre_ln/naive:") and "-d64:" in block


OLD_FORM = ("deepnorm[naive]:float64_block:bfloat16:B2-H4-N24-D16-bfloat16-cpu-causal-bwd-d64",
            "sdpa:gqa:float16:B1-H4/2-N40-D32-float16-cpu-causal")


def old_verify_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows named as verify named them before the shared grammar."""
    who = [f"{v}[{a}]" if a else v for v, a in zip(frame["variant"], frame["attention"],
                                                   strict=True)]
    old = [":".join(parts) for parts in zip(who, frame["check"], frame["dtype"], frame["case"],
                                            strict=True)]
    return frame.assign(case_id=old)


def test_a_pattern_id_with_dashes_stays_one_field():
    """A pattern's id has its own "-" ("sliding_window-w256"): after "~" it never reads as a
    flag, and a backward verify label puts "bwd" before it."""
    case = Case(B=1, Hq=2, N=64, D=16, backward=True,
                pattern=parse_pattern("causal+softcap:cap=20"))
    assert case.label() == "B1-H2-N64-D16-float32-cpu-bwd~causal+softcap-c20"
    shape, backward = parse_shape(case.label())
    assert backward and shape.pattern == "causal+softcap-c20" and shape.label() == \
        "B1-H2-N64-D16-float32-cpu~causal+softcap-c20"


def test_old_verify_ids_rebuild_to_the_new_ones():
    assert verify_case_id("float64_block", "deepnorm", OLD_FORM[0].split(":")[3], "grad",
                          "naive") == ("verify.float64_block:deepnorm/naive:"
                                       "B2-H4-N24-D16-bfloat16-cpu-causal-d64:fwd+bwd")
    for old in OLD_FORM:
        with pytest.raises(ValueError, match="case_id"):
            parse_case_id(old)


def test_readers_accept_the_old_verify_ids(tmp_path):
    """The report groups verify rows by id and reads their fields; the gate's stored comparison
    rebuilds an old id from the fields: a baseline written before the grammar still matches."""
    from attnbench.reports.load import load_bundle
    from attnbench.reports.sections.correctness import checks as report_checks

    results = verify_attention(get("sdpa"), torch.float32, checks=["out", "gqa", "grad"])
    results.append(check_block(get("pre_ln"), get("sdpa"), torch.float32))
    new, old = tmp_path / "new", tmp_path / "old"
    open_results(new, seed=0, argv=["test"])(results, finish=True)
    open_results(old, seed=0, argv=["test"])(results, finish=True)
    rows = (old / "results.jsonl").read_text().splitlines()
    frame = load_results(new)
    renamed = old_verify_rows(frame)
    assert len(rows) == len(frame) and set(renamed["case_id"]).isdisjoint(frame["case_id"])
    lines = [line.replace(f'"case_id": "{a}"', f'"case_id": "{b}"')
             for line, a, b in zip(rows, frame["case_id"], renamed["case_id"], strict=True)]
    (old / "results.jsonl").write_text("\n".join(lines) + "\n")
    assert list(load_results(old)["case_id"]) == list(renamed["case_id"])

    shown = [report_checks(load_bundle([d])).drop(columns=["case_id", "run"]) for d in (new, old)]
    pd.testing.assert_frame_equal(shown[0], shown[1])
    findings, notes, _, _ = compare_results(old, new, memory_rel=0.1, memory_abs=0)
    assert not [n for n in notes if "absent" in n], notes
    assert len(findings) == len(gate_checks(load_results(new))) >= len(results) - 1
    assert {(f.kind, f.verdict) for f in findings} == {("correctness", "unchanged")}


@pytest.mark.parametrize("bad, words", [
    ("attention:sdpa:B1-H4-N64-D32-float32-cpu", "expected kind:subject:shape:mode"),
    ("attention:sdpa:B1-H4-N64-D32-float32-cpu:back", "mode expected one of"),
    ("attention:sdpa:B1-H4-N64-D32-float32-cpu:fwd:0", "repeat expected an integer >= 1"),
    ("attention:sdpa:B1-H4-N64-float32-cpu-x:fwd", "expected H<Hq>"),
    ("attention:sdpa:B1-H4-N64-D32-float32-cpu-sliding:fwd", "unknown flag 'sliding'"),
    ("attention:sdpa:H4-N64-D32-float32-cpu:fwd", "case shape: expected"),
])
def test_a_bad_id_is_named(bad: str, words: str):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")) as err:
        parse_case_id(bad)
    assert repr(bad) in str(err.value) or "case shape" in str(err.value)


def test_building_an_id_checks_its_parts():
    with pytest.raises(ValueError, match="mode: expected one of"):
        case_id("attention", "sdpa", "B1-H4-N64-D32-float32-cpu", "forward")
    with pytest.raises(ValueError, match="subject: expected a non-empty string without ':'"):
        case_id("attention", "a:b", "B1-H4-N64-D32-float32-cpu", "fwd")
