"""Generated inputs of the report stage, at any number of classes and test images, in a second:
no training, random predictions that are right most of the time and otherwise confuse each class
mostly with its neighbour (as real models confuse similar classes). And the inputs of task: vqa's
report, from given questions and answers, each answered wrong."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import precision_recall_fscore_support

from vistage.params import Params
from vistage.reporting.sections import ReportInputs
from vistage.tasks import create_task

CLASSIFY = create_task("classify").report_layout(Params())  # the classification page
VQA = create_task("vqa").report_layout(Params())


def class_names(n: int) -> list[str]:
    words = ["tabby_cat", "goldfish", "school_bus", "a_rather_long_class_name", "oak", "tulip", "pickup"]
    return [f"{words[i % len(words)]}_{i:03d}" if n > 10 else str(i) for i in range(n)]


def _predictions(n_classes: int, n_test: int, rng: np.random.Generator, id_prefix: str) -> pd.DataFrame:
    labels = rng.integers(0, n_classes, n_test)
    right = rng.random(n_test) < 0.8
    neighbour = (labels + rng.choice([1, 1, 1, 2], n_test)) % n_classes
    predicted = np.where(right, labels, neighbour)
    confidence = np.where(right, rng.beta(8, 2, n_test), rng.beta(4, 3, n_test)).round(5)
    return pd.DataFrame({"index": np.arange(n_test), "id": [f"{id_prefix}{i:05d}" for i in range(n_test)],
                         "label": labels, "predicted": predicted, "confidence": confidence, "correct": right})


def _calibration(pred: pd.DataFrame, bins: int = 15) -> pd.DataFrame:
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(pred["confidence"], edges[1:-1], right=True), 0, bins - 1)
    grouped = pred.assign(bin=which).groupby("bin")
    return pd.DataFrame({"bin_lower": edges[grouped.size().index], "bin_upper": edges[grouped.size().index + 1],
                         "confidence": grouped["confidence"].mean(), "accuracy": grouped["correct"].mean(),
                         "count": grouped.size()}).round(6)


def _per_class(pred: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    labels = range(len(names))
    p, r, f, s = precision_recall_fscore_support(pred["label"], pred["predicted"], labels=labels, zero_division=0)
    return pd.DataFrame({"class": names, "precision": p.round(4), "recall": r.round(4), "f1": f.round(4),
                         "support": s})


def _pairs(rows: pd.DataFrame) -> pd.DataFrame:
    pairs = rows.groupby(["actual", "predicted"]).size().rename("count").reset_index()
    totals = rows.groupby("actual").size()
    return pairs.assign(rate=(pairs["count"] / pairs["actual"].map(totals)).round(6))


def _scores(pred: pd.DataFrame) -> dict:
    acc = float(pred["correct"].mean())
    return {"images": len(pred), "accuracy": round(acc, 6), "f1_macro": round(acc - 0.01, 6),
            "loss": round(1 - acc, 6), "ece": 0.05}


def _write_live(live: Path, epochs: int = 5) -> None:
    curves = live / "plots" / "metrics"
    steps = np.arange(epochs)
    for name, values in {"train/loss": 2 / (steps + 1), "val/loss": 2.2 / (steps + 1), "train/acc": 1 - 0.5 / (steps + 1),
                         "val/acc": 1 - 0.6 / (steps + 1), "lr": 0.003 * (1 - steps / epochs)}.items():
        (curves / name).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"step": steps, name.split("/")[-1]: values}).to_csv(curves / f"{name}.tsv", sep="\t", index=False)
    (live / "metrics.json").write_text(json.dumps({"step": epochs - 1, "train": {"loss": 0.4}, "val": {"acc": 0.88}}))


def _overlay(rng: np.random.Generator, size: int = 64) -> Image.Image:
    """A stand-in for a Grad-CAM overlay: an image with a red blob where the model 'looked'."""
    y, x = np.mgrid[:size, :size] / size
    cy, cx = rng.random(2)
    heat = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) * 12)
    base = rng.integers(60, 200, (size, size, 1)) * np.ones(3)
    rgb = base * (1 - 0.6 * heat[..., None]) + np.array([255, 40, 0]) * 0.6 * heat[..., None]
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def _write_gradcam(folder: Path, pred: pd.DataFrame, names: list[str], rng, per_kind: int = 6) -> None:
    folder.mkdir(parents=True)
    rows = []
    for kind, chosen in (("mistake", pred[~pred["correct"]].nlargest(per_kind, "confidence")),
                         ("correct", pred[pred["correct"]].head(per_kind))):
        for r in chosen.itertuples():
            file = f"{kind}_{r.id}.png"
            _overlay(rng).save(folder / file)
            rows.append([file, r.id, names[r.label], names[r.predicted], r.confidence, kind])
    pd.DataFrame(rows, columns=["file", "id", "label", "predicted", "confidence", "kind"]).to_csv(
        folder / "index.csv", index=False)


def _write_store(store: Path, classes: list[str], n_images: int, rng: np.random.Generator) -> None:
    """Class names and 16x16 gradient images."""
    store.mkdir(parents=True)
    (store / "classes.json").write_text(json.dumps({"classes": classes}))
    images = (rng.integers(0, 255, (n_images, 1, 1, 3)) * np.linspace(0.3, 1, 16)[None, :, None, None]
              * np.ones((1, 1, 16, 1))).astype(np.uint8)
    np.save(store / "images.npy", images)


def write_report_inputs(root: Path, n_classes: int, n_test: int, seed: int = 0, optional: bool = True,
                        names: list[str] | None = None, id_prefix: str = "img") -> ReportInputs:
    """Every input of the report under `root` (the optional ones too unless `optional` is False);
    the class names generated unless given, the image ids `id_prefix` and a number."""
    rng = np.random.default_rng(seed)
    names = names or class_names(n_classes)
    pred = _predictions(n_classes, n_test, rng, id_prefix)
    store, metrics = root / "data" / "prepared", root / "metrics"
    _write_store(store, names, n_test, rng)
    (metrics / "train").mkdir(parents=True)
    (root / "reports").mkdir()
    pred.assign(label=[names[i] for i in pred["label"]], predicted=[names[i] for i in pred["predicted"]]).to_csv(
        root / "reports" / "predictions.csv", index=False)
    rows = pd.DataFrame({"actual": [names[i] for i in pred["label"]], "predicted": [names[i] for i in pred["predicted"]]})
    rows.to_csv(metrics / "confusion.csv", index=False)
    _per_class(pred, names).to_csv(metrics / "per_class.csv", index=False)
    (metrics / "eval.json").write_text(json.dumps({"test": _scores(pred), "val": _scores(pred.iloc[::2])}, indent=2))
    _write_live(metrics / "train")
    inputs = ReportInputs(metrics / "eval.json", metrics / "train", metrics / "per_class.csv", metrics / "confusion.csv",
                          root / "reports" / "predictions.csv", store)
    if optional:
        _calibration(pred).to_csv(metrics / "calibration.csv", index=False)
        _pairs(rows).to_csv(metrics / "confusion_pairs.csv", index=False)
        (metrics / "cost.json").write_text(json.dumps({
            "device": "cpu (generated)", "latency_ms_p50": 3.21, "latency_ms_p95": 4.5, "throughput_img_s": 812.5,
            "batch_size": 64, "model": "simple_cnn", "params_count": 1234567}))
        _write_gradcam(root / "reports" / "gradcam", pred, names, rng)
        inputs.calibration, inputs.confusion_pairs = metrics / "calibration.csv", metrics / "confusion_pairs.csv"
        inputs.cost, inputs.gradcam = metrics / "cost.json", root / "reports" / "gradcam"
    return inputs


def write_vqa_report_inputs(root: Path, questions: list[str], answers: list[str], answer_type: str = "yes/no",
                            seed: int = 0) -> ReportInputs:
    """task: vqa's report inputs: question i about image i, expected answers[i], answered
    answers[i + 1] (all wrong, so every question and answer is in the gallery); the answer type
    names a row of the metrics."""
    rng = np.random.default_rng(seed)
    n = len(questions)
    store, metrics, reports = root / "data" / "prepared", root / "metrics", root / "reports"
    _write_store(store, sorted(set(answers)), n, rng)
    (metrics / "train").mkdir(parents=True)
    reports.mkdir()
    given = [answers[(i + 1) % len(answers)] for i in range(n)]
    pd.DataFrame({"question": questions, "answer": given, "confidence": np.linspace(0.9, 0.5, n).round(4),
                  "expected": answers[:n], "score": 0.0, "image_index": np.arange(n)}).to_csv(
        reports / "predictions.csv", index=False)
    pd.DataFrame({"actual": answers[:n], "predicted": given}).to_csv(metrics / "confusion.csv", index=False)
    pd.DataFrame({"class": sorted(set(answers[:n])), "precision": 0.0, "recall": 0.0, "f1": 0.0,
                  "support": 1}).to_csv(metrics / "per_class.csv", index=False)
    scores = {"questions": n, "vqa_accuracy": 0.0, "accuracy": 0.0, "wups_0.9": 0.25, "wups_0.0": 0.5,
              "per_answer_type": {answer_type: 0.0},
              "single_answer": {"questions": n - 1, "accuracy": 0.0, "wups_0.9": 0.125, "wups_0.0": 0.375}}
    (metrics / "eval.json").write_text(json.dumps({"test": scores}, indent=2))
    _write_live(metrics / "train")
    return ReportInputs(metrics / "eval.json", metrics / "train", metrics / "per_class.csv", metrics / "confusion.csv",
                        reports / "predictions.csv", store)
