"""Reading results directories into one labelled table, with errors that name the bad file.

The report reads files only: ``attnbench.results`` does the file I/O, nothing here imports a
variant or runs a kernel, so a report can be drawn on any machine from copied results.

Several directories may come from different runs (two commits, CPU and GPU, two machines).
Each gets a run label from its provenance ("3f2a1c9 @ NVIDIA H200"), and every table and figure
that mixes runs shows that label, so numbers from different environments are never silently
pooled. Directories of one ``nox -s bench`` run (throughput, stability, verify) share a label.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from attnbench.results import (
    RESULTS,
    SAMPLES,
    STATUSES,
    ResultsError,
    load_provenance,
    load_results,
    load_samples,
)

# Columns that describe a row rather than a case parameter, in the order the CSV shows them.
LEADING = ("run", "results_dir", "suite", "case_id", "variant", "status", "metric", "value",
           "unit", "reason")
GATE_FIELDS = ("case", "variant", "kind", "verdict", "ratio", "ci_low", "ci_high", "p_value",
               "detail", "fails_gate")


@dataclass
class Run:
    """One results directory."""

    path: Path
    provenance: dict[str, Any]
    rows: pd.DataFrame
    samples: dict[tuple[str, str], list[float]]
    label: str = ""

    @property
    def suite(self) -> str:
        return str(self.provenance.get("suite", "?"))

    @property
    def device(self) -> str:
        p = self.provenance
        return str(p.get("gpu_name")) if p.get("cuda_available") and p.get("gpu_name") else "cpu"

    @property
    def commit(self) -> str:
        commit = self.provenance.get("git_commit")
        short = str(commit)[:7] if commit else "no-commit"
        return short + ("+dirty" if self.provenance.get("git_dirty") else "")


@dataclass
class Bundle:
    """Everything the report shows: runs, their combined tidy table, the gate verdicts."""

    runs: list[Run]
    table: pd.DataFrame
    baseline: str = "sdpa"
    gate: list[dict[str, Any]] | None = None
    gate_path: str = ""
    gate_meta: dict[str, Any] = field(default_factory=dict)  # verdict, base, head, notes
    _samples: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return sorted({r.label for r in self.runs})

    @property
    def several_runs(self) -> bool:
        return len(self.labels) > 1

    def rows(self, suite: str, status: str | None = "ok") -> pd.DataFrame:
        """One suite's rows (only those with ``status`` unless None), without the columns that
        belong to other suites (all empty here)."""
        frame = self.table[self.table["suite"] == suite]
        if status is not None:
            frame = frame[frame["status"] == status]
        return frame.dropna(axis=1, how="all")

    def colors(self) -> dict[str, str]:
        """One colour per variant or block name, the same in every figure. Names with measured
        rows get the first (most distinct) colours; blocks and attention variants never share
        a figure, so each set starts at colour one."""
        from attnbench.reports.figures import COLORS

        catalog = self.catalog()
        rows = self.table[~self.table["case_id"].astype(str).str.startswith("finding:")]
        ok = rows[rows["status"] == "ok"]
        measured = set(ok["variant"].dropna().astype(str)) | set(
            ok["attention"].dropna().astype(str) if "attention" in ok else [])
        names = (set(rows["variant"].dropna().astype(str)) | set(catalog)) - {"", "matmul_peak"}
        blocks = {n for n in names
                  if any(e.get("kind") == "block" for e in catalog.get(n, {}).values())}
        colors: dict[str, str] = {}
        for group in (names - blocks, blocks):
            order = sorted(group, key=lambda n: (n not in measured, n))
            colors.update({n: COLORS[i % len(COLORS)] for i, n in enumerate(order)})
        return colors

    def samples(self, run: str, case_id: str, metric: str) -> list[float] | None:
        return self._samples.get((run, case_id, metric))

    def catalog(self) -> dict[str, dict[tuple[str, ...], dict[str, Any]]]:
        """Variant name -> {run labels recording this entry: catalog entry}; one entry when
        every run agrees, several when runs registered the variant differently."""
        found: dict[str, dict[str, tuple[list[str], dict[str, Any]]]] = {}
        for run in sorted(self.runs, key=lambda r: (r.label, str(r.path))):
            for name, entry in (run.provenance.get("variants") or {}).items():
                key = json.dumps(entry, sort_keys=True, default=str)
                labels, _ = found.setdefault(name, {}).setdefault(key, ([], entry))
                if run.label not in labels:
                    labels.append(run.label)
        return {name: {tuple(labels): entry for labels, entry in versions.values()}
                for name, versions in sorted(found.items())}


# --- loading -------------------------------------------------------------------------------------

def expand_dirs(paths: list[str | Path]) -> list[Path]:
    """Results directories named directly, or every results directory one level inside a
    folder (``results/latest`` holding throughput/, stability/, verify/)."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if (path / RESULTS).exists():
            found.append(path)
            continue
        inner = sorted(p for p in path.iterdir() if (p / RESULTS).exists()) if path.is_dir() else []
        if not inner:
            why = ("does not exist" if not path.exists()
                   else f"holds no {RESULTS}, nor do its subfolders")
            raise ResultsError(f"{path}: not a results directory ({why})")
        found.extend(inner)
    if len({p.resolve() for p in found}) != len(found):
        raise ResultsError(f"results directories given twice: {[str(p) for p in found]}")
    return found


