"""prepare: decode the source data (`data.source`, `data.path` in params.yaml) once into the store."""

from pathlib import Path
from typing import Annotated

import typer

from vistage.command import ParamsFile, run, single_command


def prepare(params: ParamsFile,
            out: Annotated[Path, typer.Option(help="the prepared store to write (a directory)")],
            metrics: Annotated[Path, typer.Option(help="data statistics to write (JSON)")]) -> None:
    """Decode the source data once into the local store at `data.image_size`."""
    from vistage.data.sources import load_source
    from vistage.data.store import write_store
    from vistage.io import write_json
    from vistage.params import DATA_KEYWORDS, load_params

    p = load_params(params, keywords=DATA_KEYWORDS)
    stats = write_store(out, load_source(p.data), p.data.image_size, p.data.resize, p.data.on_bad_image,
                        p.data.workers)
    write_json(metrics, stats)
    skipped = f", {len(stats['skipped'])} bad files skipped (listed in {metrics})" if stats["skipped"] else ""
    typer.echo(f"prepare: {stats['images']} images, {stats['classes']} classes{skipped} -> {out}")


app = single_command(prepare)

if __name__ == "__main__":
    run(app)
