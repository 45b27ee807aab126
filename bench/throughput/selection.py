"""Which cases of a preset to run: variant, mode, dtype and device flags, and ``-k`` filters.

``-k`` works like pytest's: words joined by ``and``, ``or``, ``not`` and parentheses, each
word matching case-insensitively as a substring of the case id, e.g.
``-k "naive and not causal"`` or ``-k "N1024 or memory"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from attnbench.errors import UsageError
from attnbench.throughput.cases import BenchCase

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")


def parse_filter(expression: str) -> Callable[[str], bool]:
    """Compile a ``-k`` expression into a predicate on case ids (ValueError when malformed)."""
    tokens = _TOKEN.findall(expression)
    if not tokens:
        raise UsageError(f"-k: expected an expression such as 'naive and not causal', "
                         f"got {expression!r}")
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def parse_or() -> Callable[[str], bool]:
        left = parse_and()
        while peek() == "or":
            take()
            a, b = left, parse_and()
            left = lambda s, a=a, b=b: a(s) or b(s)  # noqa: E731
        return left

    def parse_and() -> Callable[[str], bool]:
        left = parse_not()
        while peek() == "and":
            take()
            a, b = left, parse_not()
            left = lambda s, a=a, b=b: a(s) and b(s)  # noqa: E731
        return left

    def parse_not() -> Callable[[str], bool]:
        token = peek()
        if token is None or token in ("and", "or", ")"):
            raise UsageError(f"-k {expression!r}: expected a word, 'not' or '(' at token "
                             f"{pos + 1}, got {token or 'the end'!r}")
        take()
        if token == "not":
            inner = parse_not()
            return lambda s: not inner(s)
        if token == "(":
            inner = parse_or()
            if peek() != ")":
                raise UsageError(f"-k {expression!r}: missing ')'")
            take()
            return inner
        word = token.lower()
        return lambda s: word in s.lower()

    predicate = parse_or()
    if peek() is not None:
        raise UsageError(f"-k {expression!r}: unexpected {peek()!r} at token {pos + 1}")
    return predicate


@dataclass(frozen=True)
class Selection:
    """The command line's narrowing of a preset; empty tuples mean "everything"."""

    attention: tuple[str, ...] = ()  # attention variants named by --variant
    blocks: tuple[str, ...] = ()  # block variants named by --variant
    modes: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()  # canonical names (float32, ...)
    device: str | None = None  # replaces the preset's device
    keyword: str | None = None

    def __post_init__(self) -> None:
        if self.keyword is not None:
            parse_filter(self.keyword)  # fail on a malformed -k before anything runs

    def keeps(self, case: BenchCase) -> bool:
        """Naming only blocks runs only block cases (on every attention variant); naming
        attention variants runs their attention cases and the blocks built on them."""
        if self.modes and case.mode not in self.modes:
            return False
        if self.dtypes and case.dtype not in self.dtypes:
            return False
        if self.attention and case.attention not in self.attention:
            return False
        if self.blocks and (case.kind == "attention" or case.block not in self.blocks):
            return False
        return self.keyword is None or parse_filter(self.keyword)(case.case_id)
