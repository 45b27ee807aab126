"""FlexAttention (``torch.nn.attention.flex_attention``) as the ``flex`` variant: any pattern.

``torch.compile(flex_attention)`` is the fused kernel, block-sparse through
``create_block_mask`` (a sliding window skips the key blocks it cannot see). Each new problem
(shape, dtype, pattern, options) compiles once: measured on this project's 2-core CPU machine,
8-22 s with a cold inductor cache and about 1 s with a warm one (on idle cores, verify's
problems took 5-7 s cold, the process's first 11 s); later calls take milliseconds. Most of it
is g++ building the kernel. The compile is static (``dynamic=False``), one kernel per shape.
``dynamic=True`` was tried (torch 2.13, CPU): one compile served a sliding window at N = 512 to
4096 with bitwise-equal outputs and the same speed, but the patterns preset's document and
causal+softcap cases failed to compile (``CppCompileError``; ``LoweringException:
unbacked_bindings``), and verify would gain nothing: its flex problems share one shape and
differ only in dtype and pattern.

Eager fallback: with ``ATTNBENCH_FLEX_EAGER=1``, or when the first compile of the process fails
(no compiler), ``flex`` calls ``flex_attention`` without ``torch.compile``: PyTorch then
evaluates the mods densely (~0.1 s per call at N = 64 on CPU, no compile). ``mode()`` says
which and why, and ``timeable`` declares the eager variant untimeable, so that no benchmark
times the fallback under the name ``flex``. A failure after a compile worked is raised. The
test suite runs ``flex`` eager (tests/conftest.py); tests/test_flex.py covers the compiled path.

Compile cost, apart from run time: every first call of a new problem is timed and logged.
``compile_log()`` returns ``{key: seconds}`` (the first call's wall time: compile plus one run;
the block mask is built before the timer); ``reset_compile_log()`` empties it. A benchmark
resets the log, runs its warm-up call and reads ``sum(compile_log().values())``. Keys are
``"<mode>:<dtype>:B.Hq/Hkv.N.S.D.Dv:<pattern id>:<options>"``.

Backward: with torch 2.13 FlexAttention's backward raises NotImplementedError on CPU (compiled
and eager), so backward is declared for CUDA only; a compiled log-sum-exp (``return_aux``) is
refused on CPU too, so the lse is declared for CUDA only. A compiled forward on CPU needs
inputs without ``requires_grad`` (benchmarks: ``no_grad`` and detached inputs).

``attnbench verify`` runs only ``out`` and ``pattern`` on ``flex`` by default, to bound compile
time (``default_checks``; ``--check NAME`` runs any other check compiled); the test suite runs
the whole plan on the same definitions eager.
"""

from __future__ import annotations

import os
import time
import warnings
from contextlib import nullcontext

import torch
from attnbench.variants.patterns import Pattern, PatternShape, get_pattern
from attnbench.variants.registry import register_attention

try:  # torch >= 2.5; AuxRequest (return_aux) >= 2.9, return_lse before
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
except ImportError as exc:  # registered anyway, unavailable with the reason
    _MISSING: str | None = f"torch {torch.__version__} has no FlexAttention ({exc})"
else:
    _MISSING = None
try:
    from torch.nn.attention.flex_attention import AuxRequest
except ImportError:
    AuxRequest = None

EAGER_ENV = "ATTNBENCH_FLEX_EAGER"
BLOCK_SIZE = 128  # FlexAttention's default sparse block (queries x keys)

_compiled = None  # torch.compile(flex_attention), built on first use
_compile_failure: str | None = None  # why the first compile failed (then flex runs eager)
_compile_worked = False  # a compiled call succeeded: later failures are errors, not fallbacks
_compile_log: dict[str, float] = {}
_mods: dict[tuple, tuple] = {}  # (pattern, shape, causal) -> (mask_mod, score_mod, block_mask)
_CAUSAL = get_pattern("causal")


def mode() -> tuple[str, str]:
    """("compiled", "") or ("eager", why) for the ``flex`` variant in this process."""
    if os.environ.get(EAGER_ENV, "") not in ("", "0"):
        return "eager", f"{EAGER_ENV} is set"
    if _compile_failure is not None:
        return "eager", f"torch.compile failed: {_compile_failure}"
    return "compiled", ""


def compile_log() -> dict[str, float]:
    """First-call seconds (compile + one run) per problem key, since the last reset."""
    return dict(_compile_log)


def reset_compile_log() -> None:
    _compile_log.clear()


def _available() -> str | None:
    return _MISSING


def _eager_reason() -> str | None:
    how, why = mode()
    return None if how == "compiled" else (
        f"flex runs eager here ({why}): its timings would measure the unfused fallback")


def _mods_for(pattern: Pattern | None, causal: bool, shape: PatternShape):
    """mask_mod, score_mod and block mask, cached so that a repeated problem reuses the same
    function objects (torch.compile guards on them: new closures would recompile)."""
    key = (pattern, shape, causal)
    if key not in _mods:
        if causal:
            pattern = _CAUSAL if pattern is None else Pattern(pattern.terms + _CAUSAL.terms)
        mask_mod = pattern.mask_mod(shape) if pattern is not None else None
        score_mod = pattern.score_mod(shape) if pattern is not None else None
        block = (create_block_mask(mask_mod, shape.B, shape.H, shape.N, shape.S,
                                   device=shape.device, BLOCK_SIZE=BLOCK_SIZE)
                 if mask_mod is not None else None)
        _mods[key] = (mask_mod, score_mod, block)
    return _mods[key]


