"""The report as plain data: sections of tables, figures and notes, rendered twice.

Every section builder returns a ``Section``; ``html.py`` and ``markdown.py`` turn the same list
into the two outputs. Keeping the content out of the renderers means the HTML page and the
Markdown page can never disagree, and escaping happens in exactly one place per format.

Strings in here are plain text (never markup): a variant named ``<script>`` stays text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Tone = Literal["", "good", "bad", "warn", "muted"]


@dataclass(frozen=True)
class Cell:
    """One table cell; ``tone`` colours it in HTML and marks it in Markdown."""

    text: str
    tone: Tone = ""


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass
class Figure:
    slug: str  # file stem, unique in the report; ``number`` prefixes the section: "05-..."
    png: bytes
    title: str  # alt text and caption


@dataclass
class Note:
    """A sentence on its own line: "not measured", a warning, a convention."""

    text: str
    tone: Tone = "muted"


@dataclass
class Paragraph:
    text: str


@dataclass
class Details:
    """Collapsed content (HTML ``<details>``): a long table or a detail figure that most
    readers skip; ``summary`` is the one line shown closed, saying what is inside."""

    summary: str
    items: list[Item]


@dataclass
class Answer:
    """One reader's short answer: who asks, the question, and a few lines of answer."""

    reader: str
    question: str
    lines: list[Cell]


@dataclass
class Answers:
    """The answer blocks shown side by side (stacked on a narrow screen)."""

    blocks: list[Answer]


Item = Table | Figure | Note | Paragraph | Details | Answers


@dataclass
class Section:
    slug: str
    title: str  # without a number: "Throughput"; ``number`` assigns "5."
    how_to_read: str
    items: list[Item] = field(default_factory=list)
    number: int = 0

    @property
    def heading(self) -> str:
        return f"{self.number}. {self.title}" if self.number else self.title


@dataclass
class Banner:
    """The page's top line: verdicts (toned) and badges saying what ran where."""

    verdicts: list[Cell]
    badges: list[tuple[str, str]]  # (what, value): ("CPU threads", "2")


def figures_in(items: list[Item]) -> list[Figure]:
    """Every figure, including those inside collapsed ``Details``, in page order."""
    found: list[Figure] = []
    for item in items:
        if isinstance(item, Figure):
            found.append(item)
        elif isinstance(item, Details):
            found += figures_in(item.items)
    return found


LONG_TABLE = 12  # rows; a longer table is collapsed behind its caption


def collapse_long_tables(items: list[Item], rows: int = LONG_TABLE) -> list[Item]:
    """Tables longer than ``rows`` go behind a one-line ``Details`` (their caption and row
    count), so the page reads in a few screens and the numbers stay one click away."""
    out: list[Item] = []
    for item in items:
        if isinstance(item, Table) and len(item.rows) > rows:
            title = item.caption or "Table"
            out.append(Details(f"{title} ({len(item.rows)} rows)",
                               [Table(item.columns, item.rows)]))
        else:
            out.append(item)
    return out


def number(sections: list[Section]) -> list[Section]:
    """Numbers the sections in the order given and prefixes each figure's file name with its
    section's number ("throughput-fwd" -> "05-throughput-fwd"), so files sort like the page."""
    for n, s in enumerate(sections, start=1):
        s.number = n
        for f in figures_in(s.items):
            f.slug = f"{n:02d}-{f.slug}"
    return sections


def not_measured(what: str, why: str = "") -> Note:
    """The one wording for a missing part, so a reader learns to scan for it."""
    return Note(f"Not measured: {what}" + (f" ({why})." if why else "."), "muted")


def cell(value: Any, tone: Tone = "") -> Cell:
    return value if isinstance(value, Cell) else Cell(fmt(value), tone)


def table(columns: list[str], rows: list[list[Any]], caption: str = "") -> Table:
    """A table from plain values (formatted with ``fmt``) and ready ``Cell``s."""
    return Table(columns, [[cell(v) for v in row] for row in rows], caption)


# --- number formatting: one style everywhere ---------------------------------------------------

def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers to short text: integers as is, floats to ``digits`` significant figures."""
    if is_missing(value):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()
                                  and abs(value) < 1e15):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if hasattr(value, "item"):  # numpy scalars
        return fmt(value.item(), digits)
    return str(value)


def fmt_bytes(value: Any) -> str:
    if is_missing(value):
        return "–"
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):  # below 1000: three digits, never "1.01e+03"
        if abs(value) < 1000 or unit == "GiB":
            return f"{value:.3g} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.3g} GiB"  # pragma: no cover


def fmt_si(value: Any, unit: str = "") -> str:
    """Rates to three significant figures with an SI prefix: 27300 -> "27.3 k"."""
    if is_missing(value):
        return "–"
    value = float(value)
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def fmt_lr(value: Any) -> str:
    """Learning rates read best as 3e-04 -> "3e-4"."""
    if is_missing(value):
        return "–"
    mantissa, exponent = f"{float(value):.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def fmt_range(values: list[float], digits: int = 3) -> str:
    """"1.98" when the values agree to the shown precision, else "1.02–1.98"."""
    values = sorted(v for v in values if not is_missing(v))
    if not values:
        return "–"
    lo, hi = fmt(values[0], digits), fmt(values[-1], digits)
    return lo if lo == hi else f"{lo}–{hi}"
