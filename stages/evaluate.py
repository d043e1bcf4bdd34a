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
    there is no test split)."""
    from vistage.evaluation import Predictions, calibration_bins, confusion_rows, per_class_table, split_metrics
    from vistage.evaluation import confusion_pairs as pair_table
    from vistage.io import atomic_path, write_json

    pred = Predictions.load(logits)
    summary = split_metrics(pred)
    headline = pred.of(pred.headline)
    tables = [(per_class, per_class_table(headline)), (confusion, confusion_rows(headline)),
              (calibration, calibration_bins(headline))]
    if confusion_pairs is not None:
        tables.append((confusion_pairs, pair_table(headline)))
    for path, table in tables:
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)
    write_json(metrics, summary)
    for name, m in summary.items():
        typer.echo(f"evaluate ({name}, {m['images']} images): accuracy {m['accuracy']:.4f}, "
                   f"macro F1 {m['f1_macro']:.4f}, ECE {m['ece']:.4f}")


app = single_command(evaluate)

if __name__ == "__main__":
    run(app)
