"""Results directories at their edges: JSON encoding of non-finite numbers, torn and corrupted
lines, --force / --resume, provenance, and the errors that name the bad file. Fast (no
benchmark runs): the results I/O is what every suite and the report rely on."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from attnbench.results import (
    PROVENANCE,
    RESULTS,
    SAMPLES,
    SCHEMA,
    ResultsError,
    ResultsWriter,
    check_restart_flags,
    load_provenance,
    load_results,
    load_samples,
)

from attnbench import results

SUITE = "stability"  # rows are checked against attnbench.metrics for their suite


def row(metric: str = "final_val_loss", value=1.0, status: str = "ok", **extra) -> dict:
    return {"variant": "v", "status": status, "metric": metric, "value": value, **extra}


def test_rows_and_samples_round_trip_with_defaults(tmp_path):
    w = ResultsWriter(tmp_path, SUITE, argv=["a"], seeds={"s": 1}, extra={"k": "x"})
    w.add_case("c1", [row(N=4)], samples={"t": [1.0, 2.0]})
    w.add_case("c2", [row(status="skipped")])
    w.finish(cases=2)
    frame = load_results(tmp_path)
    assert list(frame["case_id"]) == ["c1", "c2"] and set(frame["suite"]) == {SUITE}
    assert frame.loc[0, "reason"] == "" and frame.loc[0, "N"] == 4
    assert frame.loc[0, "unit"] == "nats"  # filled in from the metric's definition
    assert load_samples(tmp_path) == {("c1", "t"): [1.0, 2.0]}
    prov = load_provenance(tmp_path)
    assert prov["schema"] == SCHEMA and prov["suite"] == SUITE and prov["cases"] == 2
    assert prov["end_time"] and prov["resumed_from"] is None
    assert prov["command_line"] == ["a"] and prov["seeds"] == {"s": 1} and prov["k"] == "x"
    assert w.is_done("c1") and not w.is_done("c3")
    lines = (tmp_path / RESULTS).read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["case_id"] == "c1"


def test_non_finite_and_numpy_values_are_valid_json():
    assert results._jsonable(math.nan) is None
    assert results._jsonable(math.inf) == "inf" and results._jsonable(-math.inf) == "-inf"
    assert results._jsonable(np.float32(1.5)) == 1.5
    assert results._jsonable((1, np.int64(2))) == [1, 2]
    assert results._jsonable([math.nan, 2.0]) == [None, 2.0]
    assert results._jsonable(object).startswith("<class")
    assert results._jsonable(True) is True and results._jsonable("s") == "s"
    assert results._jsonable(None) is None and results._jsonable(3) == 3


def test_rows_need_variant_status_and_metric(tmp_path):
    w = ResultsWriter(tmp_path, SUITE)
    for bad in ({"status": "ok", "metric": "m"}, {"variant": "v", "metric": "m"},
                {"variant": "v", "status": "ok"}, row(status="done")):
        with pytest.raises(ValueError, match="row for c: needs variant, status in"):
            w.add_case("c", [bad])
    assert not (tmp_path / RESULTS).exists() or (tmp_path / RESULTS).read_text() == ""


def test_rows_must_use_a_metric_defined_for_the_suite_with_its_unit(tmp_path):
    """The writer refuses a metric not in attnbench.metrics, one defined for another suite and
    a unit that disagrees, before anything is written; a matching unit is accepted."""
    w = ResultsWriter(tmp_path, SUITE)
    with pytest.raises(ValueError, match="metric 'm' is not defined in attnbench.metrics; "
                                         "known: .*'final_val_loss'"):
        w.add_case("c", [row(metric="m")])
    with pytest.raises(ValueError, match=r"^metric 'passed' is defined for \['verify'\], not "
                                         "for the stability suite$"):
        w.add_case("c", [row(metric="passed")])
    with pytest.raises(ValueError, match="^metric 'final_val_loss': unit 's' disagrees with its "
                                         "definition 'nats'$"):
        w.add_case("c", [row(unit="s")])
    with pytest.raises(ValueError, match="not defined"):  # one bad row: no row is written
        w.add_case("c", [row(), row(metric="m")])
    assert not (tmp_path / RESULTS).exists() or (tmp_path / RESULTS).read_text() == ""
    w.add_case("c", [row(unit="nats"), row(metric="diverged", value=0)])
    assert list(load_results(tmp_path)["unit"]) == ["nats", "bool"]


def test_a_torn_last_line_is_dropped_and_repaired_on_resume(tmp_path):
    w = ResultsWriter(tmp_path, SUITE)
    w.add_case("c1", [row()], samples={"t": [1.0]})
    with open(tmp_path / RESULTS, "a") as fh:
        fh.write('{"case_id": "c2", "sta')
    with open(tmp_path / SAMPLES, "a") as fh:
        fh.write('{"case_id": "c2"')
    assert list(load_results(tmp_path)["case_id"]) == ["c1"]
    w = ResultsWriter(tmp_path, SUITE, resume=True)
    assert w.done == {"c1"}
    assert (tmp_path / RESULTS).read_text().endswith("}\n")
    assert (tmp_path / SAMPLES).read_text().endswith("}\n")
    w.add_case("c2", [row()])
    assert list(load_results(tmp_path)["case_id"]) == ["c1", "c2"]
    assert load_provenance(tmp_path)["resumed_from"] is not None


def test_a_bad_line_before_the_end_is_corruption_named_by_file_and_line(tmp_path):
    ResultsWriter(tmp_path, SUITE).add_case("c1", [row()])
    text = (tmp_path / RESULTS).read_text()
    (tmp_path / RESULTS).write_text("[1, 2]\n" + text)
    with pytest.raises(ResultsError, match=rf"{RESULTS}: line 1 is not a valid JSON record "
                                           r"\(not a JSON object\)"):
        load_results(tmp_path)
    (tmp_path / RESULTS).write_text(text + "nonsense\n")
    with pytest.raises(ResultsError, match="line 2 is not a valid JSON record"):
        load_results(tmp_path)


def test_used_directories_need_resume_and_force_clears_only_results(tmp_path):
    ResultsWriter(tmp_path, SUITE).add_case("c1", [row()])
    with pytest.raises(ResultsError, match="already holds results; pass --resume"):
        ResultsWriter(tmp_path, SUITE)
    with pytest.raises(ValueError, match="^--force and --resume exclude each other: --force "
                                         "discards the previous run, --resume continues it$"):
        check_restart_flags(tmp_path, resume=True, force=True)
    (tmp_path / "keep.txt").write_text("x")
    check_restart_flags(tmp_path, resume=True, force=False)
    assert (tmp_path / RESULTS).exists()
    check_restart_flags(tmp_path, resume=False, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    ResultsWriter(tmp_path, SUITE)  # an empty results file is no previous run
    ResultsWriter(tmp_path, SUITE)


def test_unwritable_and_missing_directories_are_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ResultsError, match=r"--out .*file/sub: directory is not writable"):
        ResultsWriter(blocker / "sub", SUITE)
    with pytest.raises(ResultsError, match=rf"not a results directory \(no {RESULTS}\)"):
        load_results(tmp_path)
    with pytest.raises(ResultsError, match=f"no {PROVENANCE}"):
        load_provenance(tmp_path)
    assert load_samples(tmp_path) == {}


def test_incompatible_tables_and_provenance_are_named(tmp_path):
    (tmp_path / RESULTS).write_text('{"case_id": "c"}\n')
    with pytest.raises(ResultsError, match="incompatible results, missing columns"):
        load_results(tmp_path)
    (tmp_path / RESULTS).write_text("")
    assert load_results(tmp_path).empty
    (tmp_path / PROVENANCE).write_text('{"schema": "other/0"}')
    with pytest.raises(ResultsError, match=f"schema 'other/0', expected '{SCHEMA}'"):
        load_provenance(tmp_path)
    (tmp_path / PROVENANCE).write_text("{")
    with pytest.raises(ResultsError, match="corrupted provenance record"):
        load_provenance(tmp_path)
    (tmp_path / RESULTS).write_text('{"suite": "s", "case_id": "c", "variant": "v", '
                                    '"status": "ok", "metric": "m", "value": 1}\n')
    with pytest.raises(ResultsError, match="corrupted provenance record"):
        ResultsWriter(tmp_path, SUITE, resume=True)


def test_variant_catalog_describes_every_registered_variant():
    catalog = results.variant_catalog()
    naive = catalog["naive"]
    assert set(naive) == {"kind", "doc", "module", "capabilities"}
    assert naive["kind"] == "attention" and naive["doc"] and naive["module"]
    assert naive["capabilities"]["causal"] is True
