from pathlib import Path

import typer

from .options import ParamsOption


def prepare(params: Path = ParamsOption,
            out: Path = typer.Option(Path("data/prepared"), help="prepared store (directory)"),
            metrics: Path = typer.Option(Path("metrics/data.json"), help="data statistics (JSON)")) -> None:
    """Decode the source data once into the local store at `data.image_size`."""
    from ..data.sources import load_source
    from ..data.store import write_store
    from ..io import write_json
    from ..params import DATA_KEYWORDS, load_params

    p = load_params(params, keywords=DATA_KEYWORDS)
    stats = write_store(out, load_source(p.data), p.data.image_size, p.data.resize, p.data.on_bad_image,
                        p.data.workers)
    write_json(metrics, stats)
    skipped = f", {len(stats['skipped'])} bad files skipped" if stats["skipped"] else ""
    typer.echo(f"prepare: {stats['images']} images, {stats['classes']} classes{skipped} -> {out}")
