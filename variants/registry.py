"""The variant registry: one name per implementation, its declared capabilities, one calling path.

Dimension glossary, used everywhere in this project:
    B batch, Hq query heads, Hkv key/value heads, N query length, S key length,
    D query/key head dim, Dv value head dim.

Attention contract: ``fn(q, k, v, *, causal=False, scale=None, attn_mask=None) -> out`` with
q (B, Hq, N, D), k (B, Hkv, S, D), v (B, Hkv, S, Dv), Hq a multiple of Hkv, ``scale`` defaulting
to 1/sqrt(D), ``causal=True`` meaning query i sees keys j <= i (top-left aligned, as SDPA) and
``attn_mask`` a boolean tensor broadcastable to (B, Hq, N, S) where True means "may attend".
A variant declaring ``patterns`` also takes ``pattern=`` (an ``attnbench.variants.patterns``
Pattern); callers build the keyword arguments with ``patterns.pattern_kwargs``.

Capabilities are data, not code paths: a check or benchmark asks ``not_supported_reasons`` and
skips with the reason in words, so an unsupported combination is never a failure. What the
project knows about a variant is declared here, at registration, and nowhere else: its memory
behaviour (``memory``, for the memory model), its log-sum-exp function (``lse=``, checked
against ``exposes_lse``) and whether its timings mean anything on this machine (``timeable``).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import torch
from attnbench.case_ids import CaseShape
from attnbench.errors import UnknownVariantError, UsageError
from attnbench.variants.memory import MEMORY_MODELS, MemoryModel
from attnbench.variants.patterns import Pattern, unsupported_reason

Kind = Literal["attention", "block"]
CausalAlignment = Literal["top_left", "bottom_right"]
MaskedRows = Literal["nan", "zero", "error", "undefined"]

ALL_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@dataclass(frozen=True)
class Capabilities:
    """What a variant supports. Every field has a default that a plain PyTorch variant meets."""

    devices: tuple[str, ...] = ("cpu", "cuda")
    dtypes: tuple[torch.dtype, ...] = ALL_DTYPES
    causal: bool = True
    attn_mask: bool = True  # explicit boolean mask
    gqa: bool = True  # Hkv < Hq
    backward: bool = True
    head_dim_min: int = 1
    head_dim_max: int | None = None
    distinct_value_dim: bool = True  # Dv != D
    requires: tuple[str, ...] = ()  # importable packages
    causal_alignment: CausalAlignment = "top_left"  # meaning of causal=True when N != S
    fully_masked_rows: MaskedRows = "nan"  # output of a query row that may attend to nothing
    exposes_lse: bool = False  # registered with ``lse=``: log-sum-exp per row is checked
    # Attention patterns (variants/patterns.py) the variant computes itself from a
    # ``pattern=`` argument: family names, or "all". Mask-only patterns need no declaration
    # when ``attn_mask`` is supported: the harness passes them as a dense mask.
    patterns: tuple[str, ...] | Literal["all"] = ()
    # The checks `attnbench verify` runs by default (None: all of them). A variant that
    # compiles per problem (flex) keeps its default run short; --check NAME runs any other.
    default_checks: tuple[str, ...] | None = None
    # The memory model (variants/memory.py): "materialising", "fused", or a function
    # ``(case, mode) -> bytes``; None: undeclared, the benchmark prints no model and says why.
    memory: str | MemoryModel | None = None
    # A run-time check (drivers, environment flags) returning a reason, or None when usable.
    available: Callable[[], str | None] | None = field(default=None, compare=False)
    # A run-time check returning why timing this variant here would measure something else
    # (an interpreter), or None when its timings and memory peaks are its own.
    timeable: Callable[[], str | None] | None = field(default=None, compare=False)
    # Per-device overrides of the fields above, e.g. {"cuda": {"attn_mask": False}}: PyTorch's
    # flash backend takes a boolean mask on CPU but not on CUDA.
    device_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: str = ""

    def on(self, device_type: str) -> Capabilities:
        """The capabilities that hold on one device type."""
        return replace(self, **self.device_overrides.get(device_type, {}))

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for `attnbench list --json` and the report's capability matrix."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("available", "timeable"):
                continue
            if f.name == "memory" and callable(value):
                value = f"model {getattr(value, '__module__', '?')}."\
                        f"{getattr(value, '__qualname__', repr(value))}"
            if f.name == "dtypes":
                value = [dtype_name(d) for d in value]
            elif f.name == "device_overrides":
                value = {dev: {k: ([dtype_name(d) for d in x] if k == "dtypes" else x)
                               for k, x in over.items()} for dev, over in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def parse_dtype(name: str) -> torch.dtype:
    """'fp16' / 'float16' / 'bf16' ... -> torch.dtype, with a clear error for anything else."""
    aliases = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp64": "float64",
               "half": "float16", "float": "float32", "double": "float64"}
    key = aliases.get(name, name)
    dtype = getattr(torch, key, None)
    if not isinstance(dtype, torch.dtype) or dtype not in ALL_DTYPES:
        raise UsageError(f"dtype: expected one of fp32, fp16, bf16, fp64; got {name!r}")
    return dtype


@dataclass(frozen=True)
class Case:
    """One attention problem: the shapes and options a capability check needs."""

    B: int = 1
    Hq: int = 2
    Hkv: int | None = None  # None: same as Hq
    N: int = 64
    S: int | None = None  # None: same as N
    D: int = 32
    Dv: int | None = None  # None: same as D
    dtype: torch.dtype = torch.float32
    device: str = "cpu"
    causal: bool = False
    mask: bool = False  # an explicit boolean attn_mask is passed
    backward: bool = False
    pattern: Pattern | None = None  # an attention pattern (with causal=False and no mask)

    @property
    def hkv(self) -> int:
        return self.Hq if self.Hkv is None else self.Hkv

    @property
    def s(self) -> int:
        return self.N if self.S is None else self.S

    @property
    def dv(self) -> int:
        return self.D if self.Dv is None else self.Dv

    def id_shape(self, d_model: int | None = None) -> CaseShape:
        """The shape part of the case ids (``attnbench.case_ids``): every field but backward."""
        return CaseShape(self.B, self.Hq, self.hkv, self.N, self.s, self.D, self.dv,
                         dtype_name(self.dtype), self.device, self.causal, self.mask, d_model,
                         self.pattern.id if self.pattern is not None else None)

    def label(self) -> str:
        """The shape part of the case ids, with the "bwd" flag when the case runs backward."""
        return self.id_shape().label(backward=self.backward)


@dataclass
class Variant:
    """A registered implementation. Call it like the function it wraps; inputs are validated."""

    name: str
    kind: Kind
    fn: Callable[..., Any]
    caps: Capabilities
    module: str = ""
    doc: str = ""
    lse_fn: Callable[..., torch.Tensor] | None = None  # registered with ``lse=``

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.kind == "attention":
            validate_attention_inputs(self.name, *args, **kwargs)
            if kwargs.get("pattern") is not None:
                self._check_pattern(args[0].device.type, kwargs["pattern"])
        return self.fn(*args, **kwargs)

    def _check_pattern(self, device_type: str, pattern: Pattern) -> None:
        """A ``pattern=`` argument only reaches variants that declared its families."""
        declared = self.caps.on(device_type).patterns
        missing = [f for f in pattern.families if declared != "all" and f not in declared]
        if missing:
            raise ValueError(f"attention variant {self.name!r}: pattern {pattern.id!r} needs "
                             f"{', '.join(missing)}, not declared (patterns="
                             f"{declared or '()'}); call it through pattern_kwargs()")

    def lse(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Log-sum-exp per query row (B, Hq, N), for variants that declare `exposes_lse`
        (on q's device type: a device override may declare it for one device only)."""
        validate_attention_inputs(self.name, q, k, v, **kwargs)
        if not self.caps.on(q.device.type).exposes_lse:
            raise NotImplementedError(f"variant {self.name!r} does not expose its log-sum-exp")
        assert self.lse_fn is not None  # registration checked it against exposes_lse
        return self.lse_fn(q, k, v, **kwargs)

    def memory_model(self) -> MemoryModel | None:
        """The declared memory model as a function, or None when the variant declares none."""
        memory = self.caps.memory
        return MEMORY_MODELS[memory] if isinstance(memory, str) else memory

    def untimeable_reason(self) -> str | None:
        """Why this variant's timings here would not be its own (None: time it)."""
        return self.caps.timeable() if self.caps.timeable is not None else None


