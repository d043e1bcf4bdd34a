"""predict: run the best checkpoint once over the test split; keep its logits for evaluate and report."""

from pathlib import Path
from typing import Annotated

import typer

from vistage.command import ParamsFile, run, single_command


def predict(params: ParamsFile,
            checkpoint: Annotated[Path, typer.Option(help="the checkpoint to predict with")],
            store: Annotated[Path, typer.Option(help="the prepared store to read")],
            split: Annotated[Path, typer.Option(help="the split table to read")],
            out: Annotated[Path, typer.Option(help="predictions table to write (CSV, one row per image)")],
            logits: Annotated[Path, typer.Option(help="logits, labels and class names to write (.npz)")]) -> None:
    """One row per test image (id, label, predicted class, confidence, correct), and the raw logits."""
    from vistage.evaluation import predict_split
    from vistage.io import atomic_path
    from vistage.params import load_params

    p = load_params(params, keywords=())
    pred = predict_split(checkpoint, store, split, p.device)
    with atomic_path(out) as tmp:
        pred.table().to_csv(tmp, index=False)
    pred.save(logits)
    typer.echo(f"predict: {len(pred.index)} {pred.split} images -> {out}, {logits}")


app = single_command(predict)

if __name__ == "__main__":
    run(app)
