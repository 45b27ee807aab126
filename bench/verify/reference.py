"""Inputs, the float64 reference, the textbook ``pt`` and one way to call any variant.

Every check in this package is built from four pieces:
    make_inputs(case, seed)        random q, k, v (and mask, dO) in the test dtype
    reference(inputs, ...)         float64 attention, log-sum-exp and gradients
    textbook(inputs, ...)          ``naive`` run in the test dtype: the rule's ``pt``
    run_variant(variant, inputs)   the variant under test, forward and optionally backward

The reference is computed from the *rounded* test-dtype inputs upcast to float64, so it is the
exact answer for the numbers the variant actually received. Its fully masked rows (no visible
key) are 0 with 0 gradient; which rows those are is returned, so each variant can be held to
its own declared semantics there (``Capabilities.fully_masked_rows``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from attnbench.variants.common import default_scale, expand_kv, visible_mask
from attnbench.variants.patterns import Pattern, pattern_kwargs
from attnbench.variants.registry import Case, Variant
from attnbench.verify import contract

Grads = tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]  # dq, dk, dv


@dataclass(frozen=True)
class Inputs:
    """One attention call's arguments, plus the output gradient dO for backward checks."""

    q: torch.Tensor  # (B, Hq, N, D)
    k: torch.Tensor  # (B, Hkv, S, D)
    v: torch.Tensor  # (B, Hkv, S, Dv)
    causal: bool = False
    scale: float | None = None
    attn_mask: torch.Tensor | None = None  # bool, broadcastable to (B, Hq, N, S)
    dout: torch.Tensor | None = None  # (B, Hq, N, Dv)
    pattern: Pattern | None = None  # an attention pattern, as each variant supports it

    def kwargs(self, variant: Variant | None = None) -> dict[str, Any]:
        """The call's keyword arguments; with a pattern, as ``variant`` takes it (natively or
        as a dense mask: ``patterns.pattern_kwargs``)."""
        out = {"causal": self.causal, "scale": self.scale, "attn_mask": self.attn_mask}
        if self.pattern is not None:
            if variant is None:
                raise ValueError("Inputs.kwargs: a pattern needs the variant it is for")
            B, Hq, N, _ = self.q.shape
            out.update(pattern_kwargs(variant, self.pattern, B, Hq, N, self.k.shape[2],
                                      self.q.device))
        return out

    def replace(self, **changes: Any) -> Inputs:
        return replace(self, **changes)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) % 2**63)


def randn(shape: tuple[int, ...], dtype: torch.dtype, device: str | torch.device,
          gen: torch.Generator) -> torch.Tensor:
    """Standard normal drawn on the CPU in float64 (the same numbers on every device), then cast."""
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).to(device)


def make_inputs(case: Case, seed: int, *, scale: float | None = None,
                density: float = 0.7) -> Inputs:
    """Random inputs for ``case``; never zeros. A random mask keeps key 0 visible to every row,
    so a row is fully masked only where the causal alignment itself hides every key."""
    gen = generator(seed)
    B, Hq, Hkv, N, S, D, Dv = case.B, case.Hq, case.hkv, case.N, case.s, case.D, case.dv
    q = randn((B, Hq, N, D), case.dtype, case.device, gen)
    k = randn((B, Hkv, S, D), case.dtype, case.device, gen)
    v = randn((B, Hkv, S, Dv), case.dtype, case.device, gen)
    mask = None
    if case.mask:
        mask = torch.rand((B, 1, N, S), generator=gen) < density  # broadcast over heads
        mask[..., 0] = True
        mask = mask.to(case.device)
    dout = randn((B, Hq, N, Dv), case.dtype, case.device, gen) if case.backward else None
    return Inputs(q, k, v, causal=case.causal, scale=scale, attn_mask=mask, dout=dout,
                  pattern=case.pattern)


