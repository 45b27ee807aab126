"""The FlashAttention tolerance rule, as numbers rather than a pass/fail bit.

A variant's result ``out`` is compared with ``ref`` (float64, cast to ``out``'s dtype, as
FlashAttention's own tests do) and with ``pt``, the textbook implementation run entirely in the
test dtype. The rule (docs/methods.md, "Tolerance rule"):

    max|out - ref|  <=  C * max|pt - ref|  +  floor,     floor = 2 * max|(ref + 0.3) - 0.3 - ref|

C = 2 for outputs and the log-sum-exp, 3 for gradients. ``max|pt - ref|`` is what plain
arithmetic in that dtype gets wrong on this very input, so the rule scales itself with dtype,
reduction length and data; the floor is the dtype's rounding noise near the data and only
matters when ``pt`` happens to be exact. Besides pass/fail we keep the ratio
``max|out - ref| / max|pt - ref|`` ("1.3 times the textbook error"), which is what a person
compares across variants and dtypes.

Two refinements, both measured necessary on small problems (see ``bench.verify.textbook``):
``pt`` is the worse of two textbook formulations (FlashAttention's own ``reorder_ops`` idea),
and the floor is at least ``eps(dtype) * max sum|terms|`` (``reference.term_magnitudes``), the
rounding noise of the sums that produce each entry. The latter matters where a result cancels
to ~0 (dq, dk with S = 1 are exactly 0) and the plain floor, built from ``ref`` alone, is 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

C_OUTPUT = 2.0  # outputs and log-sum-exp
C_GRAD = 3.0  # dq, dk, dv, and every gradient of a block


def rounding_floor(ref: torch.Tensor, dtype: torch.dtype) -> float:
    """2 * max|(ref + 0.3) - 0.3 - ref| computed in ``dtype``: its rounding noise near the data."""
    r = ref.to(dtype)
    r = r[torch.isfinite(r)]
    if r.numel() == 0:
        return 0.0
    return 2.0 * ((r + 0.3) - 0.3 - r).abs().max().item()


@dataclass(frozen=True)
class Budget:
    """How much error the rule allows: C * pt_error + floor (sums of budgets add up)."""

    pt_error: float
    floor: float
    C: float

    @property
    def allowed(self) -> float:
        return self.C * self.pt_error + self.floor

    def ratio(self, error: float) -> float:
        """error / pt_error; 0 when both are 0, inf when only pt was exact."""
        if self.pt_error > 0:
            return error / self.pt_error
        return 0.0 if error == 0 else math.inf

    @property
    def ratio_bound(self) -> float:
        """The largest passing ratio: C + floor / pt_error."""
        return self.C + self.floor / self.pt_error if self.pt_error > 0 else math.inf

    def __add__(self, other: Budget) -> Budget:
        return Budget(self.pt_error + other.pt_error, self.floor + other.floor,
                      max(self.C, other.C))


@dataclass(frozen=True)
class Agreement:
    """One compared quantity (out, lse, dq, ...): measured error against its budget."""

    quantity: str
    error: float  # max|out - ref| over the compared entries; inf if any is not finite
    budget: Budget
    note: str = ""

    @property
    def passed(self) -> bool:
        return math.isfinite(self.error) and self.error <= self.budget.allowed

    @property
    def ratio(self) -> float:
        return self.budget.ratio(self.error)

    @property
    def ratio_bound(self) -> float:
        return self.budget.ratio_bound

    @property
    def closeness(self) -> float:
        """error / allowed: how near to failing (> 1 fails). Picks the worst quantity."""
        if not math.isfinite(self.error):
            return math.inf
        allowed = self.budget.allowed
        return self.error / allowed if allowed > 0 else (0.0 if self.error == 0 else math.inf)

    def describe(self) -> str:
        verdict = "ok" if self.passed else "FAIL"
        note = f" ({self.note})" if self.note else ""
        return (f"{self.quantity}: {verdict} max|err|={self.error:.3g} vs "
                f"{self.budget.C:g}*{self.budget.pt_error:.3g}+{self.budget.floor:.3g} "
                f"(ratio {self.ratio:.3g}, bound {self.ratio_bound:.3g}){note}")


def max_abs_diff(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor | None = None) -> float:
    """max|a - b| in float64 over the selected entries; inf if ``a`` is not finite there."""
    diff = a.double() - b.double()
    if where is not None:
        diff = diff[where.expand_as(diff)]
    if diff.numel() == 0:
        return 0.0
    if not torch.isfinite(diff).all():
        return math.inf
    return diff.abs().max().item()


def _selected(where: torch.Tensor | None, ref: torch.Tensor) -> torch.Tensor:
    keep = where if where is not None else torch.ones((), dtype=torch.bool, device=ref.device)
    return keep.expand_as(ref)


def budget(ref: torch.Tensor, pts: list[torch.Tensor], C: float, dtype: torch.dtype,
           where: torch.Tensor | None = None, magnitude: torch.Tensor | None = None,
           eps_dtype: torch.dtype | None = None) -> tuple[Budget, str]:
    """The rule's allowance for results in ``dtype``: C * (largest textbook error) + floor.

    ``pts`` are the textbook results; ``where`` (broadcastable) selects the entries that count;
    ``magnitude`` is sum|terms| per entry, raising the floor to eps * magnitude where results
    cancel; eps is that of ``eps_dtype`` (default ``dtype``; the lse, a float32 result, is made
    of logits rounded in the input dtype). Returns the budget and a note when a textbook itself
    overflowed somewhere (those entries are ignored).
    """
    ref_d, keep = ref.to(dtype).double(), _selected(where, ref)
    pt_error, bad = 0.0, 0
    for pt in pts:
        diff = (pt.double() - ref_d)[keep]
        finite = torch.isfinite(diff)
        bad += int((~finite).sum())
        if finite.any():
            pt_error = max(pt_error, diff[finite].abs().max().item())
    floor = rounding_floor(ref[keep], dtype)
    if magnitude is not None and keep.any():
        eps = torch.finfo(eps_dtype or dtype).eps
        floor = max(floor, eps * magnitude.expand_as(ref)[keep].max().item())
    return Budget(pt_error, floor, C), (f"textbook not finite at {bad} entries" if bad else "")


def compare(quantity: str, out: torch.Tensor | None, ref: torch.Tensor,
            pts: list[torch.Tensor], C: float, where: torch.Tensor | None = None,
            magnitude: torch.Tensor | None = None, eps_dtype: torch.dtype | None = None
            ) -> Agreement:
    """Apply the rule to one quantity (entries outside ``where`` are not compared: fully masked
    rows are judged by declared semantics elsewhere). ``out=None`` (a gradient autograd never
    produced, e.g. a detached input) counts as all zeros."""
    if out is None:
        out = torch.zeros(ref.shape, dtype=pts[0].dtype, device=ref.device)
    if out.shape != ref.shape:
        raise ValueError(f"{quantity}: shape {tuple(out.shape)}, expected {tuple(ref.shape)}")
    allowance, note = budget(ref, pts, C, out.dtype, where, magnitude, eps_dtype)
    error = max_abs_diff(out, ref.to(out.dtype), _selected(where, ref))
    return Agreement(quantity, error, allowance, note)
