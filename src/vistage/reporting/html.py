"""A Report as one self-contained HTML page: images inlined (SVG markup, PNG as data URIs), the
style and the table-sorting script inline, nothing loaded from anywhere else. Every piece of text,
in content and in attributes, goes through escape.py's html_text (`_e`)."""

import base64

import numpy as np

from .blocks import Card, Change, ConfusionGrid, Figure, Gallery, Report, Section, Table, Text, fmt, numeric
from .escape import html_text as _e

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{margin-bottom:0}.sub{color:#666;margin-top:.2em}nav{margin:.8em 0;font-size:13px;line-height:1.8}
nav a{margin-right:.9em;color:#1f5fa0;text-decoration:none;white-space:nowrap}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.grid{display:flex;flex-wrap:wrap;gap:10px}
.card{width:fit-content;min-width:120px;max-width:240px;font-size:11px;line-height:1.35;text-align:center;
overflow-wrap:anywhere}.card img{height:112px;width:auto;min-width:112px;image-rendering:pixelated;display:block;margin:auto}
.cm td{min-width:2.2em}.charts{display:flex;flex-wrap:wrap;gap:20px;align-items:flex-start}
.note{color:#666;font-size:13px}.better{color:#1a7f37}.worse{color:#c62828}
.long{max-height:420px;overflow:auto;display:inline-block;border:1px solid #ddd;margin-bottom:1.5em}
.long table{margin:0}.long th{position:sticky;top:0}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:after{content:" \\2195";color:#aaa}
figure{margin:0 0 1em}figcaption{color:#666;font-size:13px;max-width:700px}
.heat{image-rendering:pixelated;max-width:100%}
"""

# Click a header of a sortable table: sort its rows by that column (numbers as numbers), again: reverse.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.dataset.dir !== "asc", body = table.tBodies[0], rows = Array.from(body.rows);
      table.querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
      th.dataset.dir = asc ? "asc" : "desc";
      var key = function (row) { var s = row.cells[col].textContent, n = Number(s); return s === "" || isNaN(n) ? s : n; };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y), undefined, {numeric: true});
        return asc ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _cell(value, first: bool) -> str:
    if first or not numeric(value):
        return f"<td class=l>{_e(fmt(value))}</td>"
    if isinstance(value, Change) and value.delta and value.better is not None:
        mark, tone = ("✓", "better") if value.better else ("✗", "worse")
        return f"<td class={tone}>{_e(fmt(value))} {mark}</td>"
    return f"<td>{_e(fmt(value))}</td>"


def table_html(table: Table) -> str:
    head = "<thead><tr>" + "".join(f"<th class=l>{_e(h)}</th>" for h in table.header) + "</tr></thead>"
    body = "".join("<tr>" + "".join(_cell(v, i == 0 or table.left) for i, v in enumerate(row)) + "</tr>"
                   for row in table.rows)
    out = f'<table{" class=sortable" if table.sortable else ""}>{head}<tbody>{body}</tbody></table>'
    return f"<div class=long>{out}</div>" if table.long else out


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _figure(fig: Figure) -> str:
    if fig.svg is not None:
        body = fig.svg
    else:
        width = f' width="{fig.width}"' if fig.width else ""
        body = f'<img class=heat alt="{_e(fig.caption)}"{width} src="{png_uri(fig.png)}">'
    caption = f"<figcaption>{_e(fig.caption)}</figcaption>" if fig.caption else ""
    return f"<figure>{body}{caption}</figure>"


def _card(card: Card) -> str:
    img = f'<img alt="{_e(card.id)}" src="{png_uri(card.png)}">' if card.png else ""
    return (f"<div class=card>{img}{_e(card.id)}<br>true <b>{_e(card.actual)}</b><br>"
            f"predicted <b>{_e(card.predicted)}</b><br>confidence {card.confidence:.2f}"
            + (f"<br>{_e(card.note)}" if card.note else "") + "</div>")


def _confusion_grid(grid: ConfusionGrid) -> str:
    counts, top = grid.counts, max(int(np.max(grid.counts, initial=0)), 1)
    out = ["<table class=cm><tr><th class=l>actual \\ predicted</th>"]
    out += [f"<th>{_e(c)}</th>" for c in grid.labels] + ["</tr>"]
    for i, actual in enumerate(grid.labels):
        out.append(f"<tr><th class=l>{_e(actual)}</th>")
        for j in range(len(grid.labels)):
            n = int(counts[i, j])
            rgb = "31,119,180" if i == j else "214,39,40"
            out.append(f'<td style="background:rgba({rgb},{n / top:.2f})">{n or ""}</td>')
        out.append("</tr>")
    return "".join(out) + "</table>"


def block_html(block) -> str:
    if isinstance(block, Text):
        return f'<p{" class=note" if block.note else ""}>{_e(block.text)}</p>'
    if isinstance(block, Table):
        return table_html(block)
    if isinstance(block, Figure):
        return _figure(block)
    if isinstance(block, Gallery):
        return "<div class=grid>" + "".join(_card(c) for c in block.cards) + "</div>"
    if isinstance(block, ConfusionGrid):
        return _confusion_grid(block)
    raise TypeError(f"no HTML for {type(block).__name__}")


def _section(section: Section) -> str:
    blocks = section.blocks
    # consecutive figures side by side (learning curves, reliability diagram)
    out, figures = [], []
    for block in blocks + [None]:
        if isinstance(block, Figure) and block.svg is not None:
            figures.append(block)
            continue
        if figures:
            out.append("<div class=charts>" + "".join(_figure(f) for f in figures) + "</div>")
            figures = []
        if block is not None:
            out.append(block_html(block))
    return f'<h2 id="{_e(section.anchor)}">{_e(section.title)}</h2>' + "".join(out)


def render_html(report: Report) -> str:
    nav = "<nav>" + "".join(f'<a href="#{_e(s.anchor)}">{_e(s.title)}</a>' for s in report.sections) + "</nav>"
    body = "".join(_section(s) for s in report.sections)
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{_e(report.title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{_e(report.title)}</h1>"
            f"<p class=sub>{_e(report.subtitle)}</p>{nav}{body}<script>{SORT_SCRIPT}</script></body></html>\n")
