"""evaluate: score the predictions that predict wrote (no model is run again)."""

from pathlib import Path
from typing import Annotated

import typer

from vistage.command import ParamsFile, run, single_command


def evaluate(params: ParamsFile,
             logits: Annotated[Path, typer.Option(help="the predictions predict wrote (.npz)")],
             metrics: Annotated[Path, typer.Option(help="metrics of each split to write (JSON)")],
             per_class: Annotated[Path, typer.Option(help="scores per class (or answer) to write (CSV)")],
             confusion: Annotated[Path, typer.Option(help="confusion data to write (CSV: actual, predicted)")],
             calibration: Annotated[Path, typer.Option(help="reliability diagram data to write (CSV)")],
             confusion_pairs: Annotated[Path | None, typer.Option(
                 help="confusion matrix to write as one row per class pair (CSV: actual, predicted, count, "
                      "rate = count / images of the actual class)")] = None,
             ) -> None:
    """Scores of the test and validation splits, and the per-class, confusion and reliability
    tables of the test split (validation when there is no test split; the training images, as train,
    when neither: a fit, and it says so). task: classify: accuracy,
    top-5, macro and weighted precision/recall/F1, loss, calibration error; task: vqa: the official
    VQA accuracy, plain accuracy, per answer type and answerability where the data gives them."""
    from vistage.params import load_params
    from vistage.tasks import EvaluatePaths, create_task

    p = load_params(params, keywords=())
    paths = EvaluatePaths(metrics, per_class, confusion, calibration, confusion_pairs)
    typer.echo("evaluate: " + "; ".join(create_task(p.task).evaluate(p, logits, paths)))


app = single_command(evaluate)

if __name__ == "__main__":
    run(app)
