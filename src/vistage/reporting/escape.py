"""Text the report did not write itself (class, folder and file names, questions, answers, commit
subjects, paths) as each format must write it: always as text, never as markup. Every writer of the
report (html.py, markdown.py, charts.py) escapes through these functions at the moment it writes;
the blocks (blocks.py) and the sections that fill them hold the text raw, so nothing is escaped twice.

Markdown is escaped for HTML as well: a renderer that lets raw HTML through (GitHub, most wikis)
must show `<img src=x onerror=...>` as those characters, not load an image."""

import html
import re
from urllib.parse import quote


def html_text(value) -> str:
    """Text for HTML content and for double- or single-quoted attribute values."""
    return html.escape(str(value), quote=True)


# As character references: what HTML reads as markup, and the cell separator of markdown tables
# (GFM splits a row at every `|` before it reads anything else; a reference is never read as syntax,
# in either format, and both show it as the plain character).
_REFERENCES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "|": "&#124;"}
# Behind a backslash (CommonMark: any ASCII punctuation may be escaped so): the rest of markdown's inline
# syntax, i.e. code spans, emphasis, links and images (`!` and `(` mean nothing without `[`),
# strikethrough, math, and the closing #s of a heading.
_BACKSLASHED = "\\`*_[]~$#"
_MARKDOWN = str.maketrans({**_REFERENCES, **{c: "\\" + c for c in _BACKSLASHED}, "\n": " ", "\r": " "})
# What makes a paragraph a list item when it starts the line (`- `, `+ `, `1. `, `1) `): a backslash
# before the sign, or between the number and its `.` or `)`. The other block markers (#, >, *, _, `, ~,
# <, an indent) are escaped above or stripped.
_LIST_MARKER = re.compile(r"^(\d{1,9})(?=[.)])|^(?=[-+])")


def markdown_text(value) -> str:
    """Text inside a line of markdown (a table cell, a heading, emphasis): one line, shown as written."""
    return str(value).translate(_MARKDOWN)


def markdown_paragraph(value) -> str:
    """Text that is a paragraph of its own: as markdown_text, and never a list item."""
    return _LIST_MARKER.sub(lambda m: (m.group(1) or "") + "\\", markdown_text(value).lstrip(), count=1)


def link_target(path: str) -> str:
    """A relative file path as a link's URL: percent-encoded, so that `#`, `?`, `:` or a space in a
    folder name cannot end the path or make it a scheme (`javascript:`)."""
    return quote(path, safe="/")
