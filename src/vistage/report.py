"""A single self-contained HTML page: params, metrics, learning curves, confusion matrix,
per-class scores and the most confident mistakes (images inlined as base64 PNG)."""

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .params import Params

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{margin-bottom:0}.sub{color:#666;margin-top:.2em}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.grid{display:flex;flex-wrap:wrap;gap:10px}
.card{width:110px;font-size:11px;text-align:center}.card img{width:96px;height:96px;image-rendering:pixelated}
.cm td{min-width:2.2em}.charts{display:flex;flex-wrap:wrap;gap:20px}
"""


def _table(rows: list[tuple], header: tuple | None = None) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th class=l>{html.escape(str(h))}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = [f"<td class=l>{html.escape(str(row[0]))}</td>"]
        cells += [f"<td>{html.escape(_fmt(v))}</td>" for v in row[1:]]
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if 0 < abs(v) < 1e-3 else f"{v:.4f}"
    return str(v)


def _flatten(d: dict, prefix: str = "") -> list[tuple]:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            rows += _flatten(v, f"{prefix}{k}.")
        else:
            rows.append((f"{prefix}{k}", v if not isinstance(v, list) else ", ".join(map(str, v))))
    return rows


def line_chart(title: str, series: dict[str, tuple[list, list]], width: int = 480, height: int = 260) -> str:
    """An inline SVG line chart of several (x, y) series."""
    series = {k: v for k, v in series.items() if len(v[0])}
    if not series:
        return ""
    xs = np.concatenate([np.asarray(x, float) for x, _ in series.values()])
    ys = np.concatenate([np.asarray(y, float) for _, y in series.values()])
    x0, x1 = xs.min(), max(xs.max(), xs.min() + 1)
    y0, y1 = ys.min(), ys.max()
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    left, right, top, bottom = 62, 10, 25, 30
    pw, ph = width - left - right, height - top - bottom

    def px(x):
        return left + (x - x0) / (x1 - x0) * pw

    def py(y):
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11">',
             f'<text x="{left}" y="15" font-weight="bold">{html.escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>']
    for frac in (0, 0.5, 1):
        y = y0 + frac * (y1 - y0)
        parts.append(f'<text x="{left - 4}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.3g}</text>')
    parts.append(f'<text x="{left}" y="{height - 10}">{x0:g}</text>'
                 f'<text x="{left + pw}" y="{height - 10}" text-anchor="end">{x1:g} (epoch)</text>')
    for i, (name, (x, y)) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x, y))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        parts.append(f'<text x="{left + pw - 5}" y="{top + 14 + 13 * i}" text-anchor="end" fill="{color}">'
                     f'{html.escape(name)}</text>')
    return "".join(parts) + "</svg>"


def _curve(live_dir: Path, name: str) -> tuple[list, list]:
    path = live_dir / "plots" / "metrics" / f"{name}.tsv"
    if not path.is_file():
        return [], []
    df = pd.read_csv(path, sep="\t")
    return (df["step"] + 1).tolist(), df[name.split("/")[-1]].tolist()


def confusion_html(confusion: pd.DataFrame, classes: list[str]) -> str:
    cm = pd.crosstab(confusion["actual"], confusion["predicted"]).reindex(index=classes, columns=classes, fill_value=0)
    top = max(int(cm.to_numpy().max()), 1)
    out = ['<table class=cm><tr><th class=l>actual \\ predicted</th>']
    out += [f"<th>{html.escape(c)}</th>" for c in classes] + ["</tr>"]
    for actual in classes:
        out.append(f"<tr><th class=l>{html.escape(actual)}</th>")
        for pred in classes:
            n = int(cm.loc[actual, pred])
            alpha = n / top
            color = f"rgba(31,119,180,{alpha:.2f})" if actual == pred else f"rgba(214,39,40,{alpha:.2f})"
            out.append(f'<td style="background:{color}">{n or ""}</td>')
        out.append("</tr>")
    return "".join(out) + "</table>"


def _png(img: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def mistakes_html(predictions: pd.DataFrame, store_dir: Path, limit: int = 24) -> str:
    wrong = predictions[(predictions["label"].astype(str) != "") & (~predictions["correct"].astype(bool))]
    if wrong.empty:
        return "<p>No misclassified images.</p>"
    wrong = wrong.sort_values("confidence", ascending=False).head(limit)
    images_path = store_dir / "images.npy"
    images = np.load(images_path, mmap_mode="r") if images_path.is_file() else None
    cards = []
    for row in wrong.itertuples():
        img = f'<img src="{_png(np.asarray(images[int(row.index)]))}">' if images is not None else ""
        cards.append(f'<div class=card>{img}<br>{html.escape(str(row.id))}<br>true <b>{html.escape(str(row.label))}'
                     f'</b><br>predicted <b>{html.escape(str(row.predicted))}</b> ({row.confidence:.2f})</div>')
    return (f"<p>{len(predictions[~predictions['correct'].astype(bool)])} of {len(predictions)} wrong; "
            f"the {len(wrong)} most confident mistakes:</p><div class=grid>" + "".join(cards) + "</div>")


@dataclass
class ReportInputs:
    """Every file the report reads (dvc.yaml names each one in the report stage)."""

    metrics: Path  # test metrics (JSON)
    live: Path  # DVCLive directory of training
    per_class: Path
    confusion: Path
    predictions: Path
    store: Path  # prepared store: the images of the mistakes


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _split_table(eval_metrics: dict) -> str:
    """One row per metric, one column per split of metrics/eval.json ({"test": {...}, "val": {...}})."""
    splits = {name: scores for name, scores in eval_metrics.items() if isinstance(scores, dict)}
    names = list(dict.fromkeys(metric for scores in splits.values() for metric in scores))
    return _table([(metric, *(scores.get(metric, "") for scores in splits.values())) for metric in names],
                  ("metric", *splits))


def build_report(params: Params, inputs: ReportInputs) -> str:
    if params.task == "vqa":  # the VQA page: vqa/report.py
        from .vqa.report import build_vqa_report

        return build_vqa_report(params, inputs)
    eval_metrics, train_metrics = _json(inputs.metrics), _json(inputs.live / "metrics.json")
    sections = [f"<h1>vistage report</h1><p class=sub>model <b>{html.escape(params.model)}</b> on "
                f"<b>{html.escape(params.data.source)}</b>, {params.epochs} epochs</p>"]
    sections.append("<h2>Test metrics</h2>" + _split_table(eval_metrics))
    # DVCLive counts steps from 0: show the number of epochs trained instead
    epochs_trained = [("epochs trained", train_metrics.pop("step") + 1)] if "step" in train_metrics else []
    sections.append("<h2>Last training epoch</h2>" + _table(epochs_trained + _flatten(train_metrics),
                                                             ("metric", "value")))
    live = inputs.live
    charts = [line_chart("loss", {"train": _curve(live, "train/loss"), "val": _curve(live, "val/loss")}),
              line_chart("accuracy", {"train": _curve(live, "train/acc"), "val": _curve(live, "val/acc")}),
              line_chart("learning rate", {"lr": _curve(live, "lr")})]
    sections.append("<h2>Learning curves</h2><div class=charts>" + "".join(charts) + "</div>")
    classes = _json(inputs.store / "classes.json").get("classes")
    if inputs.confusion.is_file():
        confusion = pd.read_csv(inputs.confusion, dtype=str, keep_default_na=False)
        classes = classes or sorted(set(confusion["actual"]) | set(confusion["predicted"]))
        sections.append("<h2>Confusion matrix</h2>" + confusion_html(confusion, classes))
    if inputs.per_class.is_file():
        per_class = pd.read_csv(inputs.per_class, dtype={"class": str}, keep_default_na=False)
        sections.append("<h2>Per class</h2>" + _table([tuple(r) for r in per_class.itertuples(index=False)],
                                                       tuple(per_class.columns)))
    if inputs.predictions.is_file():
        predictions = pd.read_csv(inputs.predictions, dtype={"label": str, "predicted": str, "id": str},
                                  keep_default_na=False)
        sections.append("<h2>Misclassified examples</h2>" + mistakes_html(predictions, inputs.store))
    sections.append("<h2>Params</h2>" + _table(_flatten(params.model_dump(mode="json")), ("param", "value")))
    return (f"<!doctype html><html><head><meta charset=utf-8><title>vistage report</title><style>{STYLE}</style>"
            f"</head><body>{''.join(sections)}</body></html>\n")
