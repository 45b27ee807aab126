"""From the results table alone: per-group summaries (learning-rate sensitivity, the lowest
diverging learning rate) and, for each published finding, its verdict over seeds.

Each finding has a criterion fixed in advance (stated in its evidence), is tested per regime
(depth, lr, AdamW beta2, warm-up, steps, init scheme) and per seed, and is decided over seeds
by ``verdicts.seed_verdict``: reproduced / not reproduced / inconclusive, with the regime and
the seeds agreeing in its text. It is "not measured" when the run did not measure what the
criterion needs (e.g. ``--variant post_ln`` alone). A finding never claims beyond the regimes
that ran: the evidence names them.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd
from attnbench.stability.verdicts import (
    lowest_diverging_lr,
    lr_sensitivity,
    overall_verdict,
    seed_verdict,
)

REGIME = ["attention", "depth", "beta2", "init", "steps"]  # what a finding's regime fixes
GROUP = ["block", "attention", "depth", "warmup", "beta2", "init"]  # a learning-rate sweep
RUN_COLUMNS = [*GROUP, "lr", "seed", "steps", "verdict"]
DEFAULTS = {"beta2": 0.95, "init": "scaled"}  # runs recorded before these were swept
LINEAR = (0.75, 1.25)  # "about linear": log-log exponent of a quantity vs depth in this range
FLAT = 0.25  # "does not change with depth": |exponent| at most this
SHRINK = (-0.75, -0.25)  # "shrinks like 1/sqrt(L)": exponent in this range (-0.5 ideal)
LOGIT_RATIO = 10.0  # Pre-LN's max logit over QK-norm's at the top learning rate, at least
LOGIT_BOUND = 100.0  # QK-norm's max logit at every learning rate, at most (1e4 diverges)
PAPER_INIT = "unscaled"  # the init Xiong et al. and Admin analyse: no depth scaling


@dataclass(frozen=True)
class Finding:
    slug: str
    claim: str
    source: str
    blocks: tuple[str, ...]
    reproduced: bool | None  # None: inconclusive or not measured (see verdict)
    evidence: str
    verdict: str = ""  # reproduced / not reproduced / inconclusive / not measured

    def __post_init__(self) -> None:
        if not self.verdict:
            default = {True: "reproduced", False: "not reproduced", None: "not measured"}
            object.__setattr__(self, "verdict", default[self.reproduced])

    def rows(self) -> list[dict[str, Any]]:
        measured = self.verdict != "not measured"
        return [{"variant": ",".join(self.blocks), "status": "ok" if measured else "skipped",
                 "metric": "reproduced", "unit": "bool", "reason": self.evidence,
                 "value": None if self.reproduced is None else int(self.reproduced),
                 "verdict": self.verdict, "claim": self.claim, "source": self.source}]


def decided(f: Finding, verdict: str, evidence: str) -> Finding:
    reproduced = {"reproduced": True, "not reproduced": False}.get(verdict)
    return Finding(f.slug, f.claim, f.source, f.blocks, reproduced, evidence, verdict)


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
    rows = rows.assign(**{c: rows[c].fillna(v) if c in rows else v
                          for c, v in DEFAULTS.items() if c in columns})
    if "steps" in columns and "steps" not in rows:
        rows = rows.assign(steps=math.nan)
    values = pd.to_numeric(rows["value"], errors="coerce")
    metrics = rows.assign(value=values).pivot(index="case_id", columns="metric", values="value")
    params = rows.drop_duplicates("case_id").set_index("case_id")[columns]
    integers = [c for c in ("depth", "warmup", "seed") if c in columns]
    params = params.astype(dict.fromkeys(integers, int))  # a column with gaps loads as float
    return params.join(metrics).reset_index()


def train_runs(frame: pd.DataFrame) -> pd.DataFrame:
    return _wide(frame, "train:", RUN_COLUMNS)


def init_runs(frame: pd.DataFrame) -> pd.DataFrame:
    return _wide(frame, "init:", ["block", "attention", "depth", "init", "seed"])


def depth_exponent(depths: list[float], values: list[float]) -> float:
    """Least-squares slope of log(value) against log(depth): 1 linear, 0 flat."""
    xs, ys = [math.log(d) for d in depths], [math.log(v) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return (sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
            / sum((x - mx) ** 2 for x in xs))


def regime_text(key: dict[str, Any], warmup: int | None = None) -> str:
    """'depth 6, lr 0.003, beta2 0.999, warm-up 100 (33 %), 300 steps, init scaled'."""
    parts = [f"depth {int(key['depth'])}"] if "depth" in key else []
    if "lr" in key:
        parts.append(f"lr {key['lr']:g}")
    parts.append(f"beta2 {key['beta2']:g}")
    steps = key.get("steps")
    if warmup is not None:
        share = f" ({100 * warmup / steps:.0f} %)" if steps == steps and steps else ""
        parts.append(f"warm-up {warmup}{share}")
    if steps == steps and steps:
        parts.append(f"{int(steps)} steps")
    parts.append(f"init {key['init']}")
    return ", ".join(parts)


# --- per-group summaries ----------------------------------------------------------------------

def summary_cases(runs: pd.DataFrame) -> list[tuple[str, list[dict[str, Any]]]]:
    """lr_sensitivity and lowest_diverging_lr for every (block, attention, depth, warmup,
    beta2, init)."""
    cases = []
    for key, group in runs.groupby(GROUP):
        cols = dict(zip(GROUP, key, strict=True))
        cols = {"variant": cols["block"], **cols, "depth": int(cols["depth"]),
                "warmup": int(cols["warmup"])}
        name = (f"{cols['block']}:{cols['attention']}:L{cols['depth']}:wu{cols['warmup']}"
                f":b2{cols['beta2']:g}:{cols['init']}")
        lrs, seeds = sorted(group["lr"].unique()), sorted(group["seed"].unique())
        grid = f"lrs {', '.join(f'{lr:g}' for lr in lrs)}; seeds {[int(s) for s in seeds]}"
        if len(lrs) > 1 and not (group["verdict"] == "healthy").any():
            cases.append((f"lrsens:{name}", [{
                **cols, "status": "skipped", "metric": "lr_sensitivity", "unit": "nats",
                "reason": f"undefined: no run trained healthy at any lr ({grid}); Wortsman's "
                          "measure is relative to the best lr and would read about 0, as if "
                          "this setting were insensitive"}]))
        elif len(lrs) > 1:
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


def _by_seed(runs: pd.DataFrame) -> dict[int, bool]:
    """seed -> diverged, for runs of one configuration."""
    return {int(s): bool(d > 0) for s, d in zip(runs["seed"], runs["diverged"], strict=True)}


def _judge(f: Finding, tested: list[tuple[str, int, int, str]], criterion: str,
           measured: str = "Final val loss and verdicts") -> Finding:
    """The overall verdict from (regime text, seeds showing, seeds, detail) per tested regime:
    the regimes where it was reproduced (or, failing that, the closest) lead the text;
    ``measured`` names what the details are."""
    verdicts = [seed_verdict(show, n) for _, show, n, _ in tested]
    verdict = overall_verdict(verdicts)
    lead = [t for t, v in zip(tested, verdicts, strict=True) if v == "reproduced"] or sorted(
        tested, key=lambda t: -t[1] / t[2])[:1]
    head = "; ".join(f"{verdict} at {text}: {show}/{n} seeds agreeing"
                     for text, show, n, _ in lead)
    others = [f"{text}: {show}/{n} ({seed_verdict(show, n)})"
              for text, show, n, _ in tested if (text, show, n, _) not in lead]
    details = " | ".join(f"{text}: {detail}" for text, _, _, detail in tested)
    evidence = (f"{head}. Criterion, per seed: {criterion}; decided over seeds (all agreeing: "
                "reproduced, none: not reproduced, else inconclusive)."
                + (f" Other regimes tested: {'; '.join(others)}." if others else "")
                + f" {measured}: {details}")
    return decided(f, verdict, evidence)


def warmup_finding(runs: pd.DataFrame) -> Finding:
    f = Finding("postln-needs-warmup", "Post-LN needs learning-rate warm-up at depth; Pre-LN "
                "trains without it", "Xiong et al. 2020 (arXiv 2002.04745)",
                ("post_ln", "pre_ln"), None, "")
    post, pre = runs[runs["block"] == "post_ln"], runs[runs["block"] == "pre_ln"]
    tested = []
    for key, cold in post[post["warmup"] == 0].groupby([*REGIME, "lr"], dropna=False):
        sel = dict(zip([*REGIME, "lr"], key, strict=True))

        def match(c: pd.DataFrame, sel: dict = sel) -> pd.DataFrame:
            return c[(c[list(sel)].fillna(-1) == pd.Series(sel).fillna(-1)).all(axis=1)]

        pre_cold = match(pre)
        pre_cold = pre_cold[pre_cold["warmup"] == 0]
        for warm in sorted(w for w in match(post)["warmup"].unique() if w > 0):
            warmed = match(post)
            warmed = warmed[warmed["warmup"] == warm]
            c, w, p = _by_seed(cold), _by_seed(warmed), _by_seed(pre_cold)
            seeds = sorted(set(c) & set(w) & set(p))
            if not seeds:
                continue
            show = sum(c[s] and not w[s] and not p[s] for s in seeds)
            detail = (f"post_ln/wu0 {_outcome(cold)}, post_ln/wu{warm} {_outcome(warmed)}, "
                      f"pre_ln/wu0 {_outcome(pre_cold)}")
            tested.append((regime_text(sel, int(warm)), show, len(seeds), detail))
    if not tested:
        return _skip(f, "needs post_ln with and without warm-up and pre_ln without warm-up in "
                        "one regime (depth, lr, beta2, init), on the same seeds")
    return _judge(f, tested, "post_ln without warm-up diverged, post_ln with the warm-up and "
                             "pre_ln without warm-up both stayed healthy")


def logit_finding(runs: pd.DataFrame) -> Finding:
    f = Finding("qk-norm-bounds-logits", "QK-norm keeps the max attention logit bounded where "
                "Pre-LN's grows with the learning rate", "Wortsman et al. 2023 "
                "(arXiv 2309.14322)", ("pre_ln", "qk_norm"), None, "")
    pre, qk = runs[runs["block"] == "pre_ln"], runs[runs["block"] == "qk_norm"]
    keys = [*REGIME, "warmup"]
    tested = []
    for key, q in qk.groupby(keys, dropna=False):
        sel = dict(zip(keys, key, strict=True))
        p = pre[(pre[keys].fillna(-1) == pd.Series(sel).fillna(-1)).all(axis=1)]
        lrs = sorted(set(p["lr"]) & set(q["lr"]))
        seeds = sorted(set(p["seed"]) & set(q["seed"]))
        if not lrs or not seeds:
            continue
        top = lrs[-1]

        def logit(c: pd.DataFrame, lr: float, seed: int) -> float:
            return float(c[(c["lr"] == lr) & (c["seed"] == seed)]["max_logit"].max())

        show = sum(logit(p, top, s) >= LOGIT_RATIO * logit(q, top, s)
                   and max(logit(q, lr, s) for lr in lrs) <= LOGIT_BOUND for s in seeds)
        detail = "; ".join(
            f"lr {lr:g}: pre_ln {p[p['lr'] == lr]['max_logit'].min():.3g}.."
            f"{p[p['lr'] == lr]['max_logit'].max():.3g}, qk_norm "
            f"{q[q['lr'] == lr]['max_logit'].min():.3g}..{q[q['lr'] == lr]['max_logit'].max():.3g}"
            for lr in lrs)
        text = f"{regime_text(sel, int(sel['warmup']))}, lrs {', '.join(f'{x:g}' for x in lrs)}"
        tested.append((text, show, len(seeds), detail))
    if not tested:
        return _skip(f, "needs pre_ln and qk_norm runs in the same regime on the same seeds")
    return _judge(f, tested, f"at the top lr pre_ln's max logit >= {LOGIT_RATIO:g}x qk_norm's, "
                             f"and qk_norm's <= {LOGIT_BOUND:g} at every lr",
                  "Max attention logit (range over seeds)")


def evaluate_findings(frame: pd.DataFrame) -> list[Finding]:
    runs, init = train_runs(frame), init_runs(frame)
    return [warmup_finding(runs), output_change_finding(init), logit_finding(runs),
            last_ffn_finding(init)]


def derived_cases(frame: pd.DataFrame, findings: list[Finding]
                  ) -> list[tuple[str, list[dict[str, Any]]]]:
    """Every derived case to write: summaries per sweep group, then one per finding."""
    return [*summary_cases(train_runs(frame)),
            *((f"finding:{f.slug}", f.rows()) for f in findings)]


# The findings at initialisation live in their own module (which imports the helpers above).
from attnbench.stability.init_findings import (  # noqa: E402
    last_ffn_finding,
    output_change_finding,
)
