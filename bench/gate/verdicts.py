"""Turning measurements into findings: one verdict per case and kind, and the gate's exit code.

Kinds and what fails the gate:
    correctness  hard: a check that newly fails, or an error ratio that crosses its bound
    memory       hard: peak bytes grew by more than max(5 %, 256 KiB) at the same shape, dtype
                 and library versions
    time         statistical: ratio above the threshold AND interval above 1 AND rank test
                 significant, confirmed by a second, longer measurement
    structural   properties that hold on any machine (memory scaling exponents, SDPA beating
                 naive at large N): a warning unless the gate is told to treat them as errors

Verdicts: "regressed", "improved", "unchanged", "inconclusive" for every kind; correctness
adds "failing" (fails on both sides: not new, so not this change's fault); structural uses
"passed" / "warning" / "failed".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from attnbench.gate.stats import Comparison

FindingKind = Literal["time", "memory", "correctness", "structural"]
KINDS: tuple[str, ...] = ("correctness", "memory", "time", "structural")  # most serious first
MEMORY_REL, MEMORY_ABS = 0.05, 256 * 1024


@dataclass
class GateFinding:
    """One line of the gate's verdict. The first nine keys are the JSON contract with the report
    (``attnbench report --gate``); ``fails_gate`` says whether this line alone fails the gate."""

    case: str
    variant: str
    kind: FindingKind
    verdict: str
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    detail: str = ""
    fails_gate: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("ratio", "ci_low", "ci_high", "p_value"):
            value = out[key]
            out[key] = None if value is None or not math.isfinite(value) else float(value)
        return out


@dataclass(frozen=True)
class TimePolicy:
    """When a timing difference counts. The defaults keep A/A false alarms under 1 % while
    catching a 30 % slowdown (measured by ``attnbench gate --self-check``)."""

    threshold: float = 0.10  # a regression is a median ratio above 1 + threshold
    alpha: float = 0.01  # rank-test significance level
    confidence: float = 0.95  # bootstrap interval
    min_samples: int = 5  # fewer samples per side: inconclusive, whatever the numbers say

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 10:
            raise ValueError(f"threshold: expected a fraction in (0, 10), got {self.threshold}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha: expected a number in (0, 1), got {self.alpha}")
        if self.min_samples < 2:
            raise ValueError(f"min_samples: expected at least 2, got {self.min_samples}")


def time_verdict(c: Comparison, policy: TimePolicy) -> str:
    """regressed / improved need effect size, interval and rank test to agree; unchanged needs
    the whole interval inside the +-threshold band; anything else is inconclusive."""
    slow, fast = 1 + policy.threshold, 1 / (1 + policy.threshold)
    if min(c.n_base, c.n_head) < policy.min_samples:
        return "inconclusive"
    if c.ratio > slow and c.ci_low > 1 and c.p_slower < policy.alpha:
        return "regressed"
    if c.ratio < fast and c.ci_high < 1 and c.p_faster < policy.alpha:
        return "improved"
    if fast <= c.ci_low and c.ci_high <= slow:
        return "unchanged"
    return "inconclusive"


def needs_confirmation(verdict: str, c: Comparison) -> bool:
    """Cases that may be regressions get a second, longer measurement before the verdict."""
    return verdict == "regressed" or (verdict == "inconclusive" and c.ratio > 1)


def confirmed_verdict(screen: Comparison, confirm: Comparison, policy: TimePolicy) -> str:
    """The verdict of a re-measured case. The confirmation (fresh processes, more samples)
    decides, but "regressed" also needs the screen's median above the threshold: a slowdown
    must show in both independent pairs of processes. One pair alone can be off by ~10 % for
    its whole life (A/A measured 1 false alarm in 100 comparisons when the confirmation
    decided alone)."""
    verdict = time_verdict(confirm, policy)
    if verdict == "regressed" and screen.ratio <= 1 + policy.threshold:
        return "inconclusive"
    return verdict


def time_finding(case: str, variant: str, c: Comparison, policy: TimePolicy,
                 detail: str = "", verdict: str | None = None) -> GateFinding:
    """A time finding from one comparison (``verdict`` overrides the one-comparison verdict)."""
    verdict = verdict or time_verdict(c, policy)
    p = c.p_faster if verdict == "improved" else c.p_slower
    words = (f"median {c.ratio:.3f}x (95% CI {c.ci_low:.3f}-{c.ci_high:.3f}), "
             f"rank test p={p:.2g}, n={c.n_base}+{c.n_head}")
    if min(c.n_base, c.n_head) < policy.min_samples:
        words += f"; fewer than {policy.min_samples} samples per side"
    return GateFinding(case, variant, "time", verdict, c.ratio, c.ci_low, c.ci_high, p,
                       "; ".join(x for x in (words, detail) if x),
                       fails_gate=verdict == "regressed")


def memory_finding(case: str, variant: str, base_bytes: float, head_bytes: float, *,
                   rel: float = MEMORY_REL, abs_bytes: float = MEMORY_ABS) -> GateFinding:
    """Allocator-level peaks are deterministic for the same code and libraries, so a fixed
    margin suffices: max(rel * base, abs_bytes), the absolute floor absorbing allocator slack
    on tiny cases."""
    margin = max(rel * base_bytes, abs_bytes)
    delta = head_bytes - base_bytes
    verdict = "regressed" if delta > margin else "improved" if -delta > margin else "unchanged"
    ratio = head_bytes / base_bytes if base_bytes > 0 else math.inf if head_bytes else 1.0
    detail = (f"peak {_mib(base_bytes)} -> {_mib(head_bytes)} ({delta / 2**20:+.2f} MiB; "
              f"margin {_mib(margin)})")
    return GateFinding(case, variant, "memory", verdict, ratio, detail=detail,
                       fails_gate=verdict == "regressed")


def _mib(value: float) -> str:
    return f"{value / 2**20:.2f} MiB"


@dataclass(frozen=True)
class GateCheck:
    """One side's correctness outcome for a case: passed, and the error ratio against its bound
    (ratio <= bound passes; None when the check has no ratio)."""

    passed: bool
    error_ratio: float | None = None
    bound: float | None = None
    reason: str = ""


def correctness_finding(case: str, variant: str, base: GateCheck | None,
                        head: GateCheck) -> GateFinding:
    """Hard gate. A check that fails on head but passed (or did not exist) on base regressed;
    failing on both is reported as "failing" without failing the gate: it is not this
    change's doing, and a gate that blocks every change until an old bug is fixed gets
    switched off."""
    ratio, bound = head.error_ratio, head.bound
    numbers = (f"error ratio {_num(base.error_ratio if base else None)} -> {_num(ratio)}"
               f" (bound {_num(bound)})")
    if not head.passed:
        verdict = "failing" if base is not None and not base.passed else "regressed"
        detail = f"{numbers}; {head.reason or 'check failed'}"
    elif base is not None and not base.passed:
        verdict, detail = "improved", f"{numbers}; fixed (base: {base.reason or 'failed'})"
    else:
        verdict, detail = "unchanged", numbers
    return GateFinding(case, variant, "correctness", verdict, ratio, detail=detail,
                       fails_gate=verdict == "regressed")


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def structural_finding(case: str, variant: str, holds: bool, detail: str, *, ratio=None,
                       ci_low=None, ci_high=None, as_error: bool = False) -> GateFinding:
    verdict = "passed" if holds else "failed" if as_error else "warning"
    return GateFinding(case, variant, "structural", verdict, ratio, ci_low, ci_high,
                       detail=detail, fails_gate=verdict == "failed")


# Order of verdicts within a kind, worst first, for the summary a person reads top down.
_VERDICT_RANK = {"regressed": 0, "failed": 0, "failing": 1, "warning": 2, "inconclusive": 3,
                 "improved": 4, "unchanged": 5, "passed": 5}


def worst_first(findings: list[GateFinding]) -> list[GateFinding]:
    """Gate failures first, then by verdict, kind, and the size of the change."""
    def key(f: GateFinding) -> tuple:
        size = -(f.ratio if f.ratio is not None and math.isfinite(f.ratio) else 0.0)
        return (not f.fails_gate, _VERDICT_RANK.get(f.verdict, 3), KINDS.index(f.kind), size,
                f.case, f.variant)
    return sorted(findings, key=key)


def exit_code(findings: list[GateFinding]) -> int:
    """0 pass, 1 at least one finding fails the gate. (2, usage or environment errors, is
    decided before there are findings.)"""
    return 1 if any(f.fails_gate for f in findings) else 0
