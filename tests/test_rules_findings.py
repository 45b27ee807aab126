"""The published findings' criteria at their boundaries: depth exponents just inside and just
outside each band, the logit ratio and bound either side, so that moving any criterion by
10 % flips a case; and the seed rule that decides a finding (every one of at least MIN_SEEDS
seeds must agree). Synthetic power laws value = depth ** exponent, no training here."""

from __future__ import annotations

import pandas as pd
import pytest
from attnbench.stability.findings import (
    FLAT,
    LINEAR,
    LOGIT_BOUND,
    LOGIT_RATIO,
    PAPER_INIT,
    SHRINK,
    Finding,
    init_runs,
    last_ffn_finding,
    logit_finding,
    output_change_finding,
    train_runs,
)
from attnbench.stability.verdicts import MIN_SEEDS

DEPTHS = (2, 4, 8, 16)
SEEDS = (0, 1, 2)
VERDICT = {True: "reproduced", False: "not reproduced", None: "inconclusive"}


def per_seed(exponent, seeds) -> list[float]:
    """One exponent for every seed, or one per seed already."""
    return list(exponent) if isinstance(exponent, tuple) else [exponent] * len(seeds)


def init_table(metric: str, post, pre, *, seeds=SEEDS, init: str = PAPER_INIT) -> pd.DataFrame:
    """Init diagnostics growing like depth ** exponent, for post_ln and pre_ln, per seed (an
    exponent may be a tuple: one per seed)."""
    rows = [dict(case_id=f"init:{block}:sdpa:L{d}:{init}:seed{s}", variant=block, status="ok",
                 block=block, attention="sdpa", depth=d, init=init, seed=s, metric=metric,
                 value=float(d) ** e)
            for block, exponent in (("post_ln", post), ("pre_ln", pre))
            for s, e in zip(seeds, per_seed(exponent, seeds), strict=True) for d in DEPTHS]
    return pd.DataFrame(rows)


def assert_verdict(f: Finding, reproduced: bool | None) -> None:
    assert f.reproduced is reproduced and f.verdict == VERDICT[reproduced]


@pytest.mark.parametrize("post, pre, reproduced", [
    (1.0, 0.5, True), (0.72, 0.5, False), (0.78, 0.5, True), (1.22, 0.5, True),
    (1.28, 0.5, False), (1.0, 0.72, True), (1.0, 0.78, False),
])
def test_output_change_band_is_0_75_to_1_25(post, pre, reproduced):
    f = output_change_finding(init_runs(init_table("output_change", post, pre)))
    assert_verdict(f, reproduced)
    assert LINEAR == (0.75, 1.25)


def test_output_change_evidence():
    f = output_change_finding(init_runs(init_table("output_change", 1.0, 0.5)))
    per = "per seed +1.00, +1.00, +1.00"
    assert f.evidence == (
        "decided under init unscaled (the papers' setting). Criterion, per seed: post_ln "
        "exponent in [0.75, 1.25] and pre_ln below 0.75 (O(log N) over depths 2-12 gives about "
        "0.5). init unscaled: reproduced, 3/3 seeds agreeing; log-log exponent vs depth "
        f"post_ln +1.00 (x8: 2 at L2 -> 16 at L16; {per}); pre_ln +0.50 (x2.83: 1.41 at L2 -> "
        "4 at L16; per seed +0.50, +0.50, +0.50)")


@pytest.mark.parametrize("post, pre, reproduced", [
    (0.0, -0.5, True), (0.24, -0.5, True), (0.26, -0.5, False), (-0.24, -0.5, True),
    (-0.26, -0.5, False), (0.0, -0.24, False), (0.0, -0.26, True), (0.0, -0.74, True),
    (0.0, -0.76, False),
])
def test_last_ffn_bands(post, pre, reproduced):
    """post_ln within +-0.25, pre_ln in [-0.75, -0.25] (1/sqrt(L) is -0.5)."""
    f = last_ffn_finding(init_runs(init_table("last_ffn_grad_norm", post, pre)))
    assert_verdict(f, reproduced)
    assert f.slug == "last-ffn-grad-depth" and f.blocks == ("post_ln", "pre_ln")
    assert (FLAT, SHRINK) == (0.25, (-0.75, -0.25))


