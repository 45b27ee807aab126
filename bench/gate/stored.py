"""The gate on two stored results directories (``--baseline DIR --results DIR``): hard gates only.

Correctness compares the verification rows (metric ``passed``, ``error_ratio`` with its
``bound``), the throughput benchmark's ``sampled_error_ratio`` rows (judged against the same
C: 2 for outputs, 3 for gradients) and ``error`` rows (a variant that newly raises). Memory
compares ``mem_peak_bytes`` only when both runs used the same torch and
triton (the peak is a property of the libraries as much as of our code); otherwise it says
how to re-measure both sides in one job. Timing is never compared across jobs: two runs on a
shared machine differ by more than the regressions worth catching, so it needs the same-job
interleaved samples of ``attnbench gate --base REV``. Memory-exponent fits are compared as a
structural check.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from attnbench.case_ids import parse_case_id, verify_case_id
from attnbench.gate.verdicts import (
    GateCheck,
    GateFinding,
    correctness_finding,
    memory_finding,
    structural_finding,
)
from attnbench.results import ResultsError, load_provenance, load_results
from attnbench.verify.tolerance import C_GRAD, C_OUTPUT

VERSIONED = ("torch", "triton")  # libraries whose version changes a peak
RATIOS = ("error_ratio", "sampled_error_ratio")  # verify's and the benchmark's (metrics.py)
EXPONENT_SLACK = 0.25  # a scaling exponent may grow this much before the check warns


def _load(path: str | Path, flag: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    where = Path(path)
    if not where.is_dir():
        raise ResultsError(f"{flag} {where}: no such results directory")
    frame, provenance = load_results(where), load_provenance(where)
    if frame.empty:
        raise ResultsError(f"{flag} {where}: the results directory holds no rows")
    return _verify_ids(frame), provenance


def _verify_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """Verify rows written before the shared case-id grammar (``attnbench.case_ids``) named
    cases ``variant[attention]:check:dtype:case``; such an id is rebuilt from the row's fields,
    so that a baseline recorded then still meets the same checks of a newer run."""
    if not {"check", "case", "direction"} <= set(frame.columns):
        return frame
    old = (frame["suite"] == "verify") & ~frame["case_id"].astype(str).map(_parses)
    if not old.any():
        return frame
    frame = frame.copy()
    frame.loc[old, "case_id"] = [
        verify_case_id(r["check"], r["variant"], r["case"], r["direction"],
                       r["attention"] if isinstance(r.get("attention"), str) else "")
        for _, r in frame[old].iterrows()]
    return frame


def _parses(key: str) -> bool:
    try:
        parse_case_id(key)
    except ValueError:
        return False
    return True


def _key_columns(frame: pd.DataFrame) -> list[str]:
    return ["case_id", "variant"] + [c for c in ("check", "direction") if c in frame.columns]


def _default_bound(row: pd.Series) -> float:
    """The rule's C for rows without a bound column: 2 for outputs, 3 for gradients."""
    forward = row.get("direction", "fwd") == "fwd" if "direction" in row else \
        row.get("mode", "fwd") == "fwd"
    return C_OUTPUT if forward else C_GRAD


def checks(frame: pd.DataFrame) -> dict[tuple, GateCheck]:
    """One correctness outcome per key from its rows (rows of other metrics are ignored)."""
    keys = _key_columns(frame)
    out: dict[tuple, GateCheck] = {}
    relevant = frame[frame.metric.isin(["passed", *RATIOS]) | (frame.status == "error")]
    for key, rows in relevant.groupby(keys, dropna=False, sort=True):
        errors = rows[rows.status == "error"]
        if len(errors):
            out[key] = GateCheck(False, reason=f"raised: {errors.iloc[0].get('reason', '')}")
            continue
        ok = rows[rows.status == "ok"]
        if ok.empty:
            continue  # skipped: not a check on this side
        passed, ratio, bound = True, None, None
        for _, row in ok.iterrows():
            if row.metric == "passed":
                passed = passed and bool(row.value)
            elif row.value is not None and not pd.isna(row.value):
                ratio = float(row.value)
                raw = row.get("bound")
                bound = float(raw) if raw is not None and not pd.isna(raw) else \
                    _default_bound(row)
                passed = passed and ratio <= bound
        reason = "" if passed else f"error ratio {ratio} above bound {bound}" if ratio else \
            "check failed"
        out[key] = GateCheck(passed, ratio, bound, reason)
    return out


