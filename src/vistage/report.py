"""What the report shows, read from the pipeline's outputs: metrics and their change against a git
revision, inference cost, learning curves, calibration, the confusion matrix, per-class scores, the
most confident mistakes, Grad-CAM examples and the params.

Each section is a function of (params, inputs) returning a Section, or None when it has nothing
to show; SECTIONS lists them in page order, so a new section is one function and one line.
The same Report renders as one self-contained HTML page and as markdown with images beside it."""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import VistageError
from .io import atomic_dir, write_text
from .params import Params
from .reporting.baseline import better, committed_metrics
from .reporting.blocks import Card, Change, ConfusionGrid, Figure, Gallery, Report, Section, Table, Text
from .reporting.charts import confusion_png, line_chart, png_bytes, reliability_chart
from .reporting.html import render_html
from .reporting.markdown import render_markdown

GRID_MAX_CLASSES = 20  # up to this many classes the confusion matrix is a table; above, an image
TOP_PAIRS = 15  # rows of the most-confused-pairs table
MISTAKES = 24  # images of the most confident mistakes
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


def _json(path: Path | None) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise VistageError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from None


def _csv(path: Path, needed: tuple[str, ...] = (), **kwargs) -> pd.DataFrame:
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


def _splits(eval_metrics: dict) -> dict[str, dict]:
    """{split: {metric: value}}, nested metrics flattened ("per_answer_type.yes/no")."""
    return {name: dict(_flatten(scores)) for name, scores in eval_metrics.items() if isinstance(scores, dict)}


def metrics_section(params: Params, inputs: ReportInputs) -> Section:
    """One row per metric, one column per split of the metrics file."""
    splits = _splits(_json(inputs.metrics))
    names = list(dict.fromkeys(metric for scores in splits.values() for metric in scores))
    rows = [[metric, *(scores.get(metric, "") for scores in splits.values())] for metric in names]
    return Section("Test metrics", [Table(["metric", *splits], rows)])


def change_section(params: Params, inputs: ReportInputs) -> Section:
    """Every headline metric now, at the baseline revision, and the change."""
    base, named = committed_metrics(inputs.metrics, inputs.baseline)
    if base is None:
        return Section("Change", [Text(named, note=True)])
    now, before = _splits(_json(inputs.metrics)), _splits(base)
    header, rows = ["metric"], {}
    for split, scores in now.items():
        header += [f"{split}: {inputs.baseline}", f"{split}: now", "change"]
        for metric, value in scores.items():
            old = before.get(split, {}).get(metric)
            delta = value - old if isinstance(old, (int, float)) and isinstance(value, (int, float)) else None
            cells = [old if old is not None else "-", value,
                     Change(delta, better(metric, delta)) if delta is not None else "-"]
            rows.setdefault(metric, [metric]).extend(cells)
    width = len(header)
    table = [row + ["-"] * (width - len(row)) for row in rows.values()]
    return Section("Change", [Text(f"Against {named}; ✓ better, ✗ worse.", note=True), Table(header, table)])