def test_last_ffn_evidence_and_skip():
    f = last_ffn_finding(init_runs(init_table("last_ffn_grad_norm", 0.0, -0.5)))
    assert f.evidence == (
        "decided under init unscaled (the papers' setting). Criterion, per seed: post_ln "
        "exponent within +-0.25, pre_ln in [-0.75, -0.25] (1/sqrt(L) is -0.5). init unscaled: "
        "reproduced, 3/3 seeds agreeing; log-log exponent vs depth post_ln +0.00 (x1: 1 at L2 "
        "-> 1 at L16; per seed +0.00, +0.00, +0.00); pre_ln -0.50 (x0.354: 0.707 at L2 -> 0.25 "
        "at L16; per seed -0.50, -0.50, -0.50)")
    skipped = last_ffn_finding(init_runs(init_table("output_change", 0.0, -0.5)))
    assert skipped.reproduced is None and skipped.verdict == "not measured"
    assert skipped.evidence == (
        "not measured: needs init diagnostics of post_ln and pre_ln at 3 or more depths")
    assert skipped.claim == f.claim and skipped.source == f.source


@pytest.mark.parametrize("post, reproduced", [
    ((0.0, 0.0, 0.0), True),  # 3 of 3 seeds agree
    ((0.0, 0.0, 0.5), None),  # 2 of 3: inconclusive
    ((0.5, 0.0, 0.5), None),  # 1 of 3: inconclusive
    ((0.5, 0.5, 0.5), False),  # 0 of 3: not reproduced
])
def test_init_finding_needs_every_seed(post, reproduced):
    f = last_ffn_finding(init_runs(init_table("last_ffn_grad_norm", post, -0.5)))
    assert_verdict(f, reproduced)
    showing = sum(abs(e) <= FLAT for e in post)
    assert f"init unscaled: {VERDICT[reproduced]}, {showing}/3 seeds agreeing" in f.evidence


@pytest.mark.parametrize("seeds, post", [((0, 1), 0.0), ((0, 1), 0.5), ((0,), 0.0)])
def test_init_finding_fewer_than_min_seeds_cannot_decide(seeds, post):
    """Two agreeing seeds (either way) are too few: a lucky seed is not a regime."""
    assert MIN_SEEDS == 3
    f = last_ffn_finding(init_runs(init_table("last_ffn_grad_norm", post, -0.5, seeds=seeds)))
    assert_verdict(f, None)
    n = len(seeds)
    assert f"inconclusive, {n if post == 0.0 else 0}/{n} seeds agreeing" in f.evidence


def test_init_findings_are_decided_under_the_papers_init_when_measured():
    """unscaled (the papers' init) decides whatever the other scheme shows; alone, the other
    scheme decides and says the papers' init was not measured."""
    assert PAPER_INIT == "unscaled"
    paper = init_table("last_ffn_grad_norm", 0.5, -0.5)  # unscaled: not reproduced
    other = init_table("last_ffn_grad_norm", 0.0, -0.5, init="scaled")  # scaled: reproduced
    f = last_ffn_finding(init_runs(pd.concat([paper, other])))
    assert_verdict(f, False)
    assert f.evidence.startswith("decided under init unscaled (the papers' setting).")
    assert "| init scaled: reproduced, 3/3 seeds agreeing" in f.evidence
    alone = last_ffn_finding(init_runs(other))
    assert_verdict(alone, True)
    assert alone.evidence.startswith(
        "decided under init scaled (the papers' init unscaled was not measured).")


def run_rows(block: str, lr: float, max_logit: float, seed: int) -> list[dict]:
    cols = dict(case_id=f"train:{block}:sdpa:L4:lr{lr:g}:wu0:b20.95:scaled:seed{seed}",
                variant=block, status="ok", block=block, attention="sdpa", depth=4, lr=lr,
                warmup=0, beta2=0.95, init="scaled", steps=300, seed=seed, verdict="healthy")
    return [{**cols, "metric": m, "value": v} for m, v in (
        ("final_val_loss", 2.5), ("init_loss", 4.5), ("diverged", 0), ("max_logit", max_logit))]