_REGISTRY: dict[str, Variant] = {}


def _check_declarations(kind: Kind, name: str, caps: Capabilities,
                        lse: Callable[..., torch.Tensor] | None) -> None:
    """Declarations that must agree with what the registration provides, named on failure."""
    where = f"register_{kind}({name!r})"
    memory = caps.memory
    if not (memory is None or callable(memory) or memory in MEMORY_MODELS):
        raise ValueError(f"{where}: memory: expected one of {sorted(MEMORY_MODELS)}, a model "
                         f"function (case, mode) -> bytes, or None; got {memory!r}")
    for key in ("available", "timeable"):
        if getattr(caps, key) is not None and not callable(getattr(caps, key)):
            raise TypeError(f"{where}: {key}: expected a function () -> reason or None, got "
                            f"{getattr(caps, key)!r}")
    if not (caps.patterns == "all" or (isinstance(caps.patterns, tuple)
                                       and all(isinstance(p, str) for p in caps.patterns))):
        raise ValueError(f"{where}: patterns: expected a tuple of family names or 'all', got "
                         f"{caps.patterns!r}")
    if lse is not None and not callable(lse):
        raise TypeError(f"{where}: lse: expected a function (q, k, v, ...) -> (B, Hq, N), got "
                        f"{lse!r}")
    declared = [caps.exposes_lse, *(o.get("exposes_lse", False)
                                    for o in caps.device_overrides.values())]
    if any(declared) and lse is None:
        raise ValueError(f"{where}: declares exposes_lse=True but provides no lse= function")
    if lse is not None and not any(declared):
        raise ValueError(f"{where}: provides lse= but does not declare exposes_lse=True")


