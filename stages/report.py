"""report: one self-contained HTML page of params, metrics, curves, confusion matrix and mistakes."""

from pathlib import Path
from typing import Annotated

import typer

from vistage.command import ParamsFile, run, single_command


def report(params: ParamsFile,
           metrics: Annotated[Path, typer.Option(help="test metrics to read (JSON)")],
           live: Annotated[Path, typer.Option(help="DVCLive directory of training to read")],
           per_class: Annotated[Path, typer.Option(help="per-class scores to read (CSV)")],
           confusion: Annotated[Path, typer.Option(help="confusion data to read (CSV)")],
           predictions: Annotated[Path, typer.Option(help="predictions table to read (CSV)")],
           store: Annotated[Path, typer.Option(help="the prepared store (images of the mistakes)")],
           out: Annotated[Path, typer.Option(help="HTML report to write")]) -> None:
    """One self-contained HTML page: params, metrics, learning curves, confusion matrix, mistakes."""
    from vistage.io import write_text
    from vistage.params import load_params
    from vistage.report import ReportInputs, build_report
    from vistage.vqa import report as _vqa_report  # noqa: F401  (task: vqa's page; either task: one set of deps)

    p = load_params(params, keywords=())
    inputs = ReportInputs(metrics, live, per_class, confusion, predictions, store)
    write_text(out, build_report(p, inputs))
    typer.echo(f"report: {out}")


app = single_command(report)

if __name__ == "__main__":
    run(app)
