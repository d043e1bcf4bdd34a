"""report: one self-contained HTML page, and the same as markdown for pull requests: the task's
metrics and their change since a git revision, curves, its error analysis and the params."""

from pathlib import Path
from typing import Annotated

import typer

from vistage.command import ParamsFile, run, single_command


def report(params: ParamsFile,
           metrics: Annotated[Path, typer.Option(help="metrics of each split to read (JSON)")],
           live: Annotated[Path, typer.Option(help="DVCLive directory of training to read")],
           per_class: Annotated[Path, typer.Option(help="per-class scores to read (CSV)")],
           confusion: Annotated[Path, typer.Option(help="confusion data to read (CSV: actual, predicted)")],
           predictions: Annotated[Path, typer.Option(help="predictions table to read (CSV)")],
           store: Annotated[Path, typer.Option(help="the prepared store (images of the mistakes)")],
           out: Annotated[Path, typer.Option(help="HTML report to write")],
           calibration: Annotated[Path | None, typer.Option(help="reliability bins to read (CSV)")] = None,
           confusion_pairs: Annotated[Path | None, typer.Option(
               help="class-pair counts to read instead of --confusion (CSV: actual, predicted, count)")] = None,
           cost: Annotated[Path | None, typer.Option(help="inference cost to read (JSON)")] = None,
           gradcam: Annotated[Path | None, typer.Option(help="folder of Grad-CAM (or VQA attention) images with "
                                                              "index.csv")] = None,
           markdown: Annotated[Path | None, typer.Option(help="markdown report to write")] = None,
           markdown_files: Annotated[Path | None, typer.Option(
               help="folder to write the markdown's images in (default: NAME_files beside it)")] = None,
           baseline: Annotated[str | None, typer.Option(
               help="git revision to compare the metrics with (default: params report_baseline_rev)")] = None,
           ) -> None:
    """One self-contained HTML page (and optionally markdown) of the task's sections."""
    from vistage.params import load_params
    from vistage.reporting.sections import ReportInputs
    from vistage.tasks import create_task

    p = load_params(params, keywords=())
    inputs = ReportInputs(metrics, live, per_class, confusion, predictions, store, calibration, confusion_pairs,
                          cost, gradcam, baseline if baseline is not None else p.report_baseline_rev)
    typer.echo(f"report: {create_task(p.task).report(p, inputs, out, markdown, markdown_files)}")


app = single_command(report)

if __name__ == "__main__":
    run(app)
