"""User text in the report (class and image names, questions, answers, answer types) stays text, for
both tasks: in report.md as a CommonMark renderer that lets raw HTML through shows it (as GitHub and
most wikis do), and in index.html. Checked by parsing (no tag or attribute the report did not write
itself, no link, every markdown table row as wide as its header) and in headless Chromium (no script
runs, no handler fires, the title stays, each name shows as written)."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from vistage.params import Params
from vistage.reporting.html import SORT_SCRIPT
from vistage.reporting.sections import build_report, write_report

from .browser import chromium, probe_page  # noqa: F401 -- chromium is a fixture
from .report_data import CLASSIFY, VQA, write_report_inputs, write_vqa_report_inputs

# Each would be live markup, a link, or a broken table if written raw; a script that runs sets
# window.__pwned or the title.
HOSTILE = [
    '<img src=x onerror="window.__pwned=1;document.title=\'pwned\'">',
    "<script>window.__pwned=2;document.title='pwned'</script>",
    '<svg onload="window.__pwned=3">',
    "<iframe srcdoc=\"<script>parent.__pwned=4</script>\"></iframe>",
    "[click](javascript:window.__pwned=5)",
    "![pic](javascript:window.__pwned=6)",
    "<a href=\"javascript:window.__pwned=7\">link</a>",
    "<style>body{display:none}</style>",
    "<!-- an unclosed comment",
    "a | b | c",
    "back\\slash \\| pipe",
    "`code` *em* _under_ ~~struck~~ $x$",
    "# heading #",
    "- item",
    "1. first",
    "&amp; &lt;b&gt; &#124;",
]
IMAGE_ID = "<img src=y onerror=window.__pwned=8>"  # a file name (no '/': it names a Grad-CAM file too)
# what the markdown renders to by itself: tables, the gallery's images and line breaks, the folded table
MARKDOWN_TAGS = {"h1", "h2", "p", "em", "strong", "table", "thead", "tbody", "tr", "th", "td", "img", "br",
                 "details", "summary"}
PAGE_TAGS = MARKDOWN_TAGS | {"html", "head", "meta", "title", "style", "body", "nav", "a", "div", "b", "figure",
                             "figcaption", "svg", "text", "rect", "polyline", "circle", "script"}


class Parsed(HTMLParser):
    """Every tag with its attributes, the content of <script> elements, and the text (one line per run)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.scripts, self.runs, self._in_script = [], [], [], False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.runs).append(data)

    @property
    def text(self) -> str:
        return "\n".join(self.runs)


def render_commonmark(markdown: str) -> str:
    """report.md as a GitHub-like renderer shows it: CommonMark, raw HTML let through, GFM tables."""
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(markdown)


def _classify_report(root: Path) -> Path:
    inputs = write_report_inputs(root, len(HOSTILE), 300, names=HOSTILE, id_prefix=IMAGE_ID)
    return _write(root, inputs, CLASSIFY)


def _vqa_report(root: Path) -> Path:
    questions = [f"is it {text}?" for text in HOSTILE]
    inputs = write_vqa_report_inputs(root, questions, HOSTILE, answer_type=HOSTILE[0])
    return _write(root, inputs, VQA)


def _write(root: Path, inputs, layout) -> Path:
    reports = root / "reports"
    write_report(build_report(Params(), inputs, layout), reports / "index.html", reports / "report.md",
                 reports / "report_files")
    return reports


def _markdown_page(reports: Path) -> Path:
    """report.md rendered, as a page beside it (its image links still resolve)."""
    page = reports / "report-md.html"
    body = render_commonmark((reports / "report.md").read_text())
    page.write_text(f"<!doctype html><html><head><meta charset=utf-8><title>report.md</title></head>"
                    f"<body>{body}</body></html>", encoding="utf-8")
    return page


REPORTS = {"classify": _classify_report, "vqa": _vqa_report}
TITLES = {"classify": CLASSIFY.title, "vqa": VQA.title}


def _table_widths(markdown: str) -> list[set[int]]:
    """For each table of the markdown, the cell counts of its lines, as a GFM renderer splits them
    (at each `|` without a backslash before it)."""
    tables, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            current.append(len(re.findall(r"(?<!\\)\|", line)) - 1)
        elif current:
            tables.append(set(current))
            current = []
    return tables


def _assert_shown_as_text(text: str, names: list[str]) -> None:
    missing = [name for name in names if name not in text]
    assert not missing, f"not shown as written: {missing}"


@pytest.mark.parametrize("task", REPORTS)
def test_markdown_renders_user_text_as_text(tmp_path, task):
    reports = REPORTS[task](tmp_path)
    markdown = (reports / "report.md").read_text()
    parsed = Parsed(render_commonmark(markdown))
    assert {tag for tag, _ in parsed.tags} <= MARKDOWN_TAGS, {tag for tag, _ in parsed.tags} - MARKDOWN_TAGS
    assert all(not name.startswith("on") for _, attrs in parsed.tags for name in attrs)
    assert all(attrs["src"].startswith("report_files/") for tag, attrs in parsed.tags if tag == "img")
    _assert_shown_as_text(parsed.text, HOSTILE + ([IMAGE_ID] if task == "classify" else []))
    widths = _table_widths(markdown)
    assert widths and all(len(width) == 1 for width in widths), widths  # a `|` in a name adds no column


@pytest.mark.parametrize("task", REPORTS)
def test_page_writes_user_text_as_text(tmp_path, task):
    parsed = Parsed((REPORTS[task](tmp_path) / "index.html").read_text())
    assert {tag for tag, _ in parsed.tags} <= PAGE_TAGS, {tag for tag, _ in parsed.tags} - PAGE_TAGS
    assert all(not name.startswith("on") for _, attrs in parsed.tags for name in attrs)
    assert all(attrs["href"].startswith("#") for tag, attrs in parsed.tags if tag == "a")
    assert all(attrs["src"].startswith("data:image/png;base64,") for tag, attrs in parsed.tags if tag == "img")
    assert [tag for tag, _ in parsed.tags].count("script") == 1 and "".join(parsed.scripts) == SORT_SCRIPT
    _assert_shown_as_text(parsed.text, HOSTILE + ([IMAGE_ID] if task == "classify" else []))


@pytest.mark.slow
@pytest.mark.parametrize("task", REPORTS)
def test_no_script_runs_in_chromium(chromium, tmp_path, task):  # noqa: F811
    reports = REPORTS[task](tmp_path)
    for page, title in ((reports / "index.html", TITLES[task]), (_markdown_page(reports), "report.md")):
        seen = probe_page(chromium, page, tmp_path)
        assert seen["pwned"] is None and seen["errors"] == [], (page.name, seen["pwned"], seen["errors"])
        assert seen["title"] == title
        _assert_shown_as_text(seen["text"], HOSTILE)
