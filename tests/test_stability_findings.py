"""Findings and per-group summaries on synthetic results tables: each criterion is decided per
seed and over seeds (reproduced / not reproduced / inconclusive), or "not measured", for the
right reasons, with the regime in its text."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from attnbench.stability.findings import (
    depth_exponent,
    evaluate_findings,
    init_runs,
    last_ffn_finding,
    logit_finding,
    output_change_finding,
    summary_cases,
    train_runs,
    warmup_finding,
)

INIT = 4.5
SEEDS = (0, 1, 2)


def run_rows(block: str, lr: float, warmup: int, final: float, verdict: str, *,
             depth: int = 6, seed: int = 0, max_logit: float = 5.0, **regime) -> list[dict]:
    """One run's rows; ``regime`` adds beta2/init/steps columns (absent: the old format)."""
    case = f"train:{block}:sdpa:L{depth}:lr{lr:g}:wu{warmup}:seed{seed}:{regime}"
    cols = dict(case_id=case, variant=block, status="ok", block=block, attention="sdpa",
                depth=depth, lr=lr, warmup=warmup, seed=seed, verdict=verdict, **regime)
    return [{**cols, "metric": m, "value": v} for m, v in (
        ("final_val_loss", final), ("init_loss", INIT), ("unigram_loss", 3.24),
        ("diverged", int(verdict != "healthy")), ("max_logit", max_logit))]


