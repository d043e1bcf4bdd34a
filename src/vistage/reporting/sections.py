"""The report's shared parts: the inputs it reads, the readers of those files, the sections every
task shows (metrics, their change against a git revision, the last epoch, learning curves, the
params), and the page built from a task's layout (tasks/base.py: ReportLayout).

Each section is a function of (params, inputs) returning a Section, or None when it has nothing
to show; a task lists its sections in page order, so a new section is one function and one line.
The same Report renders as one self-contained HTML page and as markdown with images beside it."""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import VistageError
from ..io import atomic_dir, write_text
from .baseline import better, not_comparable, read_baseline
from .blocks import Card, Change, Figure, Gallery, Report, Section, Table, Text
from .charts import line_chart
from .html import render_html
from .markdown import render_markdown

LONG_TABLE = 20  # tables with more rows scroll (HTML) or fold (markdown)


@dataclass
class ReportInputs:
    """Every file the report reads (dvc.yaml names each one in the report stage). The optional
    ones may be absent: their section then says so, or is left out when not asked for (None)."""

    metrics: Path  # metrics of each split (JSON: {"test": {...}, "val": {...}})
    live: Path  # DVCLive directory of training
    per_class: Path
    confusion: Path  # one row per image: actual, predicted
    predictions: Path
    store: Path  # prepared store: class names and the images of the mistakes
    calibration: Path | None = None  # reliability bins
    confusion_pairs: Path | None = None  # actual, predicted, count, rate (read instead of confusion)
    cost: Path | None = None  # inference latency and throughput (JSON)
    gradcam: Path | None = None  # folder of Grad-CAM overlays with index.csv
    baseline: str | None = "HEAD"  # git revision whose metrics are compared with


def read_json(path: Path | None) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise VistageError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from None


def read_csv(path: Path, needed: tuple[str, ...] = (), **kwargs) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, keep_default_na=False, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise VistageError(f"{path}: not a readable CSV table: {str(exc).strip()}") from None
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise VistageError(f"{path}: no column {', '.join(missing)} (columns: {', '.join(map(str, table.columns))})")
    return table


def _flatten(d: dict, prefix: str = "") -> list[list]:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            rows += _flatten(v, f"{prefix}{k}.")
        else:
            rows.append([f"{prefix}{k}", ", ".join(map(str, v)) if isinstance(v, list) else v])
    return rows


def metrics_by_split(eval_metrics: dict) -> dict[str, dict]:
    """{split: {metric: value}}, nested metrics flattened ("per_answer_type.yes/no")."""
    return {name: dict(_flatten(scores)) for name, scores in eval_metrics.items() if isinstance(scores, dict)}


def scores_heading(splits: dict) -> tuple[str, list[Text]]:
    """The metrics section's title, and a note first when the only scores are of the training
    images: a run that held nothing out (evaluation.FIT_SPLIT)."""
    if list(splits) != ["train"]:
        return "Test metrics", []
    return "Metrics on the training images", [Text(
        "Nothing was held out (no test split, and no val split or one the model trained on: head_refit), so every "
        "score on this page is on the data the model trained on: it measures fit, not how the model does on new "
        "data.", note=True)]


def metrics_section(params, inputs: ReportInputs) -> Section:
    """One row per metric, one column per split of the metrics file."""
    splits = metrics_by_split(read_json(inputs.metrics))
    names = list(dict.fromkeys(metric for scores in splits.values() for metric in scores))
    rows = [[metric, *(scores.get(metric, "") for scores in splits.values())] for metric in names]
    title, note = scores_heading(splits)
    return Section(title, [*note, Table(["metric", *splits], rows)])


def _per_class_names(per_class: Path) -> list[str] | None:
    """The classes of the per-class table (VQA's: the expected answers); None without one."""
    if not per_class.is_file():
        return None
    table = read_csv(per_class, dtype={"class": str})
    return table["class"].tolist() if "class" in table else None


def _change_table(now: dict, before: dict, rev: str) -> Table:
    """Per metric and split of `now` ({split: {metric: value}}): its value at `rev`, now, and the change."""
    header, rows = ["metric"], {}
    for split, scores in now.items():
        header += [f"{split}: {rev}", f"{split}: now", "change"]
        for metric, value in scores.items():
            old = before.get(split, {}).get(metric)
            delta = value - old if isinstance(old, (int, float)) and isinstance(value, (int, float)) else None
            cells = [old if old is not None else "-", value,
                     Change(delta, better(metric, delta)) if delta is not None else "-"]
            rows.setdefault(metric, [metric]).extend(cells)
    return Table(header, [row + ["-"] * (len(header) - len(row)) for row in rows.values()])