def _number(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else ""


def cost_section(params: Params, inputs: ReportInputs) -> Section | None:
    if inputs.cost is None:
        return None
    cost = _json(inputs.cost)
    if not cost:
        return Section("Inference cost", [Text(f"Not measured ({inputs.cost} not found).", note=True)])
    rows = [["device", cost.get("device", "")], ["model", cost.get("model", "")],
            ["parameters", _number(cost.get("params_count"), ",")],
            ["latency, batch of 1: median (ms)", _number(cost.get("latency_ms_p50"), ".2f")],
            ["latency, batch of 1: 95th percentile (ms)", _number(cost.get("latency_ms_p95"), ".2f")],
            [f"throughput, batches of {cost.get('batch_size', '?')} (images/s)",
             _number(cost.get("throughput_img_s"), ",.1f")]]
    shown = {"device", "model", "params_count", "latency_ms_p50", "latency_ms_p95", "batch_size", "throughput_img_s"}
    rows += [[key, value] for key, value in cost.items() if key not in shown]  # how it was measured
    note = Text("Measured by the pipeline on the device named: compare architectures on one machine.",
                note=True)
    return Section("Inference cost", [Table(["", "value"], rows, left=True), note])


def training_section(params: Params, inputs: ReportInputs) -> Section:
    train_metrics = _json(inputs.live / "metrics.json")
    # DVCLive counts steps from 0: show the number of epochs trained instead
    epochs_trained = [["epochs trained", train_metrics.pop("step") + 1]] if "step" in train_metrics else []
    return Section("Last training epoch", [Table(["metric", "value"], epochs_trained + _flatten(train_metrics))])


def _curve(live_dir: Path, name: str) -> tuple[list, list]:
    path = live_dir / "plots" / "metrics" / f"{name}.tsv"
    if not path.is_file():
        return [], []
    df = pd.read_csv(path, sep="\t")
    return (df["step"] + 1).tolist(), df[name.split("/")[-1]].tolist()


def curves_section(params: Params, inputs: ReportInputs) -> Section:
    live = inputs.live
    charts = [("loss", line_chart("loss", {"train": _curve(live, "train/loss"), "val": _curve(live, "val/loss")})),
              ("accuracy", line_chart("accuracy", {"train": _curve(live, "train/acc"),
                                                   "val": _curve(live, "val/acc")})),
              ("lr", line_chart("learning rate", {"lr": _curve(live, "lr")}))]
    return Section("Learning curves", [Figure(f"curve_{name}", "", svg=svg) for name, svg in charts if svg])


def calibration_section(params: Params, inputs: ReportInputs) -> Section | None:
    if inputs.calibration is None:
        return None
    if not inputs.calibration.is_file():
        return Section("Calibration", [Text(f"No reliability data ({inputs.calibration} not found).", note=True)])
    bins = _csv(inputs.calibration, ("confidence", "accuracy"))
    ece = _splits(_json(inputs.metrics)).get("test", {}).get("ece")
    text = (f"Expected calibration error (test): {ece:.4f}. " if isinstance(ece, float) else "") + (
        "Each point is a bin of images by top-1 confidence: below the diagonal the model is over-confident, "
        "above it under-confident.")
    figure = Figure("reliability", "", svg=reliability_chart(bins["confidence"].tolist(), bins["accuracy"].tolist()))
    return Section("Calibration", [figure, Text(text, note=True)])


def _classes(inputs: ReportInputs) -> list[str]:
    return [str(c) for c in _json(inputs.store / "classes.json").get("classes", [])]


def confusion_counts(inputs: ReportInputs) -> tuple[np.ndarray, list[str]] | None:
    """The confusion matrix [actual, predicted] and its class names, from the class-pair counts
    when there are some, else from the one-row-per-image table."""
    if inputs.confusion_pairs is not None and inputs.confusion_pairs.is_file():
        pairs = _csv(inputs.confusion_pairs, ("actual", "predicted", "count"), dtype={"actual": str, "predicted": str})
    elif inputs.confusion.is_file():
        rows = _csv(inputs.confusion, ("actual", "predicted"), dtype=str)
        pairs = rows.groupby(["actual", "predicted"]).size().rename("count").reset_index()
    else:
        return None
    labels = _classes(inputs)
    labels += sorted((set(pairs["actual"]) | set(pairs["predicted"])) - set(labels))
    index = {name: i for i, name in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(counts, (pairs["actual"].map(index).to_numpy(), pairs["predicted"].map(index).to_numpy()),
              pairs["count"].to_numpy(dtype=np.int64))
    return counts, labels


def top_pairs(counts: np.ndarray, labels: list[str], k: int = TOP_PAIRS) -> Table | Text:
    """The k class pairs most often confused, with the share of the actual class they take."""
    off = counts.copy()
    np.fill_diagonal(off, 0)
    if not off.any():
        return Text("No image was confused with another class.")
    totals = np.maximum(counts.sum(axis=1), 1)
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    rows = [[labels[i], labels[j], int(off[i, j]), round(float(off[i, j] / totals[i]), 4)]
            for i, j in zip(*np.unravel_index(flat, off.shape)) if off[i, j]]
    return Table(["actual", "predicted", "images", "share of actual"], rows)


def confusion_section(params: Params, inputs: ReportInputs) -> Section | None:
    found = confusion_counts(inputs)
    if found is None:
        return None
    counts, labels = found
    if len(labels) <= GRID_MAX_CLASSES:
        matrix = ConfusionGrid(labels, counts)
    else:
        matrix = Figure("confusion", f"{len(labels)} classes; rows: actual, columns: predicted. Blue: the share "
                        "of each class predicted right; red: the share predicted as another class (square "
                        "root scale, so rare confusions show).", png=confusion_png(counts, labels))
    return Section("Confusion matrix", [matrix, Text("Most confused pairs:"), top_pairs(counts, labels)])


def per_class_section(params: Params, inputs: ReportInputs) -> Section | None:
    if not inputs.per_class.is_file():
        return None
    table = _csv(inputs.per_class, dtype={"class": str})
    if "f1" in table:
        table = table.sort_values(["f1", "class"], kind="stable")
    rows = [list(r) for r in table.itertuples(index=False)]
    note = Text("Worst F1 first (on the HTML page, click a column header to sort by it).", note=True)
    return Section("Per class", [note, Table(list(table.columns), rows, sortable=True, long=len(rows) > LONG_TABLE)])


def _store_images(store: Path):
    path = store / "images.npy"
    return np.load(path, mmap_mode="r") if path.is_file() else None


def mistakes_section(params: Params, inputs: ReportInputs) -> Section | None:
    if not inputs.predictions.is_file():
        return None
    predictions = _csv(inputs.predictions, ("index", "id", "label", "predicted", "confidence", "correct"),
                       dtype={"label": str, "predicted": str, "id": str})
    labeled = predictions[predictions["label"] != ""]
    wrong = labeled[~labeled["correct"].astype(bool)]
    if wrong.empty:
        return Section("Misclassified examples", [Text("No misclassified images.")])
    shown = wrong.sort_values("confidence", ascending=False, kind="stable").head(MISTAKES)
    images = _store_images(inputs.store)
    cards = [Card(png_bytes(np.asarray(images[int(r.index)])) if images is not None else None,
                  r.id, r.label, r.predicted, float(r.confidence)) for r in shown.itertuples()]
    text = f"{len(wrong)} of {len(labeled)} wrong; the {len(cards)} most confident mistakes:"
    return Section("Misclassified examples", [Text(text), Gallery("mistake", cards)])


def _gradcam_cards(folder: Path, rows: pd.DataFrame) -> list[Card]:
    """The listed images that exist; a path out of the folder is an error (nothing else gets inlined)."""
    cards = []
    for r in rows.itertuples():
        path = (folder / r.file).resolve()
        if not path.is_relative_to(folder.resolve()):
            raise VistageError(f"{folder / 'index.csv'}: file {r.file!r} is outside {folder}")
        if path.is_file():
            cards.append(Card(path.read_bytes(), r.id, r.label, r.predicted, float(r.confidence)))
    return cards


def gradcam_section(params: Params, inputs: ReportInputs) -> Section | None:
    if inputs.gradcam is None:
        return None
    index_path = inputs.gradcam / "index.csv"
    if not index_path.is_file():
        return Section("Grad-CAM", [Text(f"No Grad-CAM examples ({index_path} not found).", note=True)])
    index = _csv(index_path, ("file", "id", "label", "predicted", "confidence", "kind"),
                 dtype={"id": str, "label": str, "predicted": str, "file": str, "kind": str})
    blocks = [Text("Where the model looked (Grad-CAM): red regions weigh most in the predicted class.",
                   note=True)]
    for kind, title in (("mistake", "Most confident mistakes:"), ("correct", "Correct predictions:")):
        cards = _gradcam_cards(inputs.gradcam, index[index["kind"] == kind])
        if cards:
            blocks += [Text(title), Gallery(f"gradcam_{kind}", cards)]
    if len(blocks) == 1:
        blocks.append(Text("No examples."))
    return Section("Grad-CAM", blocks)


def params_section(params: Params, inputs: ReportInputs) -> Section:
    return Section("Params", [Table(["param", "value"], _flatten(params.model_dump(mode="json")), long=True, left=True)])


SectionBuilder = Callable[[Params, ReportInputs], Section | None]
SECTIONS: list[SectionBuilder] = [
    metrics_section, change_section, cost_section, training_section, curves_section, calibration_section,
    confusion_section, per_class_section, mistakes_section, gradcam_section, params_section,
]


def build_report(params: Params, inputs: ReportInputs, sections: list[SectionBuilder] = SECTIONS) -> Report:
    built = [section(params, inputs) for section in sections]
    subtitle = f"model {params.model} on {params.data.source}, {params.epochs} epochs"
    return Report("vistage report", subtitle, [s for s in built if s is not None])


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
