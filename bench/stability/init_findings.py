"""The findings measured at initialisation, decided over seeds and per init scheme: Admin's
output change (Liu et al. 2020) and the last FFN weight's gradient (Xiong et al. 2020).

Both papers analyse an init without depth scaling ("unscaled"), where Pre-LN's residual stream
grows with depth; that growth is what shrinks Pre-LN's last-layer gradient and keeps its output
change logarithmic. GPT-2's init ("scaled", output projections N(0, 0.02/sqrt(2L))) keeps the
stream's variance about flat, so the predictions need not hold there. Each finding is therefore
decided under the papers' init when it was measured, and the other scheme's numbers are shown
beside it.
"""

from __future__ import annotations

import pandas as pd
from attnbench.stability.findings import (
    FLAT,
    LINEAR,
    PAPER_INIT,
    SHRINK,
    Finding,
    _skip,
    decided,
    depth_exponent,
)
from attnbench.stability.verdicts import seed_verdict


def depth_trends(init: pd.DataFrame, metric: str) -> dict[tuple[str, str], dict]:
    """Per (init scheme, block): the seed-mean values by depth, their log-log exponent and
    growth (deepest / shallowest), and the exponent of each seed."""
    trends: dict[tuple[str, str], dict] = {}
    if metric not in init:
        return trends
    for (scheme, block), group in init.groupby(["init", "block"]):
        means = group.groupby("depth")[metric].mean()
        if len(means) < 3 or not (means > 0).all():
            continue
        per_seed = {}
        for seed, g in group.groupby("seed"):
            by_depth = g.groupby("depth")[metric].mean()
            if len(by_depth) >= 3 and (by_depth > 0).all():
                per_seed[int(seed)] = depth_exponent(list(by_depth.index), list(by_depth))
        trends[(scheme, block)] = {
            "depths": [int(d) for d in means.index], "values": list(means.values),
            "exponent": depth_exponent(list(means.index), list(means.values)),
            "growth": means.values[-1] / means.values[0], "per_seed": per_seed}
    return trends


def trend_words(trends: dict[tuple[str, str], dict], scheme: str, blocks: list[str]) -> str:
    """'post_ln +0.98 (x5.9: 2.0e-05 at L2 -> 1.2e-04 at L12; seeds +0.97, +0.99, +0.98)'."""
    out = []
    for block in blocks:
        t = trends.get((scheme, block))
        if t is None:
            continue
        seeds = ", ".join(f"{e:+.2f}" for _, e in sorted(t["per_seed"].items()))
        out.append(f"{block} {t['exponent']:+.2f} (x{t['growth']:.3g}: {t['values'][0]:.3g} at "
                   f"L{t['depths'][0]} -> {t['values'][-1]:.3g} at L{t['depths'][-1]}; "
                   f"per seed {seeds})")
    return "; ".join(out)


def _decide(f: Finding, trends: dict, test, criterion: str, extra: str = "") -> Finding:
    """Decide ``f`` per seed under the papers' init if measured, else the other scheme."""
    schemes = sorted({s for s, _ in trends}, key=lambda s: s != PAPER_INIT)
    usable = [s for s in schemes if all((s, b) in trends for b in f.blocks)]
    if not usable:
        return _skip(f, f"needs init diagnostics of {' and '.join(f.blocks)} at 3 or more "
                        "depths")
    words = []
    verdict = ""
    for scheme in usable:
        post, pre = (trends[(scheme, b)]["per_seed"] for b in f.blocks)
        seeds = sorted(set(post) & set(pre))
        show = sum(test(post[s], pre[s]) for s in seeds)
        v = seed_verdict(show, len(seeds))
        verdict = verdict or v  # the first usable scheme decides
        others = [b for s, b in sorted(trends) if s == scheme and b not in f.blocks]
        words.append(f"init {scheme}: {v}, {show}/{len(seeds)} seeds agreeing; log-log exponent "
                     f"vs depth {trend_words(trends, scheme, list(f.blocks))}"
                     + (f"; other blocks: {trend_words(trends, scheme, others)}" if others
                        else ""))
    lead = (f"decided under init {usable[0]}"
            + (" (the papers' setting)" if usable[0] == PAPER_INIT else
               f" (the papers' init {PAPER_INIT} was not measured)"))
    evidence = f"{lead}. Criterion, per seed: {criterion}. " + " | ".join(words) + extra
    return decided(f, verdict, evidence)


def output_change_finding(init: pd.DataFrame) -> Finding:
    f = Finding("output-change-depth", "Post-LN's output change under a random perturbation of "
                "the sublayer weights grows about linearly with depth, Pre-LN's sub-linearly "
                "(O(log N))", "Liu et al. 2020, Admin (arXiv 2004.08249)", ("post_ln", "pre_ln"),
                None, "")
    trends = depth_trends(init, "output_change")
    extra = ""
    old = depth_trends(init, "output_change_all")
    pairs = [(s, old[(s, "post_ln")], old[(s, "deepnorm")]) for s in sorted({s for s, _ in old})
             if (s, "post_ln") in old and (s, "deepnorm") in old]
    if pairs:
        s, post, deep = pairs[0]
        extra = (f" | For contrast, perturbing every parameter by eps x its own rms (norm gains "
                 f"included; output_change_all, init {s}): post_ln "
                 f"{post['values'][0]:.3g} -> {post['values'][-1]:.3g}, deepnorm "
                 f"{deep['values'][0]:.3g} -> {deep['values'][-1]:.3g}: the LayerNorm gains' "
                 "noise dominates and passes unattenuated down both streams, which is why that "
                 "measure could not tell DeepNorm from Post-LN")
    return _decide(f, trends, lambda post, pre: LINEAR[0] <= post <= LINEAR[1] and
                   pre < LINEAR[0], f"post_ln exponent in [{LINEAR[0]}, {LINEAR[1]}] and pre_ln "
                   f"below {LINEAR[0]} (O(log N) over depths 2-12 gives about 0.5)", extra)


def last_ffn_finding(init: pd.DataFrame) -> Finding:
    f = Finding("last-ffn-grad-depth", "At init the last FFN weight's gradient does not shrink "
                "with depth in Post-LN and shrinks like 1/sqrt(L) in Pre-LN",
                "Xiong et al. 2020 (arXiv 2002.04745)", ("post_ln", "pre_ln"), None, "")
    trends = depth_trends(init, "last_ffn_grad_norm")
    return _decide(f, trends, lambda post, pre: abs(post) <= FLAT and
                   SHRINK[0] <= pre <= SHRINK[1], f"post_ln exponent within +-{FLAT}, pre_ln in "
                   f"[{SHRINK[0]}, {SHRINK[1]}] (1/sqrt(L) is -0.5)")
