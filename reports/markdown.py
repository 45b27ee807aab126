"""GitHub-flavoured Markdown: the same sections, figures as PNG files beside the page.

Text from results is escaped for Markdown (``|`` would split a table cell, ``<script>`` would
be raw HTML, ``*`` or ``_`` would start emphasis). Tones become symbols, since GitHub strips
colour: ✓ good, ✗ bad (bold), ⚠ warning.
"""

from __future__ import annotations

import html
import re

from attnbench.reports.document import (
    Answers,
    Banner,
    Cell,
    Details,
    Figure,
    Item,
    Note,
    Paragraph,
    Section,
    Table,
)

FIGURES_DIR = "figures"
MARKS = {"good": "✓ ", "bad": "✗ ", "warn": "⚠ ", "muted": "", "": ""}
SPECIAL = re.compile(r"([\\`*_\[\]#|~])")


def esc(text: object) -> str:
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return SPECIAL.sub(r"\\\1", " ".join(text.split()))


def anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def render_cell(cell: Cell) -> str:
    text = MARKS[cell.tone] + esc(cell.text)
    return f"**{text}**" if cell.tone == "bad" else text


def render_table(t: Table) -> str:
    lines = [f"**{esc(t.caption)}**", ""] if t.caption else []
    lines.append("| " + " | ".join(esc(c) or " " for c in t.columns) + " |")
    lines.append("|" + "---|" * len(t.columns))
    lines += ["| " + " | ".join(render_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def figure_path(f: Figure) -> str:
    return f"{FIGURES_DIR}/{f.slug}.png"


def render_item(item: Item) -> str:
    if isinstance(item, Table):
        return render_table(item)
    if isinstance(item, Figure):
        return f"![{esc(item.title)}]({figure_path(item)})\n\n*{esc(item.title)}*"
    if isinstance(item, Note):
        return f"> {MARKS[item.tone]}{esc(item.text)}"
    if isinstance(item, Paragraph):
        return esc(item.text)
    if isinstance(item, Details):  # GitHub renders <details>; Markdown inside needs blank lines
        inner = "\n\n".join(render_item(i) for i in item.items)
        return (f"<details><summary>{html.escape(' '.join(item.summary.split()))}</summary>"
                f"\n\n{inner}\n\n</details>")
    if isinstance(item, Answers):
        return "\n\n".join(f"**{esc(a.reader)}**: *{esc(a.question)}*\n\n"
                             + "\n".join(f"- {render_cell(c)}" for c in a.lines)
                             for a in item.blocks)
    raise TypeError("report item: expected one of Table, Figure, Note, Paragraph, Details, "
                    f"Answers, got {item!r}")


def render_banner(b: Banner) -> str:
    lines = [f"> {MARKS[c.tone]}{'**' + esc(c.text) + '**' if c.tone == 'bad' else esc(c.text)}"
             for c in b.verdicts]
    badges = " · ".join(f"**{esc(k)}**: {esc(v)}" for k, v in b.badges)
    return "\n>\n".join(lines) + "\n\n" + badges


def render(sections: list[Section], *, title: str, subtitle: str, footer: str,
           banner: Banner | None = None) -> str:
    parts = [f"# {esc(title)}", esc(subtitle), *([render_banner(banner)] if banner else []),
             "## Contents",
             "\n".join(f"- [{esc(s.heading)}](#{anchor(s.heading)})" for s in sections)]
    for s in sections:
        parts.append(f"## {esc(s.heading)}")
        parts.append(f"*How to read:* {esc(s.how_to_read)}")
        parts += [render_item(i) for i in s.items]
    parts.append(f"---\n\n{esc(footer)}")
    return "\n\n".join(parts) + "\n"
