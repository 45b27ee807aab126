"""The published findings' criteria at their boundaries: depth exponents just inside and just
outside each band, the logit ratio and bound either side, so that moving any criterion by
10 % flips a case. Synthetic power laws value = depth ** exponent, no training here."""

from __future__ import annotations

import pandas as pd
import pytest
from attnbench.stability.findings import (
    LINEAR,
    LOGIT_BOUND,
    LOGIT_RATIO,
    Finding,
    init_runs,
    last_ffn_finding,
    logit_finding,
    output_change_finding,
    train_runs,
)

DEPTHS = (2, 4, 8, 16)


def init_table(metric: str, post: float, pre: float) -> pd.DataFrame:
    """Init diagnostics growing like depth ** exponent, for post_ln and pre_ln."""
    rows = [dict(case_id=f"init:{block}:sdpa:L{d}:seed0", variant=block, status="ok",
                 block=block, attention="sdpa", depth=d, seed=0, metric=metric,
                 value=float(d) ** exponent)
            for block, exponent in (("post_ln", post), ("pre_ln", pre)) for d in DEPTHS]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("post, pre, reproduced", [
    (1.0, 0.5, True), (0.72, 0.5, False), (0.78, 0.5, True), (1.22, 0.5, True),
    (1.28, 0.5, False), (1.0, 0.72, True), (1.0, 0.78, False),
])
def test_output_change_band_is_0_75_to_1_25(post, pre, reproduced):
    f = output_change_finding(init_runs(init_table("output_change", post, pre)))
    assert f.reproduced is reproduced
    assert LINEAR == (0.75, 1.25)


def test_output_change_evidence():
    f = output_change_finding(init_runs(init_table("output_change", 1.0, 0.5)))
    assert f.evidence == ("log-log exponent vs depth: post_ln +1.00 (2 at L2 -> 16 at L16); "
                          "pre_ln +0.50 (1.41 at L2 -> 4 at L16) (criterion: post_ln in "
                          "[0.75, 1.25], pre_ln below 0.75)")


@pytest.mark.parametrize("post, pre, reproduced", [
    (0.0, -0.5, True), (0.24, -0.5, True), (0.26, -0.5, False), (-0.24, -0.5, True),
    (-0.26, -0.5, False), (0.0, -0.24, False), (0.0, -0.26, True), (0.0, -0.74, True),
    (0.0, -0.76, False),
])
def test_last_ffn_bands(post, pre, reproduced):
    """post_ln within +-0.25, pre_ln in [-0.75, -0.25] (1/sqrt(L) is -0.5)."""
    f = last_ffn_finding(init_runs(init_table("last_ffn_grad_norm", post, pre)))
    assert f.reproduced is reproduced
    assert f.slug == "last-ffn-grad-depth" and f.blocks == ("post_ln", "pre_ln")


def test_last_ffn_evidence_and_skip():
    f = last_ffn_finding(init_runs(init_table("last_ffn_grad_norm", 0.0, -0.5)))
    assert f.evidence == ("log-log exponent vs depth: post_ln +0.00 (1 at L2 -> 1 at L16); "
                          "pre_ln -0.50 (0.707 at L2 -> 0.25 at L16) (criterion: post_ln "
                          "within +-0.25, pre_ln in [-0.75, -0.25])")
    skipped = last_ffn_finding(init_runs(init_table("output_change", 0.0, -0.5)))
    assert skipped.reproduced is None and skipped.evidence == (
        "not measured: needs init diagnostics of post_ln and pre_ln at 3 or more depths")
    assert skipped.claim == f.claim and skipped.source == f.source


def run_rows(block: str, lr: float, max_logit: float) -> list[dict]:
    cols = dict(case_id=f"train:{block}:sdpa:L4:lr{lr:g}:wu0:seed0", variant=block,
                status="ok", block=block, attention="sdpa", depth=4, lr=lr, warmup=0, seed=0,
                verdict="healthy")
    return [{**cols, "metric": m, "value": v} for m, v in (
        ("final_val_loss", 2.5), ("init_loss", 4.5), ("diverged", 0), ("max_logit", max_logit))]


def logits(pre_top: float, qk_top: float, qk_low: float = 3.0) -> Finding:
    rows = [*run_rows("pre_ln", 1e-3, 2.0), *run_rows("pre_ln", 1e-1, pre_top),
            *run_rows("qk_norm", 1e-3, qk_low), *run_rows("qk_norm", 1e-1, qk_top)]
    return logit_finding(train_runs(pd.DataFrame(rows)))


@pytest.mark.parametrize("pre_top, qk_top, qk_low, reproduced", [
    (105.0, 10.0, 3.0, True), (95.0, 10.0, 3.0, False), (100.0, 10.0, 3.0, True),
    (2000.0, 95.0, 3.0, True), (2000.0, 105.0, 3.0, False), (2000.0, 50.0, 105.0, False),
])
def test_logit_ratio_10_and_bound_100(pre_top, qk_top, qk_low, reproduced):
    assert logits(pre_top, qk_top, qk_low).reproduced is reproduced
    assert (LOGIT_RATIO, LOGIT_BOUND) == (10.0, 100.0)


def test_logit_evidence():
    assert logits(105.0, 10.0).evidence == (
        "max attention logit (depth 4, warm-up 0, max over seeds): lr 0.001: pre_ln 2, qk_norm "
        "3; lr 0.1: pre_ln 105, qk_norm 10 (criterion: at the top lr pre_ln >= 10x qk_norm, "
        "and qk_norm <= 100 at every lr)")


def test_finding_rows():
    f = Finding("slug", "claim", "source", ("a", "b"), False, "evidence")
    assert f.rows() == [{"variant": "a,b", "status": "ok", "metric": "reproduced",
                         "unit": "bool", "reason": "evidence", "value": 0, "claim": "claim",
                         "source": "source"}]
    assert Finding("s", "c", "src", ("a",), True, "e").rows()[0]["value"] == 1
    skipped = Finding("s", "c", "src", ("a",), None, "e").rows()[0]
    assert skipped["status"] == "skipped" and skipped["value"] is None