def change_section(params, inputs: ReportInputs) -> Section:
    """Every headline metric now, at the baseline revision, and the change; or one line saying why
    the two runs are not comparable (then no change is a gain or a loss)."""
    base, named = read_baseline(inputs.metrics, inputs.baseline, inputs.per_class)
    if base is None:
        return Section("Change", [Text(named, note=True)])
    current = read_json(inputs.metrics)
    classes = _per_class_names(inputs.per_class) if base.classes is not None else None
    reasons = not_comparable(current, classes, base)
    if reasons:
        return Section("Change", [Text(f"Not comparable with {named}: {', and '.join(reasons)}. "
                                       "No change is shown.", note=True)])
    table = _change_table(metrics_by_split(current), metrics_by_split(base.metrics), inputs.baseline)
    return Section("Change", [Text(f"Against {named}; ✓ better, ✗ worse.", note=True), table])


def training_section(params, inputs: ReportInputs) -> Section:
    train_metrics = read_json(inputs.live / "metrics.json")
    # DVCLive counts steps from 0: show the number of epochs trained instead
    epochs_trained = [["epochs trained", train_metrics.pop("step") + 1]] if "step" in train_metrics else []
    blocks = [Table(["metric", "value"], epochs_trained + _flatten(train_metrics))]
    if params.head_refit:
        blocks.append(Text("val: the solved head's before its refit on the train and val images (head_refit: true), "
                           "while val was held out; best.pt has seen val, so the metrics above are the test "
                           "split's alone.", note=True))
    return Section("Last training epoch", blocks)


def _curve(live_dir: Path, name: str) -> tuple[list, list]:
    path = live_dir / "plots" / "metrics" / f"{name}.tsv"
    if not path.is_file():
        return [], []
    df = pd.read_csv(path, sep="\t")
    return (df["step"] + 1).tolist(), df[name.split("/")[-1]].tolist()


def curves_section(params, inputs: ReportInputs) -> Section:
    live = inputs.live
    charts = [("loss", line_chart("loss", {"train": _curve(live, "train/loss"), "val": _curve(live, "val/loss")})),
              ("accuracy", line_chart("accuracy", {"train": _curve(live, "train/acc"),
                                                   "val": _curve(live, "val/acc")})),
              ("lr", line_chart("learning rate", {"lr": _curve(live, "lr")}))]
    return Section("Learning curves", [Figure(f"curve_{name}", "", svg=svg) for name, svg in charts if svg])


def store_images(store: Path):
    path = store / "images.npy"
    return np.load(path, mmap_mode="r") if path.is_file() else None


def _overlay_cards(folder: Path, rows: pd.DataFrame) -> list[Card]:
    """The listed images that exist; a path out of the folder is an error (nothing else gets inlined)."""
    cards = []
    for r in rows.itertuples():
        path = (folder / r.file).resolve()
        if not path.is_relative_to(folder.resolve()):
            raise VistageError(f"{folder / 'index.csv'}: file {r.file!r} is outside {folder}")
        if path.is_file():
            cards.append(Card(path.read_bytes(), r.id, r.label, r.predicted, float(r.confidence)))
    return cards


def overlay_section(folder: Path, title: str, intro: str, kinds: tuple[tuple[str, str], ...], gallery: str,
                    none: str) -> Section:
    """A section of the overlays the predict stage wrote to `folder` (index.csv: gradcam.INDEX_COLUMNS):
    `intro`, then a gallery per (kind, heading) of `kinds` that has images; `none` when none has."""
    index_path = folder / "index.csv"
    if not index_path.is_file():
        return Section(title, [Text(f"No overlays ({index_path} not found).", note=True)])
    index = read_csv(index_path, ("file", "id", "label", "predicted", "confidence", "kind"),
                     dtype={"id": str, "label": str, "predicted": str, "file": str, "kind": str})
    blocks = [Text(intro, note=True)]
    for kind, heading in kinds:
        cards = _overlay_cards(folder, index[index["kind"] == kind])
        if cards:
            blocks += [Text(heading), Gallery(f"{gallery}_{kind}", cards)]
    return Section(title, blocks if len(blocks) > 1 else blocks + [Text(none)])


def params_section(params, inputs: ReportInputs) -> Section:
    return Section("Params", [Table(["param", "value"], _flatten(params.model_dump(mode="json")), long=True, left=True)])


SectionBuilder = Callable[["Params", ReportInputs], Section | None]


def build_report(params, inputs: ReportInputs, layout) -> Report:
    """The page of a task's layout (title, data source, sections)."""
    built = [section(params, inputs) for section in layout.sections]
    subtitle = f"model {params.model} on {layout.source}, {params.epochs} epochs"
    return Report(layout.title, subtitle, [s for s in built if s is not None])


def write_report(report: Report, html: Path, markdown: Path | None = None, markdown_files: Path | None = None) -> None:
    """The HTML page; and the markdown with its images in `markdown_files` (linked relatively)."""
    if markdown is not None:
        files_dir = markdown_files or markdown.with_name(f"{markdown.stem}_files")
        text, files = render_markdown(report, Path(os.path.relpath(files_dir, markdown.parent)).as_posix())
        with atomic_dir(files_dir) as tmp:
            for name, data in files.items():
                (tmp / name).write_bytes(data)
        write_text(markdown, text)
    write_text(html, render_html(report))
