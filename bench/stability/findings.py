"""From the results table alone: per-group summaries (learning-rate sensitivity, the lowest
diverging learning rate) and, for each published finding, whether this run reproduced it.

Each finding has a criterion fixed in advance (stated in its evidence) and is "skipped" when
the run did not measure what the criterion needs (e.g. ``--variant post_ln`` alone).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd
from attnbench.stability.verdicts import lowest_diverging_lr, lr_sensitivity

GROUP = ["block", "attention", "depth", "warmup"]  # a learning-rate sweep
RUN_COLUMNS = [*GROUP, "lr", "seed", "verdict"]
LINEAR = (0.75, 1.25)  # "about linear": log-log exponent of a quantity vs depth in this range
LOGIT_RATIO = 10.0  # Pre-LN's max logit over QK-norm's at the top learning rate, at least
LOGIT_BOUND = 100.0  # QK-norm's max logit at every learning rate, at most (1e4 diverges)


@dataclass(frozen=True)
class Finding:
    slug: str
    claim: str
    source: str
    blocks: tuple[str, ...]
    reproduced: bool | None  # None: this run did not measure it
    evidence: str

    def rows(self) -> list[dict[str, Any]]:
        return [{"variant": ",".join(self.blocks), "status": "skipped" if self.reproduced is None
                 else "ok", "metric": "reproduced", "unit": "bool", "reason": self.evidence,
                 "value": None if self.reproduced is None else int(self.reproduced),
                 "claim": self.claim, "source": self.source}]


def _wide(frame: pd.DataFrame, prefix: str, columns: list[str]) -> pd.DataFrame:
    """One row per ok case whose id starts with ``prefix``: parameters plus one column per
    scalar metric (per-layer metrics excluded)."""
    if frame.empty or "case_id" not in frame:
        return pd.DataFrame(columns=columns)
    rows = frame[frame["case_id"].str.startswith(prefix) & (frame["status"] == "ok")]
    if "layer" in rows:
        rows = rows[rows["layer"].isna()]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    values = pd.to_numeric(rows["value"], errors="coerce")
    metrics = rows.assign(value=values).pivot(index="case_id", columns="metric", values="value")
    params = rows.drop_duplicates("case_id").set_index("case_id")[columns]
    integers = [c for c in ("depth", "warmup", "seed") if c in columns]
    params = params.astype(dict.fromkeys(integers, int))  # a column with gaps loads as float
    return params.join(metrics).reset_index()


def train_runs(frame: pd.DataFrame) -> pd.DataFrame:
    return _wide(frame, "train:", RUN_COLUMNS)


def init_runs(frame: pd.DataFrame) -> pd.DataFrame:
    return _wide(frame, "init:", ["block", "attention", "depth", "seed"])


def depth_exponent(depths: list[float], values: list[float]) -> float:
    """Least-squares slope of log(value) against log(depth): 1 linear, 0 flat."""
    xs, ys = [math.log(d) for d in depths], [math.log(v) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return (sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
            / sum((x - mx) ** 2 for x in xs))


# --- per-group summaries ----------------------------------------------------------------------

def summary_cases(runs: pd.DataFrame) -> list[tuple[str, list[dict[str, Any]]]]:
    """lr_sensitivity and lowest_diverging_lr for every (block, attention, depth, warmup)."""
    cases = []
    for key, group in runs.groupby(GROUP):
        cols = dict(zip(GROUP, key, strict=True))
        cols = {"variant": cols["block"], **cols, "depth": int(cols["depth"]),
                "warmup": int(cols["warmup"])}
        name = f"{cols['block']}:{cols['attention']}:L{cols['depth']}:wu{cols['warmup']}"
        lrs, seeds = sorted(group["lr"].unique()), sorted(group["seed"].unique())
        grid = f"lrs {', '.join(f'{lr:g}' for lr in lrs)}; seeds {[int(s) for s in seeds]}"
        if len(lrs) > 1:
            per_seed = [lr_sensitivity(dict(zip(g["lr"], g["final_val_loss"], strict=True)),
                                       g["init_loss"].iloc[0]) for _, g in group.groupby("seed")]
            row = {**cols, "status": "ok", "metric": "lr_sensitivity", "unit": "nats",
                   "value": sum(per_seed) / len(per_seed), "reason": f"mean over seeds; {grid}"}
            cases.append((f"lrsens:{name}", [row]))
        diverged = {lr: list(g["diverged"] > 0) for lr, g in group.groupby("lr")}
        lowest = lowest_diverging_lr(diverged)
        why = (f"no run diverged at or above the best lr; {grid}" if lowest is None else
               f"{sum(diverged[lowest])}/{len(diverged[lowest])} seeds diverged; {grid}")
        cases.append((f"lowdiv:{name}", [{**cols, "status": "ok", "metric": "lowest_diverging_lr",
                                          "value": lowest, "unit": "lr", "reason": why}]))
    return cases


# --- the findings -----------------------------------------------------------------------------

def _skip(finding: Finding, why: str) -> Finding:
    return Finding(finding.slug, finding.claim, finding.source, finding.blocks, None,
                   f"not measured: {why}")


def _outcome(runs: pd.DataFrame) -> str:
    """'2.37 healthy' for one seed; '2.41 mean, unigram_collapse x2, healthy x1' for several."""
    loss = runs["final_val_loss"].mean()
    counts = Counter(runs["verdict"])
    verdicts = ", ".join(v if n == 1 and len(runs) == 1 else f"{v} x{n}"
                         for v, n in counts.most_common())
    return f"{loss:.2f}{' mean' if len(runs) > 1 else ''} {verdicts}"


def warmup_finding(runs: pd.DataFrame) -> Finding:
    f = Finding("postln-needs-warmup", "Post-LN needs learning-rate warm-up at depth; Pre-LN "
                "trains without it", "Xiong et al. 2020 (arXiv 2002.04745)",
                ("post_ln", "pre_ln"), None, "")
    post, pre = runs[runs["block"] == "post_ln"], runs[runs["block"] == "pre_ln"]
    depths = [d for d in sorted(set(post["depth"]))
              if (post[post["depth"] == d]["warmup"] == 0).any()
              and (post[post["depth"] == d]["warmup"] > 0).any()
              and (pre[(pre["depth"] == d)]["warmup"] == 0).any()]
    if not depths:
        return _skip(f, "needs post_ln with and without warm-up and pre_ln without warm-up at "
                        "one depth")
    depth = depths[-1]
    warm = int(post[(post["depth"] == depth)]["warmup"].max())
    configs = {"post_ln/wu0": post[(post["depth"] == depth) & (post["warmup"] == 0)],
               f"post_ln/wu{warm}": post[(post["depth"] == depth) & (post["warmup"] == warm)],
               "pre_ln/wu0": pre[(pre["depth"] == depth) & (pre["warmup"] == 0)]}
    lrs = sorted(set.intersection(*(set(c["lr"]) for c in configs.values())))
    cold, warmed, pre_cold = (configs[k] for k in configs)

    def all_diverged(c: pd.DataFrame, lr: float) -> bool:
        return bool((c[c["lr"] == lr]["diverged"] > 0).all())

    def none_diverged(c: pd.DataFrame, lr: float) -> bool:
        return bool((c[c["lr"] == lr]["diverged"] == 0).all())

    witness = [lr for lr in lrs if all_diverged(cold, lr) and none_diverged(warmed, lr)
               and none_diverged(pre_cold, lr)]
    table = "; ".join(f"lr {lr:g}: " + ", ".join(f"{k} {_outcome(c[c['lr'] == lr])}"
                                                  for k, c in configs.items()) for lr in lrs)
    seeds = sorted(int(s) for s in cold["seed"].unique())
    head = (f"reproduced at lr {', '.join(f'{lr:g}' for lr in witness)}" if witness else
            "no lr at which post_ln without warm-up diverged while post_ln with warm-up and "
            "pre_ln without warm-up both stayed healthy")
    evidence = (f"{head} (depth {depth}, seeds {seeds}; criterion: such an lr exists, every "
                f"seed agreeing). Final val loss and verdict: {table}")
    return Finding(f.slug, f.claim, f.source, f.blocks, bool(witness), evidence)


def _depth_trend(init: pd.DataFrame, metric: str) -> dict[str, tuple[float, list, list]]:
    """Per block: (exponent, depths, seed-mean values) of ``metric`` against depth."""
    trends = {}
    for block, group in init.groupby("block"):
        means = group.groupby("depth")[metric].mean()
        if len(means) >= 3 and (means > 0).all():
            depths, values = list(means.index), list(means.values)
            trends[block] = (depth_exponent(depths, values), depths, values)
    return trends


def _trend_words(trends: dict[str, tuple[float, list, list]], blocks: list[str]) -> str:
    return "; ".join(f"{b} {e:+.2f} ({vals[0]:.3g} at L{ds[0]} -> {vals[-1]:.3g} at L{ds[-1]})"
                     for b, (e, ds, vals) in trends.items() if b in blocks)


def output_change_finding(init: pd.DataFrame) -> Finding:
    f = Finding("output-change-depth", "Post-LN's output change under parameter perturbation "
                "grows about linearly with depth, Pre-LN's sub-linearly",
                "Liu et al. 2020, Admin (arXiv 2004.08249)", ("post_ln", "pre_ln"), None, "")
    trends = _depth_trend(init, "output_change") if "output_change" in init else {}
    if not {"post_ln", "pre_ln"} <= trends.keys():
        return _skip(f, "needs init diagnostics of post_ln and pre_ln at 3 or more depths")
    post, pre = trends["post_ln"][0], trends["pre_ln"][0]
    ok = LINEAR[0] <= post <= LINEAR[1] and pre < LINEAR[0]
    others = _trend_words(trends, [b for b in trends if b not in f.blocks])
    evidence = (f"log-log exponent vs depth: {_trend_words(trends, list(f.blocks))} (criterion: "
                f"post_ln in [{LINEAR[0]}, {LINEAR[1]}], pre_ln below {LINEAR[0]})"
                + (f"; other blocks: {others}" if others else ""))
    return Finding(f.slug, f.claim, f.source, f.blocks, ok, evidence)


def last_ffn_finding(init: pd.DataFrame) -> Finding:
    f = Finding("last-ffn-grad-depth", "At init the last FFN weight's gradient does not shrink "
                "with depth in Post-LN and shrinks like 1/sqrt(L) in Pre-LN",
                "Xiong et al. 2020 (arXiv 2002.04745)", ("post_ln", "pre_ln"), None, "")
    trends = _depth_trend(init, "last_ffn_grad_norm") if "last_ffn_grad_norm" in init else {}
    if not {"post_ln", "pre_ln"} <= trends.keys():
        return _skip(f, "needs init diagnostics of post_ln and pre_ln at 3 or more depths")
    post, pre = trends["post_ln"][0], trends["pre_ln"][0]
    ok = abs(post) <= 0.25 and -0.75 <= pre <= -0.25
    evidence = (f"log-log exponent vs depth: {_trend_words(trends, list(f.blocks))} (criterion: "
                "post_ln within +-0.25, pre_ln in [-0.75, -0.25])")
    return Finding(f.slug, f.claim, f.source, f.blocks, ok, evidence)


def logit_finding(runs: pd.DataFrame) -> Finding:
    f = Finding("qk-norm-bounds-logits", "QK-norm keeps the max attention logit bounded where "
                "Pre-LN's grows with the learning rate", "Wortsman et al. 2023 "
                "(arXiv 2309.14322)", ("pre_ln", "qk_norm"), None, "")
    pre, qk = runs[runs["block"] == "pre_ln"], runs[runs["block"] == "qk_norm"]
    shared = sorted(set(zip(pre["depth"], pre["warmup"], strict=True))
                    & set(zip(qk["depth"], qk["warmup"], strict=True)),
                    key=lambda dw: (-dw[0], dw[1]))
    if not shared:
        return _skip(f, "needs pre_ln and qk_norm runs at the same depth and warm-up")
    depth, warmup = shared[0]

    def logits(c: pd.DataFrame) -> pd.Series:  # max over seeds, per lr
        return c[(c["depth"] == depth) & (c["warmup"] == warmup)].groupby("lr")["max_logit"].max()

    pre_l, qk_l = logits(pre), logits(qk)
    lrs = sorted(set(pre_l.index) & set(qk_l.index))
    top = lrs[-1]
    ok = bool(pre_l[top] >= LOGIT_RATIO * qk_l[top] and qk_l.max() <= LOGIT_BOUND)
    table = "; ".join(f"lr {lr:g}: pre_ln {pre_l[lr]:.3g}, qk_norm {qk_l[lr]:.3g}" for lr in lrs)
    evidence = (f"max attention logit (depth {depth}, warm-up {warmup}, max over seeds): {table} "
                f"(criterion: at the top lr pre_ln >= {LOGIT_RATIO:g}x qk_norm, and qk_norm <= "
                f"{LOGIT_BOUND:g} at every lr)")
    return Finding(f.slug, f.claim, f.source, f.blocks, ok, evidence)


def evaluate_findings(frame: pd.DataFrame) -> list[Finding]:
    runs, init = train_runs(frame), init_runs(frame)
    return [warmup_finding(runs), output_change_finding(init), logit_finding(runs),
            last_ffn_finding(init)]


def derived_cases(frame: pd.DataFrame, findings: list[Finding]
                  ) -> list[tuple[str, list[dict[str, Any]]]]:
    """Every derived case to write: summaries per sweep group, then one per finding."""
    return [*summary_cases(train_runs(frame)),
            *((f"finding:{f.slug}", f.rows()) for f in findings)]
