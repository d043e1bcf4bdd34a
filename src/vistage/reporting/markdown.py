"""A Report as GitHub-flavoured markdown for pull requests, its images written as files beside it
(`report_files/NAME.svg|png`, linked relatively): the same content as the HTML page. Every piece of
text goes through escape.py, so that names and questions show as written wherever it is rendered."""

from .blocks import Card, Change, ConfusionGrid, Figure, Gallery, Report, Section, Table, Text, fmt, numeric
from .escape import html_text, link_target, markdown_paragraph, markdown_text

CARDS_PER_ROW = 6


def _cell(value) -> str:
    text = fmt(value)
    if isinstance(value, Change) and value.delta and value.better is not None:
        text += " ✓" if value.better else " ✗"
    return markdown_text(text)


def _align(rows: list[list], column: int) -> str:
    """Numbers right, text left: as the column's first non-empty cell reads."""
    first = next((row[column] for row in rows if row[column] != ""), "")
    return "--:" if column and numeric(first) else ":--"


def _rows(header: list, rows: list[list], left: bool = False) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "|".join(":--" if left else _align(rows, i) for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _table(table: Table) -> str:
    text = _rows(table.header, table.rows, table.left)
    if table.long:  # GitHub folds it; a blank line after <summary> lets the table render inside
        return f"<details><summary>{len(table.rows)} rows</summary>\n\n{text}\n\n</details>"
    return text


class Files:
    """The images of the markdown: name -> bytes, written beside it by the caller."""

    def __init__(self, folder: str):
        self.folder, self.files = folder, {}

    def add(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return f"{self.folder}/{name}"


def _figure(fig: Figure, files: Files) -> str:
    if fig.svg is not None:
        path = files.add(f"{fig.name}.svg", fig.svg.encode())
    else:
        path = files.add(f"{fig.name}.png", fig.png)
    width = f' width="{fig.width}"' if fig.width else ""
    caption = f"\n\n_{markdown_paragraph(fig.caption)}_" if fig.caption else ""
    return f'<img src="{html_text(link_target(path))}" alt="{html_text(fig.name)}"{width}>{caption}'


def _card(card: Card, path: str | None) -> str:
    """One table cell: the image (a height: Grad-CAM images are wide) and its lines, the text escaped."""
    img = f'<img src="{html_text(link_target(path))}" height="72"><br>' if path else ""
    lines = [markdown_text(card.id), f"true **{markdown_text(card.actual)}**",
             f"predicted **{markdown_text(card.predicted)}**", f"confidence {card.confidence:.2f}"]
    return img + "<br>".join(lines + ([markdown_text(card.note)] if card.note else []))


def _gallery(gallery: Gallery, files: Files) -> str:
    cells = [_card(c, files.add(f"{gallery.name}_{i:03d}.png", c.png) if c.png else None)
             for i, c in enumerate(gallery.cards)]
    width = min(CARDS_PER_ROW, len(cells))
    lines = ["|" + " |" * width, "|" + ":-:|" * width]
    for start in range(0, len(cells), width):
        row = cells[start:start + width] + [""] * (width - len(cells[start:start + width]))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _confusion_grid(grid: ConfusionGrid) -> str:
    rows = [[actual, *(int(n) or "" for n in grid.counts[i])] for i, actual in enumerate(grid.labels)]
    return _rows(["actual \\ predicted", *grid.labels], rows)


def _block(block, files: Files) -> str:
    if isinstance(block, Text):
        return f"_{markdown_paragraph(block.text)}_" if block.note else markdown_paragraph(block.text)
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        return _figure(block, files)
    if isinstance(block, Gallery):
        return _gallery(block, files)
    if isinstance(block, ConfusionGrid):
        return _confusion_grid(block)
    raise TypeError(f"no markdown for {type(block).__name__}")


def _section(section: Section, files: Files) -> str:
    parts, previous = [f"## {markdown_text(section.title)}"], None
    for block in section.blocks:
        text = _block(block, files)
        side_by_side = all(isinstance(b, Figure) and not b.caption for b in (block, previous))
        if side_by_side:  # charts without captions on one line: GitHub shows them in a row
            parts[-1] += " " + text
        else:
            parts.append(text)
        previous = block
    return "\n\n".join(parts)


def render_markdown(report: Report, folder: str) -> tuple[str, dict[str, bytes]]:
    """The markdown text, and the files it links to (`folder/NAME`, relative to the markdown)."""
    files = Files(folder)
    parts = [f"# {markdown_text(report.title)}", markdown_paragraph(report.subtitle)]
    parts += [_section(s, files) for s in report.sections]
    return "\n\n".join(parts) + "\n", files.files
