"""split: stratified, seeded train/val/test assignment of every image (or question) in the store."""

from pathlib import Path
from typing import Annotated

import typer

from vistage.command import ParamsFile, run, single_command


def split(params: ParamsFile,
          store: Annotated[Path, typer.Option(help="the prepared store to read")],
          out: Annotated[Path, typer.Option(help="split table to write (index, split)")],
          metrics: Annotated[Path, typer.Option(help="per-split, per-class counts to write (JSON)")]) -> None:
    """Split the store into stratified, seeded train/val/test parts (task: vqa: questions, grouped by image)."""
    from vistage.params import DATA_KEYWORDS, load_params
    from vistage.tasks import create_task

    p = load_params(params, keywords=DATA_KEYWORDS)
    typer.echo(f"split: {create_task(p.task).split(p, store, out, metrics)}")


app = single_command(split)

if __name__ == "__main__":
    run(app)
