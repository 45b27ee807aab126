"""Attention patterns as data: masks and score modifications, each defined once, composable.

A *family* (``causal``, ``sliding_window``, ...) is registered once with three things:

    mask_mod / score_mod   the definition every implementation runs, in FlexAttention's
                           signatures ``(b, h, q_idx, kv_idx) -> bool`` and
                           ``(score, b, h, q_idx, kv_idx) -> score`` (torch.nn.attention.
                           flex_attention), built for one problem shape by a factory
    reference_mask/score   the float64 reference, written independently (torch.tril, explicit
                           slicing loops, another formula), so a bug in a definition shows up
                           as a disagreement in ``attnbench verify`` instead of agreeing with
                           itself

A ``Pattern`` is one or more families with parameter values, e.g. ``causal+softcap:cap=20``.
Composition follows FlexAttention: every score_mod is applied to the raw scores (left to
right), then the masks are AND-ed and masked scores become -inf. Applying a soft-cap *after*
the mask turns -inf into -cap and lets masked keys through: that is a bug verify must catch.

Public interface (other modules code against these):

    Pattern                 frozen, hashable. ``id`` ([a-z0-9_+-], for case ids),
                            ``text`` (what ``parse_pattern`` reads back), ``families``,
                            ``mask_only``, ``mask_mod(shape)``, ``score_mod(shape)``,
                            ``dense_mask(B, H, N, S, device)``, ``apply_dense(scores)``
                            (the definition evaluated densely: what ``naive`` runs),
                            ``reference_scores(scores64)`` (the independent reference)
    PatternShape(B, H, N, S, device)  the problem a mod is built for (ALiBi needs H, documents N, S)
    register_pattern(...)   a new family (plugins: ``--plugin`` modules call it on import)
    get_pattern(family, **params), parse_pattern(text), list_patterns(), get_family(name)
    BUILTIN_PATTERNS        one instance of every built-in family, with parameters that matter
                            at verify's shapes (N, S <= 90), plus two compositions
    support(caps, pattern)  "native", "dense_mask" or None, for a variant's Capabilities
    pattern_kwargs(variant, pattern, B, H, N, S, device)  THE way every suite calls a variant
                            on a pattern: ``{"pattern": p}`` for native support,
                            ``{"attn_mask": dense}`` for a boolean-mask variant on a mask-only
                            pattern; raises ``UsageError`` with the reason otherwise

Index conventions: q_idx in [0, N), kv_idx in [0, S), top-left aligned (query i and key i are
the same position), as ``causal=True`` in the registry contract. Glossary: B batch, H query
heads, N query length, S key length.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from attnbench.errors import UsageError

if TYPE_CHECKING:
    from attnbench.variants.registry import Capabilities, Variant

MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
ScoreMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                    torch.Tensor]
ParamKind = Literal["int", "float", "ints"]


@dataclass(frozen=True)
class PatternShape:
    """The problem a mask_mod / score_mod is built for (its tensors live on ``device``)."""

    B: int
    H: int
    N: int
    S: int
    device: str = "cpu"


@dataclass(frozen=True)
class Family:
    """One registered pattern family. Factories take ``(shape, **params)``; references take the
    float64 problem: ``reference_mask(B, H, N, S, **params) -> bool (B|1, H|1, N, S)`` and
    ``reference_score(scores (B, H, N, S) float64, **params) -> scores``."""

    name: str
    params: dict[str, ParamKind] = field(default_factory=dict, hash=False)
    mask_mod: Callable[..., MaskMod] | None = None
    score_mod: Callable[..., ScoreMod] | None = None
    reference_mask: Callable[..., torch.Tensor] | None = None
    reference_score: Callable[..., torch.Tensor] | None = None
    check: Callable[..., str | None] | None = None  # params -> what is wrong, or None
    source: str = ""
    doc: str = ""


@dataclass(frozen=True)
class Term:
    """One family with its parameter values (sorted by name, so equal terms hash equal)."""

    family: Family
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def id(self) -> str:
        return "-".join([self.family.name, *(name[0] + _id_value(value)
                                             for name, value in self.params)])

    @property
    def text(self) -> str:
        args = ",".join(f"{name}={_text_value(value)}" for name, value in self.params)
        return self.family.name + (":" + args if args else "")


def _id_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "_".join(map(_id_value, value))
    if isinstance(value, float):
        return (f"{value:g}" if value != int(value) else str(int(value))).replace(".", "p") \
            .replace("-", "m").replace("+", "")
    return str(value)


def _text_value(value: Any) -> str:
    return "/".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}" \
        if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Pattern:
    """One pattern instance: families with parameters, composed as FlexAttention does."""

    terms: tuple[Term, ...]

    @property
    def id(self) -> str:
        """Case-id-safe and deterministic, e.g. ``causal+softcap-c20``."""
        return "+".join(t.id for t in self.terms)

    @property
    def text(self) -> str:
        """The form ``parse_pattern`` reads back, e.g. ``causal+softcap:cap=20``."""
        return "+".join(t.text for t in self.terms)

    def __str__(self) -> str:
        return self.text

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(t.family.name for t in self.terms)

    @property
    def mask_only(self) -> bool:
        """No score modification: a boolean-mask variant can run it through a dense mask."""
        return all(t.family.score_mod is None for t in self.terms)

    def mask_mod(self, shape: PatternShape) -> MaskMod | None:
        """The AND of every term's mask_mod (None: nothing masked)."""
        mods = [t.family.mask_mod(shape, **t.kwargs) for t in self.terms if t.family.mask_mod]
        if not mods:
            return None

        def mask_mod(b, h, q_idx, kv_idx):
            keep = mods[0](b, h, q_idx, kv_idx)
            for mod in mods[1:]:
                keep = keep & mod(b, h, q_idx, kv_idx)
            return keep
        return mask_mod

    def score_mod(self, shape: PatternShape) -> ScoreMod | None:
        """Every term's score_mod, applied left to right (None: scores unchanged)."""
        mods = [t.family.score_mod(shape, **t.kwargs) for t in self.terms if t.family.score_mod]
        if not mods:
            return None

        def score_mod(score, b, h, q_idx, kv_idx):
            for mod in mods:
                score = mod(score, b, h, q_idx, kv_idx)
            return score
        return score_mod

    def dense_mask(self, B: int, H: int, N: int, S: int,
                   device: str | torch.device = "cpu") -> torch.Tensor | None:
        """The mask_mod evaluated on every (b, h, q, kv): bool broadcastable to (B, H, N, S),
        True = may attend; None when the pattern masks nothing."""
        mod = self.mask_mod(PatternShape(B, H, N, S, str(device)))
        if mod is None:
            return None
        b, h, q, kv = _grid(B, H, N, S, device)
        return torch.broadcast_to(mod(b, h, q, kv), (B, H, N, S))

    def apply_dense(self, scores: torch.Tensor, kv_start: int = 0, S: int | None = None,
                    masked: bool = True) -> torch.Tensor:
        """The definition (score_mods, then the mask) on dense scores (B, H, N, s) holding keys
        ``kv_start .. kv_start + s`` of ``S``: how a variant without FlexAttention runs a
        pattern, all at once or one key block at a time. ``masked=False``: score_mods only."""
        B, H, N, s = scores.shape
        shape = PatternShape(B, H, N, S if S is not None else kv_start + s, str(scores.device))
        b, h, q, kv = _grid(B, H, N, s, scores.device, kv_start)
        score_mod = self.score_mod(shape)
        if score_mod is not None:
            scores = score_mod(scores, b, h, q, kv)
        mask_mod = self.mask_mod(shape) if masked else None
        if mask_mod is not None:
            scores = scores.masked_fill(~mask_mod(b, h, q, kv), float("-inf"))
        return scores

    def reference_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """The independent reference: (B, H, N, S) scores -> transformed, -inf where masked."""
        B, H, N, S = scores.shape
        for t in self.terms:
            if t.family.reference_score is not None:
                scores = t.family.reference_score(scores, **t.kwargs)
        for t in self.terms:
            if t.family.reference_mask is not None:
                keep = t.family.reference_mask(B, H, N, S, **t.kwargs).to(scores.device)
                scores = scores.masked_fill(~keep, float("-inf"))
        return scores


