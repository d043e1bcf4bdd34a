"""The report's content, independent of its format: a list of sections made of a few kinds of
block. `html.py` and `markdown.py` each render the same Report, so the page and the pull-request
markdown never disagree.

Every string in a block is plain text, however it was made (names, questions and answers from the
data, sentences of our own around them): the renderers escape it as they write it (escape.py). The one
exception is Figure.svg, markup that charts.py draws (and escapes the labels of) itself."""

import re
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Text:
    text: str
    note: bool = False  # a remark (greyed in HTML, italic in markdown)


@dataclass
class Change:
    """A metric's change against the baseline; better is None where neither direction is better."""

    delta: float
    better: bool | None


@dataclass
class Table:
    header: list[str]
    rows: list[list]  # the first column is a name (left-aligned); values are str, int, float or Change
    sortable: bool = False  # HTML: click a header to sort
    long: bool = False  # HTML: a scroll box with a fixed header; markdown: folded in <details>
    left: bool = False  # every cell left-aligned (a list of settings of mixed kinds reads better so)


@dataclass
class Figure:
    name: str  # file name stem beside the markdown (report_files/NAME.svg or .png)
    caption: str
    svg: str | None = None
    png: bytes | None = None
    width: int | None = None  # display width in px (PNG), else its own size


@dataclass
class Card:
    """One image of a gallery, with what the model made of it."""

    png: bytes | None
    id: str
    actual: str
    predicted: str
    confidence: float
    note: str = ""  # one more line under it (e.g. a VQA answer's score)


@dataclass
class Gallery:
    name: str  # file name prefix beside the markdown
    cards: list[Card]


@dataclass
class ConfusionGrid:
    """A small confusion matrix drawn as a table of counts (a heatmap in HTML)."""

    labels: list[str]
    counts: np.ndarray  # [actual, predicted]


Block = Text | Table | Figure | Gallery | ConfusionGrid


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section]


def fmt(value) -> str:
    """A value as the report prints it: floats to 4 decimals, changes signed."""
    if isinstance(value, Change):
        d = value.delta
        if not d:
            return "0"
        return f"{d:+.0f}" if float(d).is_integer() else f"{d:+.4f}" if abs(d) >= 1e-4 else f"{d:+.1e}"
    if isinstance(value, float):
        return f"{value:.3g}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    return str(value)


def numeric(value) -> bool:
    """Whether a cell reads as a number (right-aligned): numbers, changes, and text such as "1,234"."""
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float, Change)) or bool(re.fullmatch(r"[-+]?[\d,]*\.?\d+(e[-+]?\d+)?", str(value)))
