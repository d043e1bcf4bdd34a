"""predict: run the best checkpoint once over the test and validation images; keep their logits
for evaluate and report."""

from pathlib import Path
from typing import Annotated

import typer

from vistage.command import ParamsFile, run, single_command


def predict(params: ParamsFile,
            checkpoint: Annotated[Path, typer.Option(help="the checkpoint to predict with")],
            store: Annotated[Path, typer.Option(help="the prepared store to read")],
            split: Annotated[Path, typer.Option(help="the split table to read")],
            out: Annotated[Path, typer.Option(help="test predictions table to write (CSV, one row per image)")],
            logits: Annotated[Path, typer.Option(help="logits, labels, splits and class names of the test and "
                                                      "validation images to write (.npz)")]) -> None:
    """One row per test image (id, label, predicted class, confidence, correct; the validation
    images when there is no test split), and the raw logits of the test and validation images."""
    from vistage.evaluation import predict_splits
    from vistage.io import atomic_path
    from vistage.params import load_params

    p = load_params(params, keywords=())
    pred = predict_splits(checkpoint, store, split, p.device)
    headline = pred.of(pred.headline)
    with atomic_path(out) as tmp:
        headline.table().to_csv(tmp, index=False)
    pred.save(logits)
    counts = ", ".join(f"{len(pred.of(name).index)} {name}" for name in pred.split_names)
    typer.echo(f"predict: {counts} images -> {out} ({pred.headline}), {logits}")


app = single_command(predict)

if __name__ == "__main__":
    run(app)