def frame_of(*runs: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([row for rows in runs for row in rows])


def warmup_table(rescued: tuple[bool, ...] = (True, True, True), **regime) -> pd.DataFrame:
    """Post-LN collapses at lr 1e-2 without warm-up in every seed; warm-up rescues the seeds
    marked in ``rescued``; Pre-LN trains; everything trains at lr 1e-3."""
    runs = []
    for seed, ok in zip(SEEDS, rescued, strict=False):
        runs += [run_rows("post_ln", 1e-3, 0, 2.4, "healthy", seed=seed, **regime),
                 run_rows("post_ln", 1e-3, 100, 2.4, "healthy", seed=seed, **regime),
                 run_rows("pre_ln", 1e-3, 0, 2.5, "healthy", seed=seed, **regime),
                 run_rows("post_ln", 1e-2, 0, 3.25, "unigram_collapse", seed=seed, **regime),
                 run_rows("post_ln", 1e-2, 100, 2.2 if ok else 3.25,
                          "healthy" if ok else "unigram_collapse", seed=seed, **regime),
                 run_rows("pre_ln", 1e-2, 0, 2.3, "healthy", seed=seed, **regime)]
    return frame_of(*runs)


def test_warmup_finding_reproduced_with_its_regime() -> None:
    finding = warmup_finding(train_runs(warmup_table(beta2=0.999, init="scaled", steps=300)))
    assert finding.verdict == "reproduced" and finding.reproduced is True
    assert ("reproduced at depth 6, lr 0.01, beta2 0.999, warm-up 100 (33 %), 300 steps, "
            "init scaled: 3/3 seeds agreeing") in finding.evidence
    assert "post_ln/wu0 3.25 mean unigram_collapse x3" in finding.evidence
    assert "lr 0.001" in finding.evidence and "0/3 (not reproduced)" in finding.evidence


def test_warmup_finding_old_results_get_the_default_regime() -> None:
    finding = warmup_finding(train_runs(warmup_table()))
    assert finding.verdict == "reproduced" and "beta2 0.95" in finding.evidence


def test_warmup_finding_not_reproduced_when_warmup_rescues_no_seed() -> None:
    finding = warmup_finding(train_runs(warmup_table((False, False, False))))
    assert finding.verdict == "not reproduced" and finding.reproduced is False


def test_warmup_finding_inconclusive_when_seeds_disagree_or_are_too_few() -> None:
    mixed = warmup_finding(train_runs(warmup_table((True, False, False))))
    assert mixed.verdict == "inconclusive" and mixed.reproduced is None
    assert "1/3 seeds agreeing" in mixed.evidence
    assert mixed.rows()[0]["status"] == "ok" and mixed.rows()[0]["verdict"] == "inconclusive"
    one_seed = warmup_finding(train_runs(warmup_table((True,))))
    assert one_seed.verdict == "inconclusive" and "1/1 seeds" in one_seed.evidence


def test_warmup_finding_not_measured_without_pre_ln() -> None:
    table = warmup_table()
    finding = warmup_finding(train_runs(table[table["block"] != "pre_ln"]))
    assert finding.verdict == "not measured" and finding.rows()[0]["status"] == "skipped"


def init_table(values: dict[str, list[float]], metric: str = "output_change",
               depths=(2, 4, 6, 8, 12), seeds=SEEDS, init: str | None = None) -> pd.DataFrame:
    rows = []
    for block, by_depth in values.items():
        for seed in seeds:
            for depth, value in zip(depths, by_depth, strict=True):
                extra = {} if init is None else {"init": init}
                rows.append(dict(case_id=f"init:{block}:L{depth}:{init}:seed{seed}",
                                 variant=block, status="ok", block=block, attention="sdpa",
                                 depth=depth, seed=seed, metric=metric, value=value, **extra))
    return pd.DataFrame(rows)


def test_depth_exponent() -> None:
    assert depth_exponent([2, 4, 8], [3, 6, 12]) == pytest.approx(1.0)
    assert depth_exponent([2, 4, 8], [5, 5, 5]) == pytest.approx(0.0)


DEPTHS = (2, 4, 6, 8, 12)
LINEAR = [d * 1e-4 for d in DEPTHS]
LOGARITHMIC = [math.log(2 * d) * 1e-4 for d in DEPTHS]
FLAT = [1e-4] * 5


def test_output_change_finding() -> None:
    finding = output_change_finding(init_runs(init_table({"post_ln": LINEAR,
                                                          "pre_ln": LOGARITHMIC})))
    assert finding.verdict == "reproduced" and "3/3 seeds agreeing" in finding.evidence
    flat = init_table({"post_ln": FLAT, "pre_ln": FLAT})
    assert output_change_finding(init_runs(flat)).verdict == "not reproduced"
    few = init_table({"post_ln": LINEAR[:2], "pre_ln": LOGARITHMIC[:2]}, depths=(2, 4))
    assert output_change_finding(init_runs(few)).verdict == "not measured"
    one_seed = init_table({"post_ln": LINEAR, "pre_ln": LOGARITHMIC}, seeds=(0,))
    assert output_change_finding(init_runs(one_seed)).verdict == "inconclusive"


def test_init_findings_are_decided_under_the_papers_init() -> None:
    both = pd.concat([
        init_table({"post_ln": LINEAR, "pre_ln": LINEAR}, init="scaled"),
        init_table({"post_ln": LINEAR, "pre_ln": LOGARITHMIC}, init="unscaled")])
    finding = output_change_finding(init_runs(both))
    assert finding.verdict == "reproduced"
    assert finding.evidence.startswith("decided under init unscaled (the papers' setting)")
    assert "init scaled: not reproduced" in finding.evidence
    scaled_only = init_runs(both[both["init"] == "scaled"])
    assert "was not measured" in output_change_finding(scaled_only).evidence


def test_last_ffn_finding() -> None:
    shrinking = [d ** -0.5 for d in DEPTHS]
    finding = last_ffn_finding(init_runs(init_table(
        {"post_ln": FLAT, "pre_ln": shrinking}, metric="last_ffn_grad_norm")))
    assert finding.verdict == "reproduced" and "pre_ln -0.50" in finding.evidence
    rising = [d ** 0.1 for d in DEPTHS]
    assert last_ffn_finding(init_runs(init_table(
        {"post_ln": FLAT, "pre_ln": rising}, metric="last_ffn_grad_norm"))).verdict == \
        "not reproduced"


def logit_table(qk_top: float = 30.0) -> pd.DataFrame:
    runs = []
    for seed in SEEDS:
        runs += [run_rows("pre_ln", 1e-3, 0, 2.5, "healthy", max_logit=2.0, seed=seed),
                 run_rows("pre_ln", 1e-1, 0, 3.2, "unigram_collapse", max_logit=3e4, seed=seed),
                 run_rows("qk_norm", 1e-3, 0, 2.5, "healthy", max_logit=3.0, seed=seed),
                 run_rows("qk_norm", 1e-1, 0, 2.7, "healthy", max_logit=qk_top, seed=seed)]
    return frame_of(*runs)


def test_logit_finding() -> None:
    finding = logit_finding(train_runs(logit_table()))
    assert finding.verdict == "reproduced" and "3/3 seeds agreeing" in finding.evidence
    assert "lr 0.1: pre_ln 3e+04..3e+04, qk_norm 30..30" in finding.evidence
    assert logit_finding(train_runs(logit_table(qk_top=5e3))).verdict == "not reproduced"


def test_summaries_per_group() -> None:
    cases = dict(summary_cases(train_runs(warmup_table())))
    sens = cases["lrsens:post_ln:sdpa:L6:wu0:b20.95:scaled"][0]
    assert sens["metric"] == "lr_sensitivity" and sens["beta2"] == 0.95
    assert sens["value"] == pytest.approx(((2.4 - 2.4) + (3.25 - 2.4)) / 2)
    low = cases["lowdiv:post_ln:sdpa:L6:wu0:b20.95:scaled"][0]
    assert low["value"] == 1e-2 and low["depth"] == 6 and low["warmup"] == 0
    assert low["reason"].startswith("3/3 seeds diverged")
    assert cases["lowdiv:pre_ln:sdpa:L6:wu0:b20.95:scaled"][0]["value"] is None


def test_sensitivity_is_undefined_when_no_lr_trained() -> None:
    """A setting that fails at every lr has no best lr to be sensitive around: its Wortsman
    sensitivity would read ~0 ("insensitive"), so the row is skipped with that reason."""
    failing = frame_of(*[run_rows("post_ln", lr, 0, 3.25, "unigram_collapse", seed=seed)
                         for lr in (1e-3, 1e-2) for seed in SEEDS])
    (sens,) = dict(summary_cases(train_runs(failing)))["lrsens:post_ln:sdpa:L6:wu0:b20.95:scaled"]
    assert sens["status"] == "skipped" and "value" not in sens
    assert sens["reason"].startswith("undefined: no run trained healthy at any lr")


def test_error_rows_and_empty_tables_are_tolerated() -> None:
    assert all(f.verdict == "not measured" for f in evaluate_findings(pd.DataFrame()))
    errors = pd.DataFrame([dict(case_id="train:x", variant="x", status="error", metric="run",
                                reason="boom")])
    assert evaluate_findings(pd.concat([warmup_table(), errors]))[0].verdict == "reproduced"
