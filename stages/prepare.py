"""prepare: decode the source data (`data.source`, or `vqa.source` with task: vqa) once into the store."""

from pathlib import Path
from typing import Annotated

import typer

from vistage.command import ParamsFile, run, single_command


def prepare(params: ParamsFile,
            out: Annotated[Path, typer.Option(help="the prepared store to write (a directory)")],
            metrics: Annotated[Path, typer.Option(help="data statistics to write (JSON)")]) -> None:
    """Decode the source data once into the local store at `data.image_size`."""
    from vistage.params import DATA_KEYWORDS, load_params
    from vistage.tasks import create_task

    p = load_params(params, keywords=DATA_KEYWORDS)
    typer.echo(f"prepare: {create_task(p.task).prepare(p, out, metrics)}")


app = single_command(prepare)

if __name__ == "__main__":
    run(app)
