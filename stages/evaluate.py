"""evaluate: score the predictions that predict wrote (no model is run again)."""

from pathlib import Path
from typing import Annotated

import typer

from vistage.command import run, single_command


def evaluate(logits: Annotated[Path, typer.Option(help="the logits predict wrote (.npz)")],
             metrics: Annotated[Path, typer.Option(help="metrics of each split to write (JSON)")],
             per_class: Annotated[Path, typer.Option(help="precision/recall/F1 per class to write (CSV)")],
             confusion: Annotated[Path, typer.Option(help="confusion data to write (CSV: actual, predicted)")],
             calibration: Annotated[Path, typer.Option(help="reliability diagram data to write (CSV)")],
             confusion_pairs: Annotated[Path | None, typer.Option(
                 help="confusion matrix to write as one row per class pair (CSV: actual, predicted, count, "
                      "rate = count / images of the actual class)")] = None,
             ) -> None:
    """Accuracy, top-5 accuracy, macro and weighted precision/recall/F1, loss and calibration
    error of the test and validation splits; per-class scores, confusion (per image, and per class
    pair with its row-normalised rate) and reliability data of the test split (validation when
    there is no test split).

    task: vqa: the official VQA accuracy, plain accuracy, per answer type and answerability where
    the data gives them (vistage/vqa/metrics.py); per answer, confusion and reliability data."""
    from vistage import evaluation
    from vistage.vqa import metrics as vqa

    if vqa.is_vqa_predictions(logits):
        return _evaluate_vqa(vqa.VqaPredictions.load(logits), metrics, per_class, confusion, calibration,
                             confusion_pairs)
    pred = evaluation.Predictions.load(logits)
    summary = evaluation.split_metrics(pred)
    headline = pred.of(pred.headline)
    tables = [(per_class, evaluation.per_class_table(headline)), (confusion, evaluation.confusion_rows(headline)),
              (calibration, evaluation.calibration_bins(headline))]
    if confusion_pairs is not None:
        tables.append((confusion_pairs, evaluation.confusion_pairs(headline)))
    _write(tables, metrics, summary)
    for name, m in summary.items():
        typer.echo(f"evaluate ({name}, {m['images']} images): accuracy {m['accuracy']:.4f}, "
                   f"macro F1 {m['f1_macro']:.4f}, ECE {m['ece']:.4f}")


def _evaluate_vqa(pred, metrics: Path, per_class: Path, confusion: Path, calibration: Path,
                  confusion_pairs: Path | None) -> None:
    from vistage.vqa import metrics as vqa

    summary = vqa.split_metrics(pred)
    headline = pred.of(pred.headline)
    rows = vqa.confusion_rows(headline)
    tables = [(per_class, vqa.per_answer_table(headline)), (confusion, rows),
              (calibration, vqa.calibration_bins(headline))]
    if confusion_pairs is not None:
        tables.append((confusion_pairs, vqa.confusion_pairs(rows)))
    _write(tables, metrics, summary)
    for name, m in summary.items():
        types = ", ".join(f"{t} {v:.4f}" for t, v in m.get("per_answer_type", {}).items())
        typer.echo(f"evaluate ({name}, {m['questions']} questions): VQA accuracy {m['vqa_accuracy']:.4f}, "
                   f"accuracy {m['accuracy']:.4f}{f' ({types})' if types else ''}")


def _write(tables: list, metrics: Path, summary: dict) -> None:
    """Each (path, DataFrame) as a CSV, then the metrics JSON: every file written atomically."""
    from vistage.io import atomic_path, write_json

    for path, table in tables:
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)
    write_json(metrics, summary)


app = single_command(evaluate)

if __name__ == "__main__":
    run(app)