def _numeric(value: Any, path: Path, number: int) -> float:
    """A JSON number, null (NaN) or "inf"/"-inf" as a float; anything else names the file."""
    if value is None:
        return math.nan
    if value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        where = f"row {number}" if number else "a sample"
        raise ResultsError(f"{path}: {where} has a non-numeric value {value!r}")
    return float(value)


def load_run(path: Path) -> Run:
    """One results directory, checked enough that the report never crashes half-way."""
    provenance = load_provenance(path)
    rows = load_results(path)
    if rows.empty:
        rows = pd.DataFrame(columns=["suite", "case_id", "variant", "status", "metric", "value"])
    for column in ("suite", "case_id", "variant", "status", "metric"):
        missing = rows.index[rows[column].isna()]
        if len(missing):
            raise ResultsError(f"{path / RESULTS}: row {missing[0] + 1} lacks {column!r}")
    bad = sorted(set(rows["status"]) - set(STATUSES))
    if bad:
        raise ResultsError(f"{path / RESULTS}: unknown status {bad}; expected one of {STATUSES}")
    suites = sorted(set(rows["suite"]) - {provenance.get("suite")})
    if suites:
        raise ResultsError(f"{path / RESULTS}: rows of suite {suites} but provenance.json says "
                           f"{provenance.get('suite')!r}; directories must not be mixed")
    rows["value"] = [_numeric(v, path / RESULTS, i) for i, v in enumerate(rows["value"], start=1)]
    restore_infinities(rows)
    try:
        samples = {key: sample_values(values, path) for key, values in load_samples(path).items()}
    except (KeyError, TypeError) as exc:
        raise ResultsError(f"{path / SAMPLES}: record without case_id/metric/samples "
                           f"({exc})") from None
    return Run(path=path, provenance=provenance, rows=rows, samples=samples)


def sample_values(values: Any, path: Path) -> list[float]:
    """A list of numbers; also accepts the JSON-in-a-string form early writers produced."""
    if isinstance(values, str):
        try:
            values = json.loads(values)
        except ValueError:
            values = None
    if not isinstance(values, list):
        raise ResultsError(f"{path / SAMPLES}: samples must be a list of numbers, got "
                           f"{str(values)[:60]!r}")
    return [_numeric(v, path / SAMPLES, 0) for v in values]


def restore_infinities(rows: pd.DataFrame) -> None:
    """The writer stores ±inf as the strings "inf"/"-inf" (JSON has no infinity); a numeric
    parameter column (a check's ``bound``) holding them becomes numeric again."""
    for column in rows.columns:
        if column in LEADING or rows[column].dtype != object:
            continue
        values = rows[column].dropna()
        strings = {v for v in values if isinstance(v, str)}
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if strings and strings <= {"inf", "-inf"} and len(numbers) + sum(
                isinstance(v, str) for v in values) == len(values):
            rows[column] = [float(v) if isinstance(v, str) else v for v in rows[column]]


def assign_labels(runs: list[Run]) -> None:
    """"commit @ device", then the host when two machines share both, then the start time
    when one environment ran the same suite twice."""
    def base(r: Run) -> str:
        return f"{r.commit} @ {r.device}"

    hosts: dict[str, set[str]] = {}
    for r in runs:
        hosts.setdefault(base(r), set()).add(str(r.provenance.get("hostname", "?")))
    for r in runs:
        host = f" ({r.provenance.get('hostname', '?')})" if len(hosts[base(r)]) > 1 else ""
        r.label = base(r) + host
    seen: dict[tuple[str, str], int] = {}
    for r in runs:
        seen[(r.label, r.suite)] = seen.get((r.label, r.suite), 0) + 1
    for r in runs:
        if seen[(r.label, r.suite)] > 1:
            r.label += f" {r.provenance.get('start_time') or r.path.name}"