def _register(kind: Kind, name: str, caps: dict[str, Any],
              lse: Callable[..., torch.Tensor] | None = None) -> Callable[[Callable], Callable]:
    if not isinstance(name, str) or not name:
        raise ValueError(f"variant name: expected a non-empty string, got {name!r}")
    unknown = set(caps) - {f.name for f in fields(Capabilities)}
    if unknown:
        raise TypeError(f"register_{kind}({name!r}): unknown capabilities {sorted(unknown)}; "
                        f"known: {sorted(f.name for f in fields(Capabilities))}")
    declared = Capabilities(**caps)
    _check_declarations(kind, name, declared, lse)

    def decorator(fn: Callable) -> Callable:
        if name in _REGISTRY:
            prev = _REGISTRY[name]
            raise ValueError(f"variant {name!r} is already registered (by {prev.module}); "
                             "choose another name")
        _REGISTRY[name] = Variant(name=name, kind=kind, fn=fn, caps=declared,
                                  module=getattr(fn, "__module__", ""),
                                  doc=(fn.__doc__ or "").strip().split("\n")[0], lse_fn=lse)
        return fn

    return decorator


def register_attention(name: str, *, lse: Callable[..., torch.Tensor] | None = None,
                       **capabilities: Any) -> Callable[[Callable], Callable]:
    """Decorator: register ``fn(q, k, v, *, causal=False, scale=None, attn_mask=None)``.

    ``lse``: the variant's log-sum-exp per query row, ``lse(q, k, v, **same kwargs) ->
    (B, Hq, N)``, for variants declaring ``exposes_lse=True`` (the two must agree).
    ``capabilities``: fields of ``Capabilities``, e.g. ``memory="fused"``.
    """
    return _register("attention", name, capabilities, lse)


def register_block(name: str, **capabilities: Any) -> Callable[[Callable], Callable]:
    """Decorator: register a block factory ``(d_model, n_heads, *, attention=...) -> Module``."""
    return _register("block", name, capabilities)


