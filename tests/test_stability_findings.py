"""Findings and per-group summaries on synthetic results tables: each criterion says yes, no,
or "not measured" for the right reasons."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from attnbench.stability.findings import (
    depth_exponent,
    evaluate_findings,
    logit_finding,
    output_change_finding,
    summary_cases,
    train_runs,
    warmup_finding,
)

INIT = 4.5


def run_rows(block: str, lr: float, warmup: int, final: float, verdict: str, *,
             depth: int = 6, seed: int = 0, max_logit: float = 5.0) -> list[dict]:
    case = f"train:{block}:sdpa:L{depth}:lr{lr:g}:wu{warmup}:seed{seed}"
    cols = dict(case_id=case, variant=block, status="ok", block=block, attention="sdpa",
                depth=depth, lr=lr, warmup=warmup, seed=seed, verdict=verdict)
    return [{**cols, "metric": m, "value": v} for m, v in (
        ("final_val_loss", final), ("init_loss", INIT), ("unigram_loss", 3.24),
        ("diverged", int(verdict != "healthy")), ("max_logit", max_logit))]


def frame_of(*runs: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([row for rows in runs for row in rows])


def warmup_table(post_warm_final: float, post_warm_verdict: str) -> pd.DataFrame:
    return frame_of(
        run_rows("post_ln", 1e-3, 0, 2.4, "healthy"),
        run_rows("post_ln", 1e-3, 100, 2.4, "healthy"),
        run_rows("pre_ln", 1e-3, 0, 2.5, "healthy"),
        run_rows("post_ln", 1e-2, 0, 3.25, "unigram_collapse"),
        run_rows("post_ln", 1e-2, 100, post_warm_final, post_warm_verdict),
        run_rows("pre_ln", 1e-2, 0, 2.3, "healthy"))


def test_warmup_finding_reproduced() -> None:
    finding = warmup_finding(train_runs(warmup_table(2.2, "healthy")))
    assert finding.reproduced is True
    assert "reproduced at lr 0.01" in finding.evidence
    assert "post_ln/wu0 3.25 unigram_collapse" in finding.evidence


def test_warmup_finding_not_reproduced_when_warmup_does_not_rescue() -> None:
    finding = warmup_finding(train_runs(warmup_table(3.25, "unigram_collapse")))
    assert finding.reproduced is False and "no lr at which" in finding.evidence


def test_warmup_finding_not_measured_without_pre_ln() -> None:
    table = warmup_table(2.2, "healthy")
    finding = warmup_finding(train_runs(table[table["block"] != "pre_ln"]))
    assert finding.reproduced is None and finding.rows()[0]["status"] == "skipped"


def init_table(post: list[float], pre: list[float], depths=(2, 4, 6, 8, 12)) -> pd.DataFrame:
    rows = []
    for block, values in (("post_ln", post), ("pre_ln", pre)):
        for depth, value in zip(depths, values, strict=True):
            rows.append(dict(case_id=f"init:{block}:sdpa:L{depth}:seed0", variant=block,
                             status="ok", block=block, attention="sdpa", depth=depth, seed=0,
                             metric="output_change", value=value))
    return pd.DataFrame(rows)


def test_depth_exponent() -> None:
    assert depth_exponent([2, 4, 8], [3, 6, 12]) == pytest.approx(1.0)
    assert depth_exponent([2, 4, 8], [5, 5, 5]) == pytest.approx(0.0)


def test_output_change_finding() -> None:
    from attnbench.stability.findings import init_runs

    linear, logarithmic = [d * 1e-4 for d in (2, 4, 6, 8, 12)], [
        math.log(d) * 1e-4 for d in (2, 4, 6, 8, 12)]
    assert output_change_finding(init_runs(init_table(linear, logarithmic))).reproduced is True
    flat = [1e-4] * 5
    assert output_change_finding(init_runs(init_table(flat, flat))).reproduced is False
    few = init_table(linear[:2], logarithmic[:2], depths=(2, 4))
    assert output_change_finding(init_runs(few)).reproduced is None


def test_logit_finding() -> None:
    bounded = frame_of(run_rows("pre_ln", 1e-3, 0, 2.5, "healthy", max_logit=2.0),
                       run_rows("pre_ln", 1e-1, 0, 3.2, "unigram_collapse", max_logit=3e4),
                       run_rows("qk_norm", 1e-3, 0, 2.5, "healthy", max_logit=3.0),
                       run_rows("qk_norm", 1e-1, 0, 2.7, "healthy", max_logit=30.0))
    finding = logit_finding(train_runs(bounded))
    assert finding.reproduced is True and "pre_ln 3e+04, qk_norm 30" in finding.evidence
    unbounded = bounded.copy()
    unbounded.loc[(unbounded["block"] == "qk_norm") & (unbounded["metric"] == "max_logit"),
                  "value"] = 5e3
    assert logit_finding(train_runs(unbounded)).reproduced is False


def test_summaries_per_group() -> None:
    cases = dict(summary_cases(train_runs(warmup_table(2.2, "healthy"))))
    sens = cases["lrsens:post_ln:sdpa:L6:wu0"][0]
    assert sens["metric"] == "lr_sensitivity"
    assert sens["value"] == pytest.approx(((2.4 - 2.4) + (3.25 - 2.4)) / 2)
    low = cases["lowdiv:post_ln:sdpa:L6:wu0"][0]
    assert low["value"] == 1e-2 and low["depth"] == 6 and low["warmup"] == 0
    assert cases["lowdiv:pre_ln:sdpa:L6:wu0"][0]["value"] is None


def test_error_rows_and_empty_tables_are_tolerated() -> None:
    assert all(f.reproduced is None for f in evaluate_findings(pd.DataFrame()))
    table = warmup_table(2.2, "healthy")
    errors = pd.DataFrame([dict(case_id="train:x", variant="x", status="error", metric="run",
                                reason="boom")])
    assert evaluate_findings(pd.concat([table, errors]))[0].reproduced is True