def combine(runs: list[Run]) -> pd.DataFrame:
    """The combined tidy table, sorted, leading columns first: the CSV the report ships."""
    frames = [r.rows.assign(run=r.label, results_dir=str(r.path)) for r in runs]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=list(LEADING))
    table = pd.concat(frames, ignore_index=True, sort=False)
    for column in LEADING:
        if column not in table.columns:
            table[column] = ""
    table["reason"] = table["reason"].fillna("")
    table["unit"] = table["unit"].fillna("")
    rest = sorted(c for c in table.columns if c not in LEADING)
    table = table[list(LEADING) + rest]
    order = ["run", "suite", "case_id", "variant", "metric", "results_dir"]
    table = table.sort_values(order, kind="stable", key=lambda s: s.astype(str))
    return table.reset_index(drop=True)


def load_gate(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Findings of ``attnbench gate`` and the file's other scalar fields: its gate.json (an
    object with a "findings" list, schema attnbench-gate/1) or a bare JSON list of findings."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ResultsError(f"--gate {path}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise ResultsError(f"--gate {path}: not valid JSON ({exc})") from None
    findings = data.get("findings") if isinstance(data, dict) else data
    if not isinstance(findings, list) or not all(isinstance(f, dict) for f in findings):
        raise ResultsError(f"--gate {path}: expected a list of findings {list(GATE_FIELDS[:8])}"
                           f" (or {{\"findings\": [...]}}), got {type(findings).__name__}")
    for number, finding in enumerate(findings, start=1):
        if "case" not in finding or "verdict" not in finding:
            raise ResultsError(f"--gate {path}: finding {number} lacks 'case' or 'verdict': "
                               f"{finding}")
    meta = {k: v for k, v in data.items() if k in ("verdict", "exit_code", "base", "head",
                                                       "notes", "mode")} \
        if isinstance(data, dict) else {}
    return findings, meta


def load_bundle(paths: list[str | Path], *, baseline: str = "sdpa",
                gate: str | Path | None = None) -> Bundle:
    runs = [load_run(p) for p in expand_dirs(paths)]
    assign_labels(runs)
    samples = {(r.label, case_id, metric): values
               for r in runs for (case_id, metric), values in r.samples.items()}
    findings, meta = load_gate(gate) if gate else (None, {})
    return Bundle(runs=sorted(runs, key=lambda r: (r.label, r.suite, str(r.path))),
                  table=combine(runs), baseline=baseline, gate=findings,
                  gate_path=str(gate or ""), gate_meta=meta, _samples=samples)


# --- shaping helpers the sections share --------------------------------------------------------

def wide(frame: pd.DataFrame,
         keys: tuple[str, ...] = ("run", "case_id", "variant")) -> pd.DataFrame:
    """One row per case: case parameters plus one column per metric (the tidy table pivoted).

    Parameters that only some metric rows carry (``bound`` on error_ratio rows) are taken from
    whichever row has them."""
    if frame.empty:
        return pd.DataFrame(columns=list(keys))
    keys = tuple(k for k in keys if k in frame.columns)
    drop = ["metric", "value", "unit", "reason", "status", "suite", "results_dir"]
    params = frame.drop(columns=[c for c in drop if c in frame.columns])
    params = params.groupby(list(keys), dropna=False, sort=True).first()
    values = frame.groupby([*keys, "metric"], dropna=False, sort=True)["value"].first()
    values = values.unstack("metric")
    values = values.loc[:, [c for c in values.columns if c not in params.columns]]
    out = params.join(values, how="outer").reset_index()
    return out.dropna(axis=1, how="all")


def ensure(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """``frame`` with every named column present (missing ones all NaN): sections ask for the
    metrics they draw, and a suite that measured none of one must not raise a KeyError."""
    missing = [c for c in columns if c not in frame.columns]
    return frame.assign(**{c: math.nan for c in missing}) if missing else frame


def sort_key(value: Any) -> tuple[int, Any]:
    """Orders mixed cells (numbers, strings, missing) the same way every time."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, "")
    if isinstance(value, bool | int | float):
        return (0, float(value))
    return (1, str(value))
