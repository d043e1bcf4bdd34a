from pathlib import Path

import typer

from .options import ParamsOption


def report(params: Path = ParamsOption,
           metrics: Path = typer.Option(Path("metrics"), help="metrics directory"),
           predictions: Path = typer.Option(Path("reports/predictions.csv"), help="predictions CSV"),
           store: Path = typer.Option(Path("data/prepared"), help="prepared store (for example images)"),
           out: Path = typer.Option(Path("reports/index.html"), help="HTML report")) -> None:
    """One self-contained HTML page: params, metrics, learning curves, confusion matrix, mistakes."""
    from ..io import write_text
    from ..params import load_params
    from ..report import build_report

    p = load_params(params, keywords=())
    write_text(out, build_report(p, metrics, predictions, store))
    typer.echo(f"report: {out}")