def _grid(B: int, H: int, N: int, S: int, device: str | torch.device, kv_start: int = 0
          ) -> tuple[torch.Tensor, ...]:
    """Index tensors b (B,1,1,1), h (1,H,1,1), q (1,1,N,1), kv (1,1,1,S) that broadcast."""
    def idx(n: int, dim: int, start: int = 0) -> torch.Tensor:
        shape = [1, 1, 1, 1]
        shape[dim] = n
        return torch.arange(start, start + n, device=device).view(shape)
    return idx(B, 0), idx(H, 1), idx(N, 2), idx(S, 3, kv_start)


# --- the family registry ------------------------------------------------------------------

_FAMILIES: dict[str, Family] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def register_pattern(name: str, *, params: dict[str, ParamKind] | None = None,
                     mask_mod: Callable[..., MaskMod] | None = None,
                     score_mod: Callable[..., ScoreMod] | None = None,
                     reference_mask: Callable[..., torch.Tensor] | None = None,
                     reference_score: Callable[..., torch.Tensor] | None = None,
                     check: Callable[..., str | None] | None = None,
                     source: str = "", doc: str = "") -> Family:
    """Register a pattern family (built-ins below; plugins call this on import).

    Each definition needs its reference: ``mask_mod`` with ``reference_mask``, ``score_mod``
    with ``reference_score``. Parameter names must start with distinct letters (the id uses
    the first letter: ``sliding_window-w16``); kinds are "int", "float" or "ints".
    """
    where = f"register_pattern({name!r})"
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"pattern name: expected [a-z][a-z0-9_]*, got {name!r}")
    if name in _FAMILIES:
        raise ValueError(f"pattern {name!r} is already registered; choose another name")
    params = dict(params or {})
    bad = {p: k for p, k in params.items() if k not in ("int", "float", "ints")
           or not _NAME.match(p)}
    if bad:
        raise ValueError(f"{where}: params: expected names [a-z][a-z0-9_]* of kind 'int', "
                         f"'float' or 'ints'; got {bad}")
    if len({p[0] for p in params}) != len(params):
        raise ValueError(f"{where}: params {sorted(params)} must start with distinct letters")
    if mask_mod is None and score_mod is None:
        raise ValueError(f"{where}: give a mask_mod, a score_mod or both")
    for mod, ref, what in ((mask_mod, reference_mask, "mask"), (score_mod, reference_score,
                                                                  "score")):
        if (mod is None) != (ref is None):
            raise ValueError(f"{where}: {what}_mod and reference_{what} come together (the "
                             f"reference is what verify compares the definition with)")
    family = Family(name, params, mask_mod, score_mod, reference_mask, reference_score, check,
                    source, doc)
    _FAMILIES[name] = family
    return family


