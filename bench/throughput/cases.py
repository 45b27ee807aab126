"""One benchmark case as plain data, its stable id, its table columns, and the call it times.

A ``BenchCase`` is what the parent process enumerates, filters, skips and sends to the worker;
it pickles, so it crosses the process boundary unchanged. ``make_call`` turns it into a
zero-argument callable that runs exactly the timed work of its mode:

    fwd      forward on inputs that do not require grad (inference)
    bwd      torch.autograd.grad through a forward graph built once, outside the timed call
    fwd+bwd  forward with grad, then torch.autograd.grad (grads are returned, not accumulated)

The regression gate reuses ``make_call`` with ``timing.time_callable`` to interleave A/B runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import torch
from attnbench.case_ids import case_id, subject
from attnbench.variants.registry import Case, get, parse_dtype

if TYPE_CHECKING:
    from attnbench.variants.patterns import Pattern

Mode = Literal["fwd", "bwd", "fwd+bwd"]
MODES: tuple[Mode, ...] = ("fwd", "bwd", "fwd+bwd")
BLOCK_MODES: tuple[Mode, ...] = ("fwd", "fwd+bwd")
# "full": time, memory and accuracy. "memory": peak memory only (the scaling fit's wide N range).
# "accuracy": error ratio only (interpreted Triton is never timed).
Measure = Literal["full", "memory", "accuracy"]


@dataclass(frozen=True)
class BenchCase:
    """An attention case (``kind="attention"``) or a block case (``kind="block"``, where
    ``attention`` is the variant inside the block and Hq = n_heads, D = d_model // n_heads)."""

    kind: Literal["attention", "block"]
    attention: str
    B: int
    Hq: int
    Hkv: int
    N: int
    S: int
    D: int
    Dv: int
    dtype: str  # canonical torch name: float32, bfloat16, ...
    causal: bool
    mode: Mode
    device: str
    preset: str = ""
    block: str | None = None
    d_model: int | None = None
    measure: Measure = "full"
    # An attention pattern's text (attnbench.variants.patterns), e.g. "sliding_window:window=256";
    # kept as text so the case pickles to the worker and its columns stay plain values.
    pattern: str | None = None

    @property
    def variant(self) -> str:
        """The name in the table's ``variant`` column: the attention variant or the block."""
        return self.block if self.kind == "block" else self.attention

    @property
    def torch_dtype(self) -> torch.dtype:
        return parse_dtype(self.dtype)

    @property
    def attention_pattern(self) -> Pattern | None:
        if not self.pattern:
            return None
        # imported here: the gate's worker runs this module against trees (bases) that may
        # predate attention patterns, and plain cases must not need them
        from attnbench.variants.patterns import parse_pattern

        return parse_pattern(self.pattern)

    def registry_case(self) -> Case:
        """The registry's view of this attention problem, for ``not_supported_reasons``; its
        label (the case id's shape part) ends with the pattern's id when there is one."""
        pattern = {"pattern": self.attention_pattern} if self.pattern else {}
        return Case(B=self.B, Hq=self.Hq, Hkv=self.Hkv, N=self.N, S=self.S, D=self.D,
                    Dv=self.Dv, dtype=self.torch_dtype, device=self.device, causal=self.causal,
                    backward=self.mode != "fwd", **pattern)

    @property
    def case_id(self) -> str:
        """The shared grammar's id (``attnbench.case_ids``); the mode says "backward"."""
        shape = self.registry_case().id_shape(self.d_model).label()
        if self.kind == "block":
            return case_id("block", subject(self.block, self.attention), shape, self.mode)
        kind = "attention" if self.measure == "full" else self.measure
        return case_id(kind, self.attention, shape, self.mode)

    def columns(self) -> dict[str, Any]:
        """The case's parameters as table columns (the metric vocabulary's names)."""
        cols = {k: v for k, v in asdict(self).items()
                if k not in ("block", "d_model", "attention")
                and not (k == "pattern" and v is None)}  # plain cases keep their columns
        if self.kind == "block":
            cols.update(block=self.block, attention=self.attention, d_model=self.d_model,
                        n_heads=self.Hq)
        return cols

    def attention_case(self) -> BenchCase:
        """The attention call inside a block case, alone (for the attention share)."""
        return replace(self, kind="attention", block=None, d_model=None)


def make_inputs(case: BenchCase, *, requires_grad: bool, seed: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded standard-normal q (B, Hq, N, D), k (B, Hkv, S, D), v (B, Hkv, S, Dv)."""
    gen = torch.Generator(device=case.device).manual_seed(seed)
    shapes = ((case.B, case.Hq, case.N, case.D), (case.B, case.Hkv, case.S, case.D),
              (case.B, case.Hkv, case.S, case.Dv))
    return tuple(torch.randn(s, generator=gen, device=case.device, dtype=case.torch_dtype)
                 .requires_grad_(requires_grad) for s in shapes)  # type: ignore[return-value]


def make_call(case: BenchCase, seed: int = 0, variant: Any = None) -> Callable[[], Any]:
    """The zero-argument callable timed for ``case`` (see the module docstring for modes).

    ``variant`` (default: the registered ``case.attention``) lets the regression gate time
    the same call with a variant object from the tree it measures. A pattern reaches the
    variant through ``pattern_kwargs`` (natively, or as a dense boolean mask built here, once,
    outside the timed call: an input like q, k and v), the one path every suite uses."""
    if case.kind == "block":
        from attnbench.throughput.blocks import make_block_call

        return make_block_call(case, seed)
    variant = variant if variant is not None else get(case.attention)
    q, k, v = make_inputs(case, requires_grad=case.mode != "fwd", seed=seed)
    extra: dict[str, Any] = {}
    if case.pattern:
        from attnbench.variants.patterns import pattern_kwargs

        extra = pattern_kwargs(variant, case.attention_pattern, case.B, case.Hq, case.N, case.S,
                               case.device)
    if case.mode == "fwd":
        return lambda: variant(q, k, v, causal=case.causal, **extra)
    gen = torch.Generator(device=case.device).manual_seed(seed + 1)
    grad_out = torch.randn((case.B, case.Hq, case.N, case.Dv), generator=gen,
                           device=case.device, dtype=case.torch_dtype)
    if case.mode == "fwd+bwd":
        def fwd_bwd() -> tuple[torch.Tensor, ...]:
            out = variant(q, k, v, causal=case.causal, **extra)
            return torch.autograd.grad(out, (q, k, v), grad_out)

        return fwd_bwd
    out = variant(q, k, v, causal=case.causal, **extra)  # the graph the timed backward walks
    return lambda: torch.autograd.grad(out, (q, k, v), grad_out, retain_graph=True)