def logits(pre_top, qk_top, qk_low=3.0, seeds=SEEDS) -> Finding:
    """pre_ln and qk_norm at lrs 1e-3 and 1e-1; an argument may be a tuple, one per seed."""
    rows = []
    for i, s in enumerate(seeds):
        def at(x, i=i):
            return x[i] if isinstance(x, tuple) else x
        rows += [*run_rows("pre_ln", 1e-3, 2.0, s), *run_rows("pre_ln", 1e-1, at(pre_top), s),
                 *run_rows("qk_norm", 1e-3, at(qk_low), s),
                 *run_rows("qk_norm", 1e-1, at(qk_top), s)]
    return logit_finding(train_runs(pd.DataFrame(rows)))


@pytest.mark.parametrize("pre_top, qk_top, qk_low, reproduced", [
    (105.0, 10.0, 3.0, True), (95.0, 10.0, 3.0, False), (100.0, 10.0, 3.0, True),
    (2000.0, 95.0, 3.0, True), (2000.0, 105.0, 3.0, False), (2000.0, 50.0, 105.0, False),
    (2000.0, 50.0, 95.0, True), (1000.0, 100.0, 3.0, True),
])
def test_logit_ratio_10_and_bound_100(pre_top, qk_top, qk_low, reproduced):
    assert_verdict(logits(pre_top, qk_top, qk_low), reproduced)
    assert (LOGIT_RATIO, LOGIT_BOUND) == (10.0, 100.0)


@pytest.mark.parametrize("pre_top, reproduced", [
    ((105.0, 105.0, 105.0), True), ((105.0, 105.0, 95.0), None), ((95.0, 95.0, 105.0), None),
    ((95.0, 95.0, 95.0), False),
])
def test_logit_finding_needs_every_seed(pre_top, reproduced):
    f = logits(pre_top, 10.0)
    assert_verdict(f, reproduced)
    showing = sum(p >= 100.0 for p in pre_top)
    assert f.evidence.startswith(f"{VERDICT[reproduced]} at depth 4, beta2 0.95, warm-up 0 "
                                 f"(0 %), 300 steps, init scaled, lrs 0.001, 0.1: "
                                 f"{showing}/3 seeds agreeing.")


@pytest.mark.parametrize("seeds", [(0, 1), (0,)])
def test_logit_finding_fewer_than_min_seeds_cannot_decide(seeds):
    assert_verdict(logits(2000.0, 10.0, seeds=seeds), None)
    assert_verdict(logits(50.0, 10.0, seeds=seeds), None)


def test_logit_evidence():
    assert logits(105.0, 10.0).evidence == (
        "reproduced at depth 4, beta2 0.95, warm-up 0 (0 %), 300 steps, init scaled, lrs "
        "0.001, 0.1: 3/3 seeds agreeing. Criterion, per seed: at the top lr pre_ln's max "
        "logit >= 10x qk_norm's, and qk_norm's <= 100 at every lr; decided over seeds (all "
        "agreeing: reproduced, none: not reproduced, else inconclusive). Max attention logit "
        "(range over seeds): depth 4, beta2 0.95, warm-up 0 (0 %), 300 steps, init scaled, "
        "lrs 0.001, 0.1: lr 0.001: pre_ln 2..2, qk_norm 3..3; lr 0.1: pre_ln 105..105, "
        "qk_norm 10..10")


def test_finding_rows():
    f = Finding("slug", "claim", "source", ("a", "b"), False, "evidence")
    assert f.rows() == [{"variant": "a,b", "status": "ok", "metric": "reproduced",
                         "unit": "bool", "reason": "evidence", "value": 0,
                         "verdict": "not reproduced", "claim": "claim", "source": "source"}]
    assert Finding("s", "c", "src", ("a",), True, "e").rows()[0]["value"] == 1
    assert Finding("s", "c", "src", ("a",), True, "e").verdict == "reproduced"
    skipped = Finding("s", "c", "src", ("a",), None, "e").rows()[0]
    assert skipped["status"] == "skipped" and skipped["value"] is None
    assert skipped["verdict"] == "not measured"
    unsure = Finding("s", "c", "src", ("a",), None, "e", "inconclusive").rows()[0]
    assert unsure["status"] == "ok" and unsure["value"] is None  # measured, undecided
    assert unsure["verdict"] == "inconclusive"
