"""evaluate: score the predictions that predict wrote (no model is run again)."""

from pathlib import Path
from typing import Annotated

import typer

from vistage.command import run, single_command


def evaluate(logits: Annotated[Path, typer.Option(help="the logits predict wrote (.npz)")],
             metrics: Annotated[Path, typer.Option(help="summary metrics to write (JSON)")],
             per_class: Annotated[Path, typer.Option(help="precision/recall/F1 per class to write (CSV)")],
             confusion: Annotated[Path, typer.Option(help="confusion data to write (CSV: actual, predicted)")],
             ) -> None:
    """Accuracy, macro precision/recall/F1, loss, per-class scores and confusion data."""
    from vistage.evaluation import Predictions, classification_metrics, confusion_rows, per_class_table
    from vistage.io import atomic_path, write_json

    pred = Predictions.load(logits)
    pred = pred.of(pred.headline)  # test, or val when there is no test split
    summary = classification_metrics(pred)
    with atomic_path(per_class) as tmp:
        per_class_table(pred).to_csv(tmp, index=False)
    with atomic_path(confusion) as tmp:
        confusion_rows(pred).to_csv(tmp, index=False)
    write_json(metrics, summary)
    typer.echo(f"evaluate ({summary['split']}, {summary['images']} images): accuracy {summary['accuracy']:.4f}, "
               f"macro F1 {summary['f1_macro']:.4f}")


app = single_command(evaluate)

if __name__ == "__main__":
    run(app)