def unregister(name: str) -> None:
    """Remove a variant (tests register throw-away variants and clean up after themselves)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> Variant:
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise UnknownVariantError(f"unknown variant {name!r}; registered: {known}")
    return _REGISTRY[name]


def list_variants(kind: Kind | None = None) -> list[Variant]:
    if kind not in (None, "attention", "block"):
        raise UsageError(f"kind: expected 'attention', 'block' or None, got {kind!r}")
    return [v for _, v in sorted(_REGISTRY.items()) if kind is None or v.kind == kind]


def not_supported_reasons(variant: Variant, case: Case) -> list[str]:
    """Why ``variant`` cannot run ``case``, in words; an empty list means it can."""
    device_type = torch.device(case.device).type
    caps, reasons = variant.caps.on(device_type), []
    missing = [p for p in caps.requires if importlib.util.find_spec(p) is None]
    if missing:
        reasons.append(f"needs package(s) {', '.join(missing)}")
    if device_type not in caps.devices:
        reasons.append(f"device {device_type} not supported (supports {', '.join(caps.devices)})")
    elif device_type == "cuda" and not torch.cuda.is_available():
        reasons.append("no CUDA device on this machine")
    if case.dtype not in caps.dtypes:
        names = ", ".join(dtype_name(d) for d in caps.dtypes)
        reasons.append(f"dtype {dtype_name(case.dtype)} not supported on {device_type} "
                       f"(supports {names})")
    if variant.kind == "attention":
        if case.causal and not caps.causal:
            reasons.append("causal masking not supported")
        if case.mask and not caps.attn_mask:
            reasons.append("explicit attn_mask not supported")
        if case.hkv != case.Hq and not caps.gqa:
            reasons.append(f"grouped-query attention (Hq={case.Hq}, Hkv={case.hkv}) not supported")
        if case.D < caps.head_dim_min or (caps.head_dim_max and case.D > caps.head_dim_max):
            hi = caps.head_dim_max or "any"
            reasons.append(f"head dim D={case.D} outside [{caps.head_dim_min}, {hi}]")
        if case.dv != case.D and not caps.distinct_value_dim:
            reasons.append(f"value head dim Dv={case.dv} != D={case.D} not supported")
        if case.pattern is not None and (why := unsupported_reason(caps, case.pattern)):
            reasons.append(why)
    if case.backward and not caps.backward:
        reasons.append("backward not supported")
    if not reasons and caps.available is not None:
        why = caps.available()
        if why:
            reasons.append(why)
    return reasons


def validate_attention_inputs(name: str, q: Any, k: Any, v: Any, *, causal: bool = False,
                              scale: float | None = None, attn_mask: Any = None,
                              pattern: Any = None) -> None:
    """Check the attention contract once, with errors that name the variant and the argument."""
    where = f"attention variant {name!r}"
    for arg, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{where}: {arg} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{where}: {arg} must have 4 dims (B, H, L, D), got shape "
                             f"{tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{where}: {arg} must be floating point, got {t.dtype}")
        if t.numel() == 0:
            raise ValueError(f"{where}: {arg} is empty, shape {tuple(t.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"{where}: q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"{where}: q, k, v must be on one device, got {q.device}, {k.device}, "
                         f"{v.device}")
    (B, Hq, N, D), (Bk, Hkv, S, Dk), (Bv, Hv, Sv, _) = q.shape, k.shape, v.shape
    if not (B == Bk == Bv):
        raise ValueError(f"{where}: batch sizes differ: q {B}, k {Bk}, v {Bv}")
    if Hkv != Hv:
        raise ValueError(f"{where}: k and v head counts differ: k {Hkv}, v {Hv}")
    if Hq % Hkv:
        raise ValueError(f"{where}: query heads Hq={Hq} must be a multiple of key/value heads "
                         f"Hkv={Hkv}")
    if Dk != D:
        raise ValueError(f"{where}: head dim of k ({Dk}) must equal head dim of q ({D})")
    if S != Sv:
        raise ValueError(f"{where}: key length of k ({S}) must equal key length of v ({Sv})")
    if not isinstance(causal, bool):
        raise TypeError(f"{where}: causal must be a bool, got {causal!r}")
    if scale is not None and (not isinstance(scale, int | float) or not math.isfinite(scale)):
        raise ValueError(f"{where}: scale must be a finite number or None, got {scale!r}")
    if pattern is not None and not isinstance(pattern, Pattern):
        raise TypeError(f"{where}: pattern must be an attnbench Pattern (parse_pattern), got "
                        f"{type(pattern).__name__}")
    if attn_mask is not None:
        if not isinstance(attn_mask, torch.Tensor) or attn_mask.dtype != torch.bool:
            got = attn_mask.dtype if isinstance(attn_mask, torch.Tensor) else type(attn_mask)
            raise TypeError(f"{where}: attn_mask must be a bool tensor (True = attend), got {got}")
        if attn_mask.device != q.device:
            raise ValueError(f"{where}: attn_mask on {attn_mask.device}, q on {q.device}")
        try:
            torch.broadcast_shapes(attn_mask.shape, (B, Hq, N, S))
        except RuntimeError:
            raise ValueError(f"{where}: attn_mask shape {tuple(attn_mask.shape)} does not "
                             f"broadcast to (B, Hq, N, S) = {(B, Hq, N, S)}") from None