def unregister_pattern(name: str) -> None:
    """Remove a family (tests register throw-away families and clean up after themselves)."""
    _FAMILIES.pop(name, None)


def get_family(name: str) -> Family:
    if name not in _FAMILIES:
        raise UsageError(f"pattern: unknown family {name!r}; known: "
                         f"{', '.join(sorted(_FAMILIES)) or '(none)'}")
    return _FAMILIES[name]


def list_patterns() -> list[Family]:
    """Every registered family, by name."""
    return [f for _, f in sorted(_FAMILIES.items())]


def _convert(family: str, name: str, kind: ParamKind, value: Any) -> Any:
    """A parameter value from text or Python, checked against its kind."""
    where = f"pattern {family!r}: parameter {name}"
    try:
        if kind == "ints":
            items = value.split("/") if isinstance(value, str) else list(value)
            out: Any = tuple(int(x) for x in items)
            if not out:
                raise ValueError
            return out
        if isinstance(value, bool):
            raise ValueError
        out = int(value) if kind == "int" else float(value)
        if kind == "int" and isinstance(value, float) and value != out:
            raise ValueError
        return out
    except (TypeError, ValueError):
        expected = {"int": "an integer", "float": "a number",
                    "ints": "integers separated by '/' (e.g. 16/8/40)"}[kind]
        raise UsageError(f"{where}: expected {expected}, got {value!r}") from None