def _probabilities(q: torch.Tensor, k: torch.Tensor, *, causal: bool, scale: float | None,
                   attn_mask: torch.Tensor | None, alignment: str,
                   pattern: Pattern | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float64 scores, softmax probabilities and lse; k already expanded to Hq heads. A
    pattern enters through its independent reference (``Pattern.reference_scores``)."""
    N, S = q.shape[-2], k.shape[-2]
    scores = (q @ k.transpose(-2, -1)) * default_scale(q.shape[-1], scale)  # (B, Hq, N, S)
    if pattern is not None:
        scores = pattern.reference_scores(scores)
    mask = visible_mask(N, S, causal=causal, attn_mask=attn_mask, device=q.device,
                        alignment=alignment)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # (B, Hq, N)
    safe = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    p = torch.exp(scores - safe.unsqueeze(-1))  # exactly 0 on fully masked rows
    return scores, p, lse


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                        causal: bool = False, scale: float | None = None,
                        attn_mask: torch.Tensor | None = None, alignment: str = "top_left",
                        pattern: Pattern | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention in float64, differentiable: returns (out (B, Hq, N, Dv), lse (B, Hq, N)).

    ``pattern`` is applied through its float64 reference (``Pattern.reference_scores``), not
    its mask_mod / score_mod, so a wrong definition disagrees with this. Fully masked rows give
    out 0 (and gradient 0) and lse -inf.
    """
    q, k, v = q.double(), k.double(), v.double()
    k, v = expand_kv(k, v, q.shape[1])  # (B, Hq, S, D)
    _, p, lse = _probabilities(q, k, causal=causal, scale=scale, attn_mask=attn_mask,
                               alignment=alignment, pattern=pattern)
    return p @ v, lse


def term_magnitudes(inputs: Inputs, alignment: str = "top_left", backward: bool = False
                    ) -> dict[str, torch.Tensor]:
    """For each result, the sum of the magnitudes of the terms it adds up, in float64, in units
    of the test dtype's eps (the floor of the rule is eps * this).

    Rounding each term once already costs up to eps * sum|terms|, whatever the order, so this
    is a noise floor every implementation shares, and unlike the plain floor it does not vanish
    where a result cancels to ~0: dq and dk are exactly 0 when S = 1, yet every kernel computes
    them from dO.v - rowsum(dO * O), a difference of rounded numbers. (Higham, "Accuracy and
    Stability of Numerical Algorithms", ch. 3.)

    Gradients carry one more term. Fused kernels recompute P = exp(S - lse) in the backward
    from logits computed again, so each logit is rounded twice (forward and backward), each
    time by up to eps_acc * sum_d |q_d k_d| * scale (eps_acc: float32, the accumulator of
    every kernel): P's relative error grows with |logit|. Measured: PyTorch's CPU flash
    backward in float32 has dv relative error 2e-3 at |logit| = 1e4 where the textbook's is 1e-7.
    """
    q, k, v = (t.double() for t in (inputs.q, inputs.k, inputs.v))
    B, Hq, _, D = q.shape
    groups = Hq // k.shape[1]
    ke, ve = expand_kv(k, v, Hq)  # (B, Hq, S, D)
    scores, p, lse = _probabilities(q, ke, causal=inputs.causal, scale=inputs.scale,
                                    attn_mask=inputs.attn_mask, alignment=alignment,
                                    pattern=inputs.pattern)
    scale = default_scale(D, inputs.scale)
    logit_terms = (q.abs() @ ke.abs().transpose(-2, -1)) * scale  # (B, Hq, N, S)
    # lse = max + log(sum): a logit rounded in the input dtype moves it by as much, and the
    # log term adds its own magnitude (up to log S)
    log_sum = torch.nan_to_num(lse - scores.amax(dim=-1), nan=0.0)  # (B, Hq, N)
    mags = {"out": p @ ve.abs(),
            "lse": torch.where(p > 0, logit_terms, 0.0).amax(dim=-1) + log_sum.abs()}
    if backward:
        dtype = inputs.q.dtype
        acc = torch.promote_types(dtype, torch.float32)
        w = 1 + 2 * (torch.finfo(acc).eps / torch.finfo(dtype).eps) * logit_terms
        dout = inputs.dout.double()
        dp = dout @ ve.transpose(-2, -1)  # (B, Hq, N, S)
        delta = (dout * (p @ ve)).sum(dim=-1, keepdim=True)  # (B, Hq, N, 1)
        t = p * (dp.abs() + delta.abs()) * w  # |dS| before cancellation
        S = ke.shape[2]
        mags["dq"] = (t @ ke.abs()) * scale
        mags["dk"] = ((t.transpose(-2, -1) @ q.abs()) * scale).view(B, -1, groups, S, D).sum(2)
        mags["dv"] = ((p * w).transpose(-2, -1) @ dout.abs()).view(
            B, -1, groups, S, ve.shape[-1]).sum(2)  # (B, Hkv, S, Dv)
    return mags


@dataclass
class Reference:
    out: torch.Tensor  # float64 (B, Hq, N, Dv)
    lse: torch.Tensor  # float64 (B, Hq, N)
    live: torch.Tensor  # bool (B, Hq, N, 1): rows that see at least one key
    grads: Grads | None
    magnitudes: dict[str, torch.Tensor]  # per result: sum of |terms| (noise floor scale)


def _leaves(inputs: Inputs, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """q, k, v as fresh autograd leaves; detach() keeps a view's strides (non-contiguous tests)."""
    return [(t.detach() if dtype is None else t.detach().to(dtype)).requires_grad_(True)
            for t in (inputs.q, inputs.k, inputs.v)]


def reference(inputs: Inputs, *, alignment: str = "top_left", backward: bool = False
              ) -> Reference:
    with torch.enable_grad():
        q, k, v = _leaves(inputs, torch.float64)
        out, lse = reference_attention(q, k, v, **_plain(inputs), pattern=inputs.pattern,
                                       alignment=alignment)
        grads = None
        if backward:
            grads = tuple(torch.autograd.grad(out, (q, k, v), inputs.dout.double()))
    live = torch.isfinite(lse).unsqueeze(-1)
    return Reference(out.detach(), lse.detach(), live, grads,
                     term_magnitudes(inputs, alignment, backward))


def _plain(inputs: Inputs) -> dict[str, Any]:
    return {"causal": inputs.causal, "scale": inputs.scale, "attn_mask": inputs.attn_mask}


def poison_free_memory(inputs: Inputs, backward: bool) -> None:
    """Best effort: fill and free blocks the size of the coming outputs, so an output buffer a
    kernel forgets to write holds NaN (the CUDA caching allocator and malloc reuse such blocks)
    instead of zeros that could pass for a result."""
    q, k, v = inputs.q, inputs.k, inputs.v
    shapes = [(*q.shape[:3], v.shape[-1])] + ([q.shape, k.shape, v.shape] if backward else [])
    for shape in shapes:  # (B, Hq, N, Dv), then dq, dk, dv
        torch.full(shape, float("nan"), dtype=q.dtype, device=q.device)


def run_variant(variant: Variant, inputs: Inputs, *, backward: bool = False,
                poison: bool = True) -> tuple[torch.Tensor, Grads | None]:
    """Call ``variant`` through the registry (inputs validated); gradients by autograd.grad, so
    nothing accumulates into stale ``.grad`` buffers. A gradient autograd never produced (a
    detached input) is returned as None. Raises ``ContractViolation`` when the output or a
    gradient has the wrong shape, dtype or device (``attnbench.verify.contract``)."""
    if poison:
        poison_free_memory(inputs, backward)
    if not backward:
        with torch.no_grad():
            out = variant(inputs.q, inputs.k, inputs.v, **inputs.kwargs(variant))
        contract.require(variant.name, inputs.q, inputs.k, inputs.v, out)
        return out, None
    with torch.enable_grad():
        q, k, v = _leaves(inputs)
        out = variant(q, k, v, **inputs.kwargs(variant))
        contract.require(variant.name, q, k, v, out)  # before autograd trips over it
        grads = torch.autograd.grad(out, (q, k, v), inputs.dout, allow_unused=True)
    contract.require(variant.name, q, k, v, out, grads)
    return out.detach(), tuple(grads)
