"""Results directories: one tidy long-format table, raw samples and a provenance record.

Layout of a results directory (every suite: throughput, stability, verify):
    provenance.json  who/what/where/when: commit, versions, device, threads, timer, seeds, argv
    results.jsonl    one row per case x metric; ``load_results(dir)`` gives a DataFrame
    samples.jsonl    raw samples (timings, loss curves) keyed by case_id and metric

Rows are appended and flushed as each case finishes, one ``write`` per case, so an interrupted
run (Ctrl-C, kill) keeps every finished case; a torn last line is dropped on load and on
resume. ``case_id`` is a stable string naming a case, which is what ``--resume`` skips.

Row columns: suite, case_id, variant, status ("ok" | "error" | "skipped"), reason, metric,
value, unit, plus the case's own parameters (B, Hq, N, ... or block, lr, depth, ...).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from attnbench.errors import AttnbenchError, UsageError
from attnbench.provenance import collect_provenance, now_iso

SCHEMA = "attnbench-results/1"
RESULTS, SAMPLES, PROVENANCE = "results.jsonl", "samples.jsonl", "provenance.json"
STATUSES = ("ok", "error", "skipped")
REQUIRED_COLUMNS = ("suite", "case_id", "variant", "status", "metric", "value")


class ResultsError(AttnbenchError, RuntimeError):
    """A results directory or file is missing, unwritable, corrupted or incompatible."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list | tuple):  # samples: keep a list a list, not its repr
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _jsonable(value.item())
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def _append_lines(path: Path, records: Iterable[dict[str, Any]]) -> None:
    text = "".join(json.dumps({k: _jsonable(v) for k, v in r.items()}, sort_keys=True) + "\n"
                   for r in records)
    if not text:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _read_lines(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Parse a JSON Lines file. A torn *last* line (an interrupted write) is dropped; a bad
    line anywhere else means the file is corrupted and raises, naming file and line."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            torn = number == len(lines) and not line.endswith("\n")
            if not torn:
                raise ResultsError(
                    f"{path}: line {number} is not a valid JSON record ({exc})") from None
            if repair:  # cut the torn tail so appended rows start on a fresh line
                with open(path, "r+", encoding="utf-8") as fh:
                    fh.truncate(len("".join(lines[:-1]).encode("utf-8")))
            break
        records.append(record)
    return records


def check_restart_flags(out_dir: str | Path, *, resume: bool, force: bool) -> None:
    """``--force`` discards a previous run in ``out_dir``, ``--resume`` continues it; both at
    once is a usage error. Only the three result files are removed, never anything else."""
    if force and resume:
        raise UsageError("--force and --resume exclude each other: --force discards the "
                         "previous run, --resume continues it")
    if force:
        for name in (RESULTS, SAMPLES, PROVENANCE):
            (Path(out_dir) / name).unlink(missing_ok=True)


class ResultsWriter:
    """Appends rows and samples to a results directory and keeps its provenance current."""

    def __init__(self, out_dir: str | Path, suite: str, *, resume: bool = False,
                 argv: list[str] | None = None, seeds: dict[str, Any] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        self.dir, self.suite = Path(out_dir), suite
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise ResultsError(
                f"--out {self.dir}: directory is not writable ({exc.strerror})") from None
        existing = self.dir / RESULTS
        if existing.exists() and existing.stat().st_size and not resume:
            raise ResultsError(f"--out {self.dir}: already holds results; pass --resume to "
                               "continue that run or choose another directory")
        self.done = {r["case_id"] for r in _read_lines(existing, repair=True)}
        _read_lines(self.dir / SAMPLES, repair=True)
        previous = self._read_provenance() if resume else {}
        self.provenance = collect_provenance(argv=argv, seeds=seeds or {}, extra=extra or {})
        self.provenance.update(schema=SCHEMA, suite=suite, end_time=None,
                               resumed_from=previous.get("start_time"))
        self._write_provenance()

    def _read_provenance(self) -> dict[str, Any]:
        path = self.dir / PROVENANCE
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ResultsError(f"{path}: corrupted provenance record ({exc})") from None

    def _write_provenance(self) -> None:
        tmp = self.dir / (PROVENANCE + ".tmp")
        tmp.write_text(json.dumps(self.provenance, indent=2, sort_keys=True, default=str) + "\n")
        tmp.replace(self.dir / PROVENANCE)  # atomic: never a half-written record

    def is_done(self, case_id: str) -> bool:
        return case_id in self.done

    def add_case(self, case_id: str, rows: list[dict[str, Any]],
                 samples: dict[str, list[float]] | None = None) -> None:
        """Record one finished case: its metric rows and raw samples, samples first, so a row
        present always has its samples. Every row's metric must be defined in
        ``attnbench.metrics`` (its unit is filled in from there)."""
        from attnbench.metrics import checked_row

        for row in rows:
            missing = [c for c in ("variant", "status", "metric") if c not in row]
            if missing or row["status"] not in STATUSES:
                raise ValueError(f"row for {case_id}: needs variant, status in {STATUSES}, "
                                 f"metric; got {row}")
        rows = [checked_row(self.suite, row) for row in rows]
        if samples:
            _append_lines(self.dir / SAMPLES, ({"case_id": case_id, "metric": m, "samples": s}
                                               for m, s in samples.items()))
        _append_lines(self.dir / RESULTS, ({"suite": self.suite, "case_id": case_id,
                                            "reason": "", "value": None, "unit": "", **row}
                                           for row in rows))
        self.done.add(case_id)

    def drop_cases(self, prefixes: tuple[str, ...]) -> None:
        """Remove the rows of every case whose id starts with one of ``prefixes`` (derived
        cases a suite recomputes on each run, e.g. after a --resume with newer code)."""
        path = self.dir / RESULTS
        kept = [r for r in _read_lines(path) if not str(r.get("case_id")).startswith(prefixes)]
        tmp = self.dir / (RESULTS + ".tmp")
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept),
                       encoding="utf-8")
        tmp.replace(path)  # atomic: never a half-written table
        self.done = {r["case_id"] for r in kept}

    def finish(self, **summary: Any) -> None:
        self.provenance.update(end_time=now_iso(), **summary)
        self._write_provenance()


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """The tidy table of one results directory, with a clear error naming any bad file."""
    path = Path(results_dir)
    if not (path / RESULTS).exists():
        raise ResultsError(f"{path}: not a results directory (no {RESULTS})")
    records = _read_lines(path / RESULTS)
    frame = pd.DataFrame.from_records(records)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if records and missing:
        raise ResultsError(f"{path / RESULTS}: incompatible results, missing columns {missing}")
    return frame


def load_samples(results_dir: str | Path) -> dict[tuple[str, str], list[float]]:
    """Raw samples keyed by (case_id, metric)."""
    path = Path(results_dir) / SAMPLES
    return {(r["case_id"], r["metric"]): r["samples"] for r in _read_lines(path)}


def load_provenance(results_dir: str | Path) -> dict[str, Any]:
    path = Path(results_dir) / PROVENANCE
    if not path.exists():
        raise ResultsError(f"{Path(results_dir)}: no {PROVENANCE}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ResultsError(f"{path}: corrupted provenance record ({exc})") from None
    if record.get("schema") != SCHEMA:
        raise ResultsError(f"{path}: schema {record.get('schema')!r}, expected {SCHEMA!r}")
    return record


def variant_catalog() -> dict[str, dict[str, Any]]:
    """Every registered variant's kind, summary and capabilities, for provenance records (the
    report draws its capability matrix from results files alone)."""
    from attnbench.variants.registry import list_variants

    return {v.name: {"kind": v.kind, "doc": v.doc, "module": v.module,
                     "capabilities": v.caps.as_dict()} for v in list_variants()}
