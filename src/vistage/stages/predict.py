from pathlib import Path

import typer

from .options import ParamsOption


def predict(params: Path = ParamsOption,
            checkpoint: Path = typer.Option(Path("models/best.pt"), help="checkpoint to predict with"),
            store: Path = typer.Option(Path("data/prepared"), help="prepared store"),
            split: Path = typer.Option(Path("data/split.csv"), help="split table"),
            out: Path = typer.Option(Path("reports/predictions.csv"), help="predictions CSV")) -> None:
    """Write one row per test image: id, label, predicted class, confidence, correct."""
    from ..evaluation import predict_split
    from ..io import atomic_path
    from ..params import load_params

    p = load_params(params, keywords=())
    pred, _, _ = predict_split(checkpoint, store, split, p.device)
    with atomic_path(out) as tmp:
        pred.table.to_csv(tmp, index=False)
    typer.echo(f"predict: {len(pred.table)} {pred.split} images -> {out}")
