"""The gate measuring itself: how often it cries wolf, and whether it catches real regressions.

False alarms: A/A runs, the same tree on both sides (two independent worker processes each,
as in a real run), repeated; every time comparison that ends "regressed" or "improved" is a
false alarm, and so is any memory or correctness regression.

Power: the probe plugins (``attnbench.testing.gate_*``) inject one fault on
the head side against the faithful probe on the base side: about 1.3x the work, a memory
regression, a correctness break. Each must fail the gate. The slowdown is timed in
``power_runs`` full gate runs (fresh worker processes each, screen + confirmation); every case
of the preset in a run is one trial.

Targets (from the issue): false-alarm rate at most 1 % over at least 20 A/A comparisons;
a 30 % slowdown caught in at least 95 % of trials. With 0 false alarms in n comparisons the
one-sided 95 % upper confidence bound on the rate is 1 - 0.05**(1/n), reported alongside.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from attnbench.errors import UsageError
from attnbench.gate.measure import GatePreset, GateSettings, compare_sides
from attnbench.gate.sides import SideSpec
from attnbench.gate.verdicts import exit_code

PROBE = "gate_probe"
PLUGINS = "attnbench.testing"
MAX_FALSE_ALARM_RATE, MIN_AA_COMPARISONS, MIN_POWER = 0.01, 20, 0.95


def upper_bound(events: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on a rate, by bisection on the binomial tail."""
    if n == 0:
        return 1.0
    from math import comb

    def tail(p: float) -> float:  # P(X <= events | p)
        return sum(comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(events + 1))

    lo, hi = events / n, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tail(mid) > 1 - confidence else (lo, mid)
    return hi


def _probe_sides(root: Path, fault: str) -> tuple[SideSpec, SideSpec]:
    return (SideSpec("base", root, (f"{PLUGINS}.gate_probe",), "probe"),
            SideSpec("head", root, (f"{PLUGINS}.{fault}",), fault))


