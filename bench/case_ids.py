"""One case-id grammar for the suites that run attention problems: verify, the throughput
benchmark and the regression gate. A results row's ``case_id`` is what ``--resume`` skips and
what two runs are joined on; the report reads the row's fields, never the id.

    case_id := kind ":" subject ":" shape ":" mode [":" repeat]
    kind    := "attention" | "memory" | "accuracy" | "block"      (the benchmark: what it measures)
             | "verify." check                                   (verify and the gate: which check)
    subject := attention variant | block "/" attention
    shape   := "B{B}-H{Hq}[/{Hkv}]-N{N}[xS{S}]-D{D}[/{Dv}]-{dtype}-{device}"
               ["-causal"] ["-mask"] ["-d{d_model}"] ["~" pattern]
    pattern := an attention pattern's id (``attnbench.variants.patterns``), e.g.
               "sliding_window-w256" or "causal+softcap-c20": after "~", so its own "-" never
               reads as a flag
    mode    := "fwd" | "bwd" | "fwd+bwd"
    repeat  := an integer >= 2: the n-th result under the same id in one run

So ``attention:sdpa:B1-H4/2-N256-D64-float32-cpu-causal:fwd+bwd`` (timed by the benchmark) and
``verify.grad:sdpa:B1-H4/2-N256-D64-float32-cpu-causal:fwd+bwd`` (checked by verify) name the
same problem with the same shape part. This module imports nothing heavy: the gate's parent
process, which never loads torch, builds ids with it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MODES = ("fwd", "bwd", "fwd+bwd")
VERIFY = "verify."  # prefix of a verification check's kind


@dataclass(frozen=True)
class CaseShape:
    """The shape part of an id: the attention problem (glossary: B batch, Hq/Hkv query/key-value
    heads, N query length, S key length, D head dim, Dv value head dim; d_model for a block)."""

    B: int
    Hq: int
    Hkv: int
    N: int
    S: int
    D: int
    Dv: int
    dtype: str  # canonical torch name: float32, bfloat16, ...
    device: str
    causal: bool = False
    mask: bool = False
    d_model: int | None = None
    pattern: str | None = None  # an attention pattern's id

    def label(self, backward: bool = False) -> str:
        """The shape part; ``backward`` adds the registry's "bwd" flag (verify's case column)."""
        parts = [f"B{self.B}", f"H{self.Hq}" + (f"/{self.Hkv}" if self.Hkv != self.Hq else ""),
                 f"N{self.N}" + (f"xS{self.S}" if self.S != self.N else ""),
                 f"D{self.D}" + (f"/{self.Dv}" if self.Dv != self.D else ""),
                 self.dtype, self.device]
        parts += [flag for flag, on in (("causal", self.causal), ("mask", self.mask)) if on]
        if self.d_model is not None:
            parts.append(f"d{self.d_model}")
        if backward:
            parts.append("bwd")
        return "-".join(parts) + (f"~{self.pattern}" if self.pattern else "")


@dataclass(frozen=True)
class CaseId:
    """An id's fields, as ``parse_case_id`` reads them back."""

    kind: str
    subject: str
    shape: CaseShape
    mode: str
    repeat: int = 1
    backward: bool = False  # the label carried the registry's "bwd" flag (verify's case column)

    def __str__(self) -> str:
        return case_id(self.kind, self.subject, self.shape.label(), self.mode, self.repeat)


def case_id(kind: str, subject: str, shape: str, mode: str, repeat: int = 1) -> str:
    """The id of one case; ``shape`` is a ``CaseShape.label()`` (the registry's ``Case.label()``
    without its "bwd" flag: the mode says it)."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if repeat < 1:
        raise ValueError(f"repeat: expected an integer >= 1, got {repeat!r}")
    for name, value in (("kind", kind), ("subject", subject), ("shape", shape)):
        if not value or ":" in value:
            raise ValueError(f"{name}: expected a non-empty string without ':', got {value!r}")
    return f"{kind}:{subject}:{shape}:{mode}" + (f":{repeat}" if repeat > 1 else "")


def subject(variant: str, attention: str = "") -> str:
    """The subject part: the attention variant, or ``block/attention`` for a block."""
    return f"{variant}/{attention}" if attention else variant


def verify_case_id(check: str, variant: str, case: str, direction: str, attention: str = "",
                   repeat: int = 1) -> str:
    """The id of one verification result from its fields (``attnbench.verify.result.CheckResult``):
    ``case`` is the registry's case label, whose "bwd" flag (or a gradient check) makes the
    mode ``fwd+bwd``. The gate names its verification findings with it too."""
    shape, backward = parse_shape(case)
    mode = "fwd+bwd" if backward or direction == "grad" else "fwd"
    return case_id(VERIFY + check, subject(variant, attention), shape.label(), mode, repeat)


_HEADS = re.compile(r"H(\d+)(?:/(\d+))?")
_LENGTHS = re.compile(r"N(\d+)(?:xS(\d+))?")
_DIMS = re.compile(r"D(\d+)(?:/(\d+))?")


def parse_shape(label: str) -> tuple[CaseShape, bool]:
    """A shape part (or a registry ``Case.label()``) back to its fields, and whether the label
    carried the registry's "bwd" flag."""
    label, _, pattern = label.partition("~")
    tokens = label.split("-")
    if len(tokens) < 6 or not tokens[0].startswith("B") or not tokens[0][1:].isdigit():
        raise ValueError(f"case shape: expected 'B..-H..-N..-D..-dtype-device[-flags]', "
                         f"got {label!r}")
    matches = [p.fullmatch(t) for p, t in zip((_HEADS, _LENGTHS, _DIMS), tokens[1:4], strict=True)]
    if not all(matches):
        raise ValueError(f"case shape: expected H<Hq>[/<Hkv>]-N<N>[xS<S>]-D<D>[/<Dv>], "
                         f"got {label!r}")
    (hq, hkv), (n, s), (d, dv) = ((int(m[1]), int(m[2] or m[1])) for m in matches)
    flags, d_model = set(), None
    for token in tokens[6:]:
        if token in ("causal", "mask", "bwd"):
            flags.add(token)
        elif token.startswith("d") and token[1:].isdigit():
            d_model = int(token[1:])
        else:
            raise ValueError(f"case shape: unknown flag {token!r} in {label!r}; expected "
                             f"causal, mask, bwd or d<d_model>")
    shape = CaseShape(int(tokens[0][1:]), hq, hkv, n, s, d, dv, tokens[4], tokens[5],
                      "causal" in flags, "mask" in flags, d_model, pattern or None)
    return shape, "bwd" in flags


def parse_case_id(text: str) -> CaseId:
    """An id back to its fields; a ValueError naming the part that does not fit the grammar."""
    parts = text.split(":")
    if len(parts) not in (4, 5):
        raise ValueError(f"case_id: expected kind:subject:shape:mode[:repeat], got {text!r}")
    kind, who, shape, mode = parts[:4]
    if mode not in MODES:
        raise ValueError(f"case_id {text!r}: mode expected one of {MODES}, got {mode!r}")
    repeat = parts[4] if len(parts) == 5 else "1"
    if not repeat.isdigit() or int(repeat) < 1:
        raise ValueError(f"case_id {text!r}: repeat expected an integer >= 1, got {repeat!r}")
    fields, backward = parse_shape(shape)
    return CaseId(kind, who, fields, mode, int(repeat), backward)