def get_pattern(family: str, **params: Any) -> Pattern:
    """One family with parameters, e.g. ``get_pattern("sliding_window", window=256)``."""
    fam = get_family(family)
    unknown = sorted(set(params) - set(fam.params))
    missing = sorted(set(fam.params) - set(params))
    expected = ", ".join(f"{p} ({k})" for p, k in fam.params.items()) or "no parameters"
    if unknown:
        raise UsageError(f"pattern {family!r}: unknown parameter(s) {', '.join(unknown)}; "
                         f"expected {expected}")
    if missing:
        raise UsageError(f"pattern {family!r}: missing parameter(s) {', '.join(missing)}; "
                         f"expected {expected}")
    values = {p: _convert(family, p, fam.params[p], params[p]) for p in sorted(params)}
    if fam.check is not None and (why := fam.check(**values)):
        raise UsageError(f"pattern {family!r}: {why}")
    return Pattern((Term(fam, tuple(values.items())),))


def compose(*patterns: Pattern) -> Pattern:
    """Patterns applied together: masks AND-ed, score_mods in order (left to right)."""
    terms = tuple(t for p in patterns for t in p.terms)
    names = [t.family.name for t in terms]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"pattern: family {', '.join(repeated)} appears twice; expected each "
                         "family at most once")
    return Pattern(terms)


def parse_pattern(text: str) -> Pattern:
    """``family[:name=value[,name=value]]`` joined by ``+``, e.g. ``causal+softcap:cap=20`` or
    ``document:lengths=16/8/40`` (lists separated by '/')."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"pattern: expected text like 'causal+softcap:cap=20', got {text!r}")
    parts = []
    for part in text.strip().split("+"):
        name, _, args = part.strip().partition(":")
        params = {}
        for arg in filter(None, (a.strip() for a in args.split(","))):
            key, eq, value = arg.partition("=")
            if not eq or not key.strip() or not value.strip():
                raise UsageError(f"pattern {name!r}: expected name=value, got {arg!r}")
            params[key.strip()] = value.strip()
        parts.append(get_pattern(name.strip(), **params))
    return compose(*parts)


# --- how a variant runs a pattern ----------------------------------------------------------

Support = Literal["native", "dense_mask"]


def support(caps: Capabilities, pattern: Pattern) -> Support | None:
    """How a variant with these capabilities runs ``pattern``: natively (it declared every
    family), through a dense boolean mask (mask-only pattern, variant takes ``attn_mask``),
    or not at all (None)."""
    declared = caps.patterns
    if declared == "all" or all(f in declared for f in pattern.families):
        return "native"
    if pattern.mask_only and caps.attn_mask:
        return "dense_mask"
    return None


def unsupported_reason(caps: Capabilities, pattern: Pattern) -> str | None:
    """Why a variant with these capabilities cannot run ``pattern``, in words (None: it can)."""
    if support(caps, pattern) is not None:
        return None
    declared = "all" if caps.patterns == "all" else ", ".join(caps.patterns) or "none"
    if pattern.mask_only:
        return (f"pattern {pattern.id}: not declared (native patterns: {declared}) and no "
                "attn_mask for a dense mask")
    return (f"pattern {pattern.id}: modifies scores and is not declared (native patterns: "
            f"{declared})")


def pattern_kwargs(variant: Variant, pattern: Pattern | None, B: int, H: int, N: int, S: int,
                   device: str | torch.device) -> dict[str, Any]:
    """Keyword arguments that make ``variant`` compute ``pattern`` on a (B, H, N, S) problem:
    ``{}`` without a pattern, ``{"pattern": pattern}`` for native support, ``{"attn_mask":
    dense (B, H, N, S) bool}`` for the dense-mask path. Every suite calls variants this way."""
    if pattern is None:
        return {}
    caps = variant.caps.on(torch.device(device).type)
    how = support(caps, pattern)
    if how == "native":
        return {"pattern": pattern}
    if how == "dense_mask":
        return {"attn_mask": pattern.dense_mask(B, H, N, S, device)}
    raise UsageError(f"variant {variant.name!r}: {unsupported_reason(caps, pattern)}")


from attnbench.variants import pattern_families  # noqa: E402,F401  (registers the built-ins)

BUILTIN_PATTERNS: tuple[Pattern, ...] = tuple(parse_pattern(t) for t in (
    "causal", "sliding_window:window=16", "prefix_lm:prefix=20", "document:lengths=20/7/33",
    "alibi", "softcap:cap=2", "causal+softcap:cap=2", "causal+document:lengths=20/7/33"))