def run_self_check(root: Path, preset: GatePreset, settings: GateSettings, *, aa_runs: int = 2,
                   power_runs: int = 5, log: Callable[[str], None] = lambda s: None
                   ) -> dict[str, Any]:
    """Measure false alarms and power; returns the numbers and a printable summary."""
    if aa_runs < 1 or power_runs < 1:
        raise UsageError(f"--aa-runs and --power-runs: expected >= 1, got {aa_runs}, "
                         f"{power_runs}")
    start = time.monotonic()
    verdicts: Counter = Counter()
    hard_false, time_false, aa_ratios = [], [], []
    for run in range(aa_runs):
        log(f"self-check: A/A run {run + 1}/{aa_runs}")
        side = SideSpec("base", root, (), "this tree")
        outcome = compare_sides(side, replace(side, label="head"), preset, settings, log=log)
        for f in outcome.findings:
            if f.kind == "time":
                verdicts[f.verdict] += 1
                aa_ratios.append(f.ratio)
                if f.verdict in ("regressed", "improved"):
                    time_false.append(f"{f.case}: {f.verdict}: {f.detail}")
            elif f.kind in ("memory", "correctness") and f.verdict != "unchanged":
                hard_false.append(f"{f.kind} {f.verdict}: {f.case}: {f.detail}")
    comparisons = sum(verdicts.values())
    false_alarms = verdicts["regressed"] + verdicts["improved"]

    probe = replace(settings, variants=(PROBE,), structural="off")
    caught, slow_ratios = 0, []
    for trial in range(power_runs):
        log(f"self-check: 1.3x slowdown, run {trial + 1}/{power_runs}")
        base, head = _probe_sides(root, "gate_slow")
        outcome = compare_sides(base, head, preset, replace(probe, kinds=("time",)))
        timed = [f for f in outcome.findings if f.kind == "time"]
        caught += sum(f.verdict == "regressed" for f in timed)
        slow_ratios += [f.ratio for f in timed]
    hard = {}
    for fault, kind in (("gate_memory", "memory"), ("gate_wrong", "correctness")):
        log(f"self-check: injected {kind} fault")
        outcome = compare_sides(*_probe_sides(root, fault), preset, replace(probe, kinds=(kind,)))
        hits = [f for f in outcome.findings if f.kind == kind and f.fails_gate]
        hard[kind] = {"caught": bool(hits) and exit_code(outcome.findings) == 1,
                      "cases": len([f for f in outcome.findings if f.kind == kind]),
                      "failing": len(hits), "example": hits[0].detail if hits else ""}

    trials = len(slow_ratios)
    rate = false_alarms / comparisons if comparisons else 1.0
    power = caught / trials if trials else 0.0
    targets = {"false_alarm_rate": rate <= MAX_FALSE_ALARM_RATE and not hard_false,
               "aa_comparisons": comparisons >= MIN_AA_COMPARISONS,
               "slowdown_power": power >= MIN_POWER,
               "memory_caught": hard["memory"]["caught"],
               "correctness_caught": hard["correctness"]["caught"]}
    result = {
        "preset": preset.name, "threshold": settings.policy.threshold,
        "alpha": settings.policy.alpha, "wall_s": round(time.monotonic() - start, 1),
        "aa": {"runs": aa_runs, "comparisons": comparisons, "verdicts": dict(verdicts),
               "false_alarms": false_alarms, "rate": rate,
               "rate_upper_95": upper_bound(false_alarms, comparisons),
               "time_false_alarms": time_false, "hard_false_alarms": hard_false,
               "ratio_min": min(aa_ratios, default=None),
               "ratio_max": max(aa_ratios, default=None)},
        "slowdown": {"trials": trials, "caught": caught, "rate": power,
                     "median_ratio": statistics.median(slow_ratios) if slow_ratios else None,
                     "ratio_min": min(slow_ratios, default=None)},
        "memory": hard["memory"], "correctness": hard["correctness"],
        "targets": targets, "targets_met": all(targets.values()),
    }
    result["summary"] = summarize(result)
    return result


def summarize(r: dict[str, Any]) -> str:
    aa, slow = r["aa"], r["slowdown"]
    ok = {True: "met", False: "NOT met"}
    return "\n".join([
        f"gate self-check, preset {r['preset']} (threshold {r['threshold']:.0%}, "
        f"alpha {r['alpha']}), {r['wall_s']:.0f} s",
        f"- A/A: {aa['false_alarms']} false alarm(s) in {aa['comparisons']} time comparisons "
        f"over {aa['runs']} run(s): rate {aa['rate']:.1%} (95% upper bound "
        f"{aa['rate_upper_95']:.1%}); verdicts {aa['verdicts']}; ratios "
        f"{_num(aa['ratio_min'])}-{_num(aa['ratio_max'])}; hard-gate false alarms "
        f"{len(aa['hard_false_alarms'])} [target <= 1 % over >= 20: "
        f"{ok[r['targets']['false_alarm_rate'] and r['targets']['aa_comparisons']]}]",
        f"- injected slowdown (median measured ratio {_num(slow['median_ratio'])}, min "
        f"{_num(slow['ratio_min'])}): caught in {slow['caught']}/{slow['trials']} trials = "
        f"{slow['rate']:.0%} [target >= 95 %: {ok[r['targets']['slowdown_power']]}]",
        f"- injected memory regression: {'caught' if r['memory']['caught'] else 'MISSED'} "
        f"({r['memory']['failing']}/{r['memory']['cases']} cases; {r['memory']['example']})",
        f"- injected correctness break: {'caught' if r['correctness']['caught'] else 'MISSED'} "
        f"({r['correctness']['failing']}/{r['correctness']['cases']} cases)",
    ])


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def write_self_check(result: dict[str, Any], out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "selfcheck.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path
