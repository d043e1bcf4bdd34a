"""task: classify's report: the sections of its page, in order, around the shared ones
(reporting/sections.py): inference cost, calibration, the confusion matrix, per-class scores,
the most confident mistakes and Grad-CAM examples."""

import numpy as np
import pandas as pd

from ...reporting.blocks import Card, ConfusionGrid, Figure, Gallery, Section, Table, Text
from ...reporting.charts import confusion_png, png_bytes, reliability_chart
from ...reporting.sections import (LONG_TABLE, ReportInputs, change_section, curves_section, metrics_section,
                                   overlay_section, params_section, read_csv, read_json, metrics_by_split,
                                   store_images, training_section)

GRID_MAX_CLASSES = 20  # up to this many classes the confusion matrix is a table; above, an image
TOP_PAIRS = 15  # rows of the most-confused-pairs table
MISTAKES = 24  # images of the most confident mistakes


def _number(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else ""


def cost_section(params, inputs: ReportInputs) -> Section | None:
    if inputs.cost is None:
        return None
    cost = read_json(inputs.cost)
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


def calibration_section(params, inputs: ReportInputs) -> Section | None:
    if inputs.calibration is None:
        return None
    if not inputs.calibration.is_file():
        return Section("Calibration", [Text(f"No reliability data ({inputs.calibration} not found).", note=True)])
    bins = read_csv(inputs.calibration, ("confidence", "accuracy"))
    splits = metrics_by_split(read_json(inputs.metrics))
    headline = next(iter(splits), "test")  # the split the calibration table describes
    text = _ece_text(splits.get(headline, {}), headline) + (
        "Each point is a bin of images by top-1 confidence: below the diagonal the model is over-confident, "
        "above it under-confident.")
    figure = Figure("reliability", "", svg=reliability_chart(bins["confidence"].tolist(), bins["accuracy"].tolist()))
    return Section("Calibration", [figure, Text(text, note=True)])


def _ece_text(scores: dict, split: str) -> str:
    """The headline split's ECE, and with a fitted temperature, the raw softmax's beside it."""
    ece, raw, temperature = (scores.get(k) for k in ("ece", "ece_uncalibrated", "temperature"))
    if not isinstance(ece, float):
        return ""
    if not isinstance(temperature, (int, float)) or temperature == 1 or not isinstance(raw, float):
        return f"Expected calibration error ({split}): {ece:.4f}. "
    return (f"Expected calibration error ({split}): {ece:.4f} with the logits divided by the temperature "
            f"{temperature:.3g} fitted on the validation split (calibrate: true), {raw:.4f} without. ")


def _classes(inputs: ReportInputs) -> list[str]:
    return [str(c) for c in read_json(inputs.store / "classes.json").get("classes", [])]


def confusion_counts(inputs: ReportInputs) -> tuple[np.ndarray, list[str]] | None:
    """The confusion matrix [actual, predicted] and its class names, from the class-pair counts
    when there are some, else from the one-row-per-image table."""
    if inputs.confusion_pairs is not None and inputs.confusion_pairs.is_file():
        pairs = read_csv(inputs.confusion_pairs, ("actual", "predicted", "count"), dtype={"actual": str, "predicted": str})
    elif inputs.confusion.is_file():
        rows = read_csv(inputs.confusion, ("actual", "predicted"), dtype=str)
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


def confusion_section(params, inputs: ReportInputs) -> Section | None:
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


def per_class_section(params, inputs: ReportInputs) -> Section | None:
    if not inputs.per_class.is_file():
        return None
    table = read_csv(inputs.per_class, dtype={"class": str})
    if "f1" in table:
        table = table.sort_values(["f1", "class"], kind="stable")
    rows = [list(r) for r in table.itertuples(index=False)]
    note = Text("Worst F1 first (on the HTML page, click a column header to sort by it).", note=True)
    return Section("Per class", [note, Table(list(table.columns), rows, sortable=True, long=len(rows) > LONG_TABLE)])


def mistakes_section(params, inputs: ReportInputs) -> Section | None:
    if not inputs.predictions.is_file():
        return None
    predictions = read_csv(inputs.predictions, ("index", "id", "label", "predicted", "confidence", "correct"),
                       dtype={"label": str, "predicted": str, "id": str})
    labeled = predictions[predictions["label"] != ""]
    wrong = labeled[~labeled["correct"].astype(bool)]
    if wrong.empty:
        return Section("Misclassified examples", [Text("No misclassified images.")])
    shown = wrong.sort_values("confidence", ascending=False, kind="stable").head(MISTAKES)
    images = store_images(inputs.store)
    cards = [Card(png_bytes(np.asarray(images[int(r.index)])) if images is not None else None,
                  r.id, r.label, r.predicted, float(r.confidence)) for r in shown.itertuples()]
    text = f"{len(wrong)} of {len(labeled)} wrong; the {len(cards)} most confident mistakes:"
    return Section("Misclassified examples", [Text(text), Gallery("mistake", cards)])


def gradcam_section(params, inputs: ReportInputs) -> Section | None:
    if inputs.gradcam is None:
        return None
    return overlay_section(inputs.gradcam, "Grad-CAM",
                           "Where the model looked (Grad-CAM): red regions weigh most in the predicted class.",
                           (("mistake", "Most confident mistakes:"), ("correct", "Correct predictions:")),
                           "gradcam", "No examples.")


SECTIONS = [
    metrics_section, change_section, cost_section, training_section, curves_section, calibration_section,
    confusion_section, per_class_section, mistakes_section, gradcam_section, params_section,
]
