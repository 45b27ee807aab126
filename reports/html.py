"""One self-contained HTML page: inline CSS, figures as base64 PNG, no scripts, no network.

Every string from the results passes through ``esc``; the page's Content-Security-Policy
additionally forbids scripts and any fetch, so even a missed escape could not run code or
phone home. The page reads the same offline in any browser.
"""

from __future__ import annotations

import base64
import html
import struct

from attnbench.reports.document import Cell, Figure, Item, Note, Paragraph, Section, Table

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1b1b1b; background: #fafafa; }
header, main, footer { max-width: 1360px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 18px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 30px 0 6px; padding-top: 10px; border-top: 2px solid #ddd; }
.sub { color: #555; margin: 0 0 10px; }
nav { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 13px; margin-bottom: 8px; }
nav a { color: #0b5cad; text-decoration: none; }
.how { color: #444; background: #eef3f8; border-left: 3px solid #0b5cad; padding: 5px 10px;
       margin: 6px 0 12px; }
.note { margin: 6px 0; padding: 3px 8px; border-radius: 3px; }
.table-wrap { overflow-x: auto; margin: 4px 0 16px; }
table { border-collapse: collapse; font-size: 13px; background: #fff; }
.caption { font-weight: 600; margin: 12px 0 0; }
th, td { border: 1px solid #d6d6d6; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; position: sticky; top: 0; }
tbody tr:nth-child(even) td:not(.good):not(.bad):not(.warn) { background: #f8f8f8; }
td.good, .note.good { background: #e3f4ea; color: #0d5b2a; }
td.bad, .note.bad { background: #fbe1e1; color: #8a1010; font-weight: 600; }
td.warn, .note.warn { background: #fdf1d8; color: #6b4a00; }
td.muted, .note.muted { color: #666; }
figure { margin: 10px 0 20px; background: #fff; border: 1px solid #e2e2e2; padding: 8px; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: #444; font-size: 13px; margin-top: 4px; }
footer { color: #666; font-size: 12px; padding: 20px; }
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
    raise TypeError(f"report item: expected Table, Figure, Note or Paragraph, got {item!r}")


def render_section(s: Section) -> str:
    items = "\n".join(render_item(i) for i in s.items)
    return (f'<section id="{esc(s.slug)}">\n<h2>{esc(s.title)}</h2>\n'
            f'<p class="how"><b>How to read:</b> {esc(s.how_to_read)}</p>\n{items}\n</section>')


def render(sections: list[Section], *, title: str, subtitle: str, footer: str) -> str:
    nav = " ".join(f'<a href="#{esc(s.slug)}">{esc(s.title)}</a>' for s in sections)
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
<nav>{nav}</nav>
</header>
<main>
{body}
</main>
<footer>{esc(footer)}</footer>
</body>
</html>
"""
