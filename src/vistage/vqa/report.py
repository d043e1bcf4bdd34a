"""The report page of task: vqa (report.py's `build_report` hands over to it): the VQA metrics
per split and per answer type, answerability, the learning curves, and a gallery of wrong answers
(image, question, expected, predicted, confidence), most confident first."""

import html

import numpy as np
import pandas as pd

from ..report import STYLE, _curve, _flatten, _json, _png, _table, line_chart


def metrics_html(eval_metrics: dict) -> str:
    splits = {name: m for name, m in eval_metrics.items() if isinstance(m, dict)}
    rows = [(key, *(m.get(key, "") for m in splits.values())) for key in ("questions", "vqa_accuracy", "accuracy")]
    out = _table(rows, ("metric", *splits))
    types = sorted({t for m in splits.values() for t in m.get("per_answer_type", {})})
    if types:
        out += "<h3>VQA accuracy per answer type</h3>" + _table(
            [(t, *(m.get("per_answer_type", {}).get(t, "") for m in splits.values())) for t in types],
            ("answer type", *splits))
    keys = sorted({k for m in splits.values() for k in m.get("answerability", {})})
    if keys:
        out += "<h3>Answerability</h3>" + _table(
            [(k, *(m.get("answerability", {}).get(k, "") for m in splits.values())) for k in keys],
            ("metric", *splits))
    return out


def wrong_answers_html(predictions: pd.DataFrame, images, limit: int = 24) -> str:
    answered = predictions[predictions["expected"] != ""]
    wrong = answered[answered["score"].astype(float) < 1]
    if answered.empty:
        return "<p>No answered questions to compare with.</p>"
    if wrong.empty:
        return f"<p>All {len(answered)} answers right.</p>"
    shown = wrong.sort_values("confidence", ascending=False, kind="stable").head(limit)
    cards = []
    for row in shown.itertuples():
        img = f'<img src="{_png(np.asarray(images[int(row.image_index)]))}">' if images is not None else ""
        cards.append(f'<div class=card style="width:150px">{img}<br>{html.escape(row.question)}<br>expected '
                     f'<b>{html.escape(row.expected)}</b><br>predicted <b>{html.escape(row.answer)}</b> '
                     f'({row.confidence:.2f}, score {float(row.score):.2f})</div>')
    return (f"<p>{len(wrong)} of {len(answered)} answers not fully right; the {len(shown)} most confident:</p>"
            "<div class=grid>" + "".join(cards) + "</div>")


def build_vqa_report(params, inputs) -> str:
    eval_metrics, train_metrics = _json(inputs.metrics), _json(inputs.live / "metrics.json")
    sections = [f"<h1>vistage report: visual question answering</h1><p class=sub>model "
                f"<b>{html.escape(params.model)}</b> on <b>{html.escape(params.vqa.source)}</b>, {params.epochs} "
                "epochs</p>", "<h2>Test metrics</h2>" + metrics_html(eval_metrics)]
    epochs_trained = [("epochs trained", train_metrics.pop("step") + 1)] if "step" in train_metrics else []
    sections.append("<h2>Last training epoch</h2>" + _table(epochs_trained + _flatten(train_metrics),
                                                             ("metric", "value")))
    live = inputs.live
    charts = [line_chart("loss", {"train": _curve(live, "train/loss"), "val": _curve(live, "val/loss")}),
              line_chart("VQA accuracy", {"train": _curve(live, "train/acc"), "val": _curve(live, "val/acc")}),
              line_chart("learning rate", {"lr": _curve(live, "lr")})]
    sections.append("<h2>Learning curves</h2><div class=charts>" + "".join(charts) + "</div>")
    if inputs.predictions.is_file():
        predictions = pd.read_csv(inputs.predictions, dtype=str, keep_default_na=False)
        predictions["confidence"] = predictions["confidence"].astype(float)
        images_path = inputs.store / "images.npy"
        images = np.load(images_path, mmap_mode="r") if images_path.is_file() else None
        sections.append("<h2>Wrong answers</h2>" + wrong_answers_html(predictions, images))
    sections.append("<h2>Params</h2>" + _table(_flatten(params.model_dump(mode="json")), ("param", "value")))
    return (f"<!doctype html><html><head><meta charset=utf-8><title>vistage report (VQA)</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>\n")