def _values(frame: pd.DataFrame, metric: str, keys: list[str]) -> dict[tuple, float]:
    rows = frame[(frame.metric == metric) & (frame.status == "ok")]
    return {tuple(k if isinstance(k, tuple) else (k,)): float(r.value.iloc[0])
            for k, r in rows.groupby(keys, dropna=False, sort=True)}


def compare_results(baseline: str | Path, results: str | Path, *, memory_rel: float,
                    memory_abs: float, structural_as_error: bool = False
                    ) -> tuple[list[GateFinding], list[str], dict[str, Any], dict[str, Any]]:
    """Findings and notes for two results directories, plus what each side was."""
    base, prov_b = _load(baseline, "--baseline")
    head, prov_h = _load(results, "--results")
    if not set(base.suite) & set(head.suite):
        raise ResultsError(f"--baseline holds suite(s) {sorted(set(base.suite))} but --results "
                           f"holds {sorted(set(head.suite))}: nothing to compare")
    findings, notes = [], []
    base_checks, head_checks = checks(base), checks(head)
    for key, result in head_checks.items():
        findings.append(correctness_finding(key[0], key[1], base_checks.get(key), result))
    missing = sorted(set(base_checks) - set(head_checks))
    if missing:
        notes.append(f"{len(missing)} check(s) of the baseline are absent from the results, "
                     f"e.g. {missing[0][0]} ({missing[0][1]})")

    versions = {side: {p: (prov.get("packages") or {}).get(p) for p in VERSIONED}
                for side, prov in (("base", prov_b), ("head", prov_h))}
    keys = ["case_id", "variant"]
    if versions["base"] != versions["head"]:
        notes.append(f"memory not compared: library versions differ (base {versions['base']}, "
                     f"head {versions['head']}); re-measure both sides in one job: "
                     f"attnbench gate --base {prov_b.get('git_commit') or 'REV'} "
                     f"--head {prov_h.get('git_commit') or 'REV'}")
    else:
        peaks_b, peaks_h = _values(base, "mem_peak_bytes", keys), _values(head, "mem_peak_bytes",
                                                                          keys)
        for key in sorted(set(peaks_b) & set(peaks_h)):
            findings.append(memory_finding(key[0], key[1], peaks_b[key], peaks_h[key],
                                           rel=memory_rel, abs_bytes=memory_abs))
    exps_b, exps_h = _values(base, "mem_exponent", keys), _values(head, "mem_exponent", keys)
    for key in sorted(set(exps_b) & set(exps_h)):
        if math.isfinite(exps_b[key]) and math.isfinite(exps_h[key]):
            grew = exps_h[key] - exps_b[key]
            findings.append(structural_finding(
                key[0], key[1], grew <= EXPONENT_SLACK,
                f"memory exponent {exps_b[key]:.2f} -> {exps_h[key]:.2f}", ratio=exps_h[key],
                as_error=structural_as_error))
    if {"time_median_s"} & (set(base.metric) | set(head.metric)):
        notes.append("timing not compared: the two directories come from different jobs; "
                     "a timing verdict needs same-job interleaved samples (attnbench gate "
                     "--base REV)")

    def side(prov: dict[str, Any], path: str | Path) -> dict[str, Any]:
        return {"path": str(path), "commit": prov.get("git_commit"),
                "description": f"{path} ({(prov.get('git_commit') or '?')[:10]})",
                "packages": prov.get("packages"), "suite": prov.get("suite")}

    return findings, notes, side(prov_b, baseline), side(prov_h, results)
