"""What every check returns: one ``CheckResult`` per (check, variant, case)."""

from __future__ import annotations

import traceback
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from attnbench.case_ids import verify_case_id
from attnbench.variants.registry import Case, dtype_name
from attnbench.verify.tolerance import Agreement

Status = Literal["ok", "skipped", "error"]
Direction = Literal["fwd", "grad"]


@dataclass
class CheckResult:
    """The outcome of one check on one variant and case.

    ``value`` is the check's measured number and ``bound`` the largest passing value: for the
    tolerance rule both are error ratios (max|out-ref| / max|pt-ref|); each property documents
    its own. ``status`` is "ok" when the check ran (then ``passed`` says how it went),
    "skipped" with the reason in ``message``, or "error" when it raised (a failure).
    """

    check: str
    variant: str
    case: str
    dtype: str
    status: Status
    passed: bool | None
    value: float | None = None
    bound: float | None = None
    direction: Direction = "fwd"
    message: str = ""
    agreements: list[Agreement] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the attention inside a block

    @property
    def failed(self) -> bool:
        return self.status == "error" or self.passed is False

    def case_id(self, repeat: int = 1) -> str:
        """The shared grammar's id (``attnbench.case_ids``), e.g.
        ``verify.grad:sdpa:B1-H4/2-N70-D32-float32-cpu-causal:fwd+bwd``; ``repeat`` numbers
        further results under the same id in one run."""
        return verify_case_id(self.check, self.variant, self.case, self.direction,
                              self.extra.get("attention", ""), repeat)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["agreements"] = [{"quantity": a.quantity, "error": a.error, "ratio": a.ratio,
                              "ratio_bound": a.ratio_bound, "pt_error": a.budget.pt_error,
                              "floor": a.budget.floor, "C": a.budget.C, "passed": a.passed}
                             for a in self.agreements]
        return out


def skipped(check: str, variant: str, case: Case, reasons: list[str] | str,
            direction: Direction = "fwd") -> CheckResult:
    message = reasons if isinstance(reasons, str) else "; ".join(reasons)
    return CheckResult(check, variant, case.label(), dtype_name(case.dtype), "skipped", None,
                       direction=direction, message=message)


def raised(check: str, variant: str, case: Case, exc: BaseException,
           direction: Direction = "fwd") -> CheckResult:
    """A check that raised is a failure, recorded with the exception and where it came from."""
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {frame[0].filename}:{frame[0].lineno}" if frame else ""
    return CheckResult(check, variant, case.label(), dtype_name(case.dtype), "error", False,
                       direction=direction, message=f"raised {type(exc).__name__}: {exc}{where}")


def _summary(agreements: list[Agreement], extra_message: str = ""
             ) -> tuple[bool, float, float, str]:
    """passed, value, bound, message: value/bound are those of the quantity nearest failing."""
    worst = max(agreements, key=lambda a: a.closeness)
    shown = [a for a in agreements if not a.passed] or [worst]
    message = "; ".join([a.describe() for a in shown] + ([extra_message] if extra_message else []))
    return all(a.passed for a in agreements), worst.ratio, worst.ratio_bound, message


def from_agreements(check: str, variant: str, case: Case, agreements: list[Agreement],
                    direction: Direction = "fwd", extra_message: str = "") -> CheckResult:
    """Pass when every quantity passes."""
    passed, value, bound, message = _summary(agreements, extra_message)
    return CheckResult(check, variant, case.label(), dtype_name(case.dtype), "ok", passed,
                       value=value, bound=bound, direction=direction, message=message,
                       agreements=agreements)


def merge(results: list[CheckResult]) -> CheckResult:
    """One result from several runs of the same check on the same case (forward and backward):
    skipped only if all were, an error if any raised, passed only if all passed."""
    ran = [r for r in results if r.status != "skipped"]
    if not ran:
        return results[0]
    errors = [r for r in ran if r.status == "error"]
    if errors:
        return errors[0]
    notes = list(dict.fromkeys(r.extra["masked_rows"] for r in ran if "masked_rows" in r.extra))
    agreements = [a for r in ran for a in r.agreements]
    passed, value, bound, message = _summary(agreements, "; ".join(notes))
    return replace(ran[0], passed=passed and all(r.passed for r in ran), value=value,
                   bound=bound, direction=ran[-1].direction, message=message,
                   agreements=agreements, extra=dict(ran[0].extra))
