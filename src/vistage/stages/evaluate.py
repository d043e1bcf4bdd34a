from pathlib import Path

import typer

from .options import ParamsOption


def evaluate(params: Path = ParamsOption,
             checkpoint: Path = typer.Option(Path("models/best.pt"), help="checkpoint to evaluate"),
             store: Path = typer.Option(Path("data/prepared"), help="prepared store"),
             split: Path = typer.Option(Path("data/split.csv"), help="split table"),
             metrics: Path = typer.Option(Path("metrics/eval.json"), help="summary metrics (JSON)"),
             per_class: Path = typer.Option(Path("metrics/per_class.csv"), help="precision/recall/F1 per class"),
             confusion: Path = typer.Option(Path("metrics/confusion.csv"), help="confusion data (actual, predicted)"),
             ) -> None:
    """Accuracy, macro precision/recall/F1, per-class scores and a confusion matrix on the test split."""
    from ..evaluation import classification_metrics, confusion_rows, per_class_table, predict_split
    from ..io import atomic_path, write_json
    from ..params import load_params

    p = load_params(params, keywords=())
    pred, _, classes = predict_split(checkpoint, store, split, p.device)
    summary = classification_metrics(pred, classes)
    with atomic_path(per_class) as tmp:
        per_class_table(pred, classes).to_csv(tmp, index=False)
    with atomic_path(confusion) as tmp:
        confusion_rows(pred).to_csv(tmp, index=False)
    write_json(metrics, summary)
    typer.echo(f"evaluate ({summary['split']}, {summary['images']} images): accuracy {summary['accuracy']:.4f}, "
               f"macro F1 {summary['f1_macro']:.4f}")
