"""One self-contained HTML page: inline CSS, figures as base64 PNG, no scripts, no network.

Every string from the results passes through ``esc``; the page's Content-Security-Policy
additionally forbids scripts and any fetch, so even a missed escape could not run code or
phone home. The page reads the same offline in any browser.
"""

from __future__ import annotations

import base64
import html
import struct

from attnbench.reports.document import (
    Answer,
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

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1b1b1b; background: #fafafa; }
header, main, footer { max-width: 1360px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 18px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 30px 0 6px; padding-top: 10px; border-top: 2px solid #ddd; }
.sub { color: #555; margin: 0 0 10px; }
nav { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 14px; margin: 10px 0 8px; }
nav a { color: #0b5cad; text-decoration: none; }
.banner { background: #fff; border: 1px solid #d6d6d6; border-radius: 4px; padding: 8px 12px; }
.banner .note { font-size: 15px; margin: 4px 0; }
.badges { display: flex; flex-wrap: wrap; gap: 6px; margin: 8px 0 2px; padding: 0;
          list-style: none; }
.badges li { background: #eef1f4; border: 1px solid #d3d9df; border-radius: 12px;
             padding: 1px 10px; font-size: 13px; }
.badges .key { color: #444; font-weight: 600; }
.how { color: #444; background: #eef3f8; border-left: 3px solid #0b5cad; padding: 5px 10px;
       margin: 6px 0 12px; }
.note { margin: 6px 0; padding: 3px 8px; border-radius: 3px; }
.answers { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr));
           gap: 12px; margin: 8px 0 16px; }
.answer { background: #fff; border: 1px solid #d6d6d6; border-top: 3px solid #0b5cad;
          border-radius: 4px; padding: 6px 12px; }
.answer h3 { font-size: 16px; margin: 2px 0; }
.answer .q { color: #555; margin: 0 0 6px; font-style: italic; }
.answer ul { margin: 0; padding-left: 0; list-style: none; }
.answer li { margin: 3px 0; padding: 2px 6px; border-radius: 3px; }
.table-wrap { overflow-x: auto; max-width: 100%; margin: 4px 0 16px; }
table { border-collapse: collapse; font-size: 13px; background: #fff; }
.caption { font-weight: 600; margin: 12px 0 0; }
th, td { border: 1px solid #d6d6d6; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; position: sticky; top: 0; }
tbody tr:nth-child(even) td:not(.good):not(.bad):not(.warn) { background: #f8f8f8; }
td.good, .good { background: #e3f4ea; color: #0d5b2a; }
td.bad, .bad { background: #fbe1e1; color: #8a1010; font-weight: 600; }
td.warn, .warn { background: #fdf1d8; color: #6b4a00; }
td.muted, .muted { color: #555; }
details { margin: 8px 0 14px; border: 1px solid #e2e2e2; border-radius: 4px; background: #fff;
          padding: 4px 10px; }
details > summary { cursor: pointer; font-weight: 600; color: #0b5cad; padding: 4px 0; }
details[open] > summary { margin-bottom: 6px; }
figure { margin: 10px 0 20px; background: #fff; border: 1px solid #e2e2e2; padding: 8px; }
figure img { width: 100%; max-width: 100%; height: auto; display: block; }
figcaption { color: #444; font-size: 14px; margin-top: 4px; }
footer { color: #555; font-size: 13px; padding: 20px; }
@media (max-width: 600px) {
  header, main, footer { padding: 0 10px; }
  figure { padding: 2px; margin: 8px 0 14px; }
  details { padding: 2px 6px; }
  h1 { font-size: 21px; }
  table { font-size: 12px; }
  td, th { min-width: 5.5em; }  /* wide tables scroll in their box rather than wrap per word */
}
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG header, so the page lays out before images decode."""
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def render_cell(cell: Cell, tag: str = "td") -> str:
    css = f' class="{cell.tone}"' if cell.tone else ""
    return f"<{tag}{css}>{esc(cell.text)}</{tag}>"


def render_table(t: Table) -> str:
    # A caption outside the table: inside, it would wrap to the width of a narrow table.
    caption = f'<p class="caption">{esc(t.caption)}</p>' if t.caption else ""
    head = "".join(f"<th>{esc(c)}</th>" for c in t.columns)
    body = "\n".join("<tr>" + "".join(render_cell(c) for c in row) + "</tr>" for row in t.rows)
    return (f'{caption}<div class="table-wrap"><table><thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody></table></div>")


def render_figure(f: Figure) -> str:
    width, height = png_size(f.png)
    data = base64.b64encode(f.png).decode("ascii")
    return (f'<figure id="fig-{esc(f.slug)}"><img alt="{esc(f.title)}" width="{width}" '
            f'height="{height}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(f.title)}</figcaption></figure>")


def render_item(item: Item) -> str:
    if isinstance(item, Table):
        return render_table(item)
    if isinstance(item, Figure):
        return render_figure(item)
    if isinstance(item, Note):
        return f'<p class="note {item.tone}">{esc(item.text)}</p>'
    if isinstance(item, Paragraph):
        return f"<p>{esc(item.text)}</p>"
    if isinstance(item, Details):
        inner = "\n".join(render_item(i) for i in item.items)
        return f"<details><summary>{esc(item.summary)}</summary>\n{inner}\n</details>"
    if isinstance(item, Answers):
        return '<div class="answers">' + "".join(render_answer(a) for a in item.blocks) + "</div>"
    raise TypeError(f"report item: expected one of {ITEMS}, got {item!r}")


ITEMS = "Table, Figure, Note, Paragraph, Details, Answers"


def render_answer(a: Answer) -> str:
    lines = "".join(f'<li class="{c.tone}">{esc(c.text)}</li>' if c.tone else
                    f"<li>{esc(c.text)}</li>" for c in a.lines)
    return (f'<div class="answer"><h3>{esc(a.reader)}</h3><p class="q">{esc(a.question)}</p>'
            f"<ul>{lines}</ul></div>")


def render_banner(b: Banner) -> str:
    lines = "\n".join(f'<p class="note {c.tone}">{esc(c.text)}</p>' for c in b.verdicts)
    chips = "".join(f'<li><span class="key">{esc(k)}:</span> {esc(v)}</li>'
                    for k, v in b.badges)
    return f'<div class="banner" id="verdict">\n{lines}\n<ul class="badges">{chips}</ul></div>'


def render_section(s: Section) -> str:
    items = "\n".join(render_item(i) for i in s.items)
    return (f'<section id="{esc(s.slug)}">\n<h2>{esc(s.heading)}</h2>\n'
            f'<p class="how"><b>How to read:</b> {esc(s.how_to_read)}</p>\n{items}\n</section>')


def render(sections: list[Section], *, title: str, subtitle: str, footer: str,
           banner: Banner | None = None) -> str:
    nav = " ".join(f'<a href="#{esc(s.slug)}">{esc(s.heading)}</a>' for s in sections)
    top = render_banner(banner) if banner else ""
    body = "\n".join(render_section(s) for s in sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>{esc(title)}</h1>
<p class="sub">{esc(subtitle)}</p>
{top}
<nav>{nav}</nav>
</header>
<main>
{body}
</main>
<footer>{esc(footer)}</footer>
</body>
</html>
"""