def _dense_block_mask(attn_mask: torch.Tensor, shape: PatternShape, causal: bool):
    """A boolean attn_mask as a block mask (built per call: its contents are data)."""
    mask = attn_mask.expand(shape.B, shape.H, shape.N, shape.S)
    if causal:
        mask = mask & torch.ones(shape.N, shape.S, dtype=torch.bool, device=mask.device).tril()
    mask = mask.contiguous()

    def dense(b, h, q_idx, kv_idx):
        return mask[b, h, q_idx, kv_idx]
    return create_block_mask(dense, shape.B, shape.H, shape.N, shape.S, device=shape.device,
                             BLOCK_SIZE=BLOCK_SIZE)


def _recompile_limits():
    """Every problem is its own compiled graph: dynamo's default limit (8 per function) would
    silently run later problems eager, so it is lifted for these calls only."""
    config = torch._dynamo.config
    limits = {name: 1 << 20 for name in ("recompile_limit", "cache_size_limit",
                                         "accumulated_recompile_limit")
              if hasattr(config, name)}
    return config.patch(**limits) if limits else nullcontext()


def _call(q, k, v, *, causal, scale, attn_mask, pattern, return_lse):
    global _compiled, _compile_failure, _compile_worked
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    (B, Hq, N, D), S, Dv = q.shape, k.shape[2], v.shape[3]
    shape = PatternShape(B, Hq, N, S, str(q.device))
    if attn_mask is not None:
        mask_mod, score_mod, _ = _mods_for(pattern, False, shape)
        block = _dense_block_mask(attn_mask, shape, causal)
        if mask_mod is not None:  # a pattern that masks and an explicit mask: both hold
            raise ValueError("attention variant 'flex': pass a pattern or an attn_mask with "
                             "masks, not both")
    else:
        _, score_mod, block = _mods_for(pattern, causal, shape)
    kwargs = dict(score_mod=score_mod, block_mask=block, scale=scale,
                  enable_gqa=k.shape[1] != Hq)
    if return_lse and AuxRequest is not None:
        kwargs["return_aux"] = AuxRequest(lse=True)
    elif return_lse:
        kwargs["return_lse"] = True
    if mode()[0] == "compiled" and _compiled is None:
        _compiled = torch.compile(flex_attention, dynamic=False)
    run = _compiled if mode()[0] == "compiled" else flex_attention
    how = "compiled" if run is _compiled else "eager"
    key = (f"{how}:{str(q.dtype).removeprefix('torch.')}:{B}.{Hq}/{k.shape[1]}.{N}.{S}.{D}."
           f"{Dv}:{pattern.id if pattern else 'none'}:causal={causal},mask="
           f"{attn_mask is not None},lse={return_lse},grad={torch.is_grad_enabled()}")
    first = key not in _compile_log
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*flex_attention called without torch.compile.*")
        try:
            with _recompile_limits():
                out = run(q, k, v, **kwargs)
            _compile_worked = _compile_worked or how == "compiled"
        except Exception as exc:
            # Only a compiler that never worked here means "no compile on this machine"; a
            # later failure is this problem's own (an unsupported feature): it is raised.
            if how != "compiled" or _compile_worked or isinstance(exc, NotImplementedError):
                raise
            _compile_failure = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            out = flex_attention(q, k, v, **kwargs)
    if first:
        _compile_log[key] = time.perf_counter() - start
    if return_lse:
        return out[0], (out[1].lse if AuxRequest else out[1])
    return out


def flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
         scale: float | None = None, attn_mask: torch.Tensor | None = None,
         pattern: Pattern | None = None) -> torch.Tensor:
    """torch.compile(flex_attention): any pattern, block-sparse masks."""
    return _call(q, k, v, causal=causal, scale=scale, attn_mask=attn_mask, pattern=pattern,
                 return_lse=False)


def _lse(q, k, v, *, causal=False, scale=None, attn_mask=None, pattern=None):
    return _call(q, k, v, causal=causal, scale=scale, attn_mask=attn_mask, pattern=pattern,
                 return_lse=True)[1]  # (B, Hq, N)


register_attention(
    "flex", fully_masked_rows="zero", memory="fused", lse=_lse, patterns="all",
    # torch 2.13 on CPU: "torch.compile on CPU only supports inference and return_lse is not
    # supported yet" (InductorError); no backward either
    device_overrides={"cpu": {"backward": False}, "cuda": {"exposes_lse": True}},
    timeable=_eager_reason, available=_available, default_checks=("out", "pattern"),
    notes="torch.compile(flex_attention); compiles once per problem (compile_log()); "
          "backward and lse CUDA only (torch 2.13); eager when ATTNBENCH_FLEX_EAGER=1 or "
          "when compiling fails (then not timed)")(flex)
