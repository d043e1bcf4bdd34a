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
    from vistage.vqa.data import write_vqa_store  # either task: one set of dvc.yaml deps

    p = load_params(params, keywords=DATA_KEYWORDS)
    if p.task == "vqa":
        return _prepare_vqa(p, out, metrics, write_vqa_store)
    source = load_source(p.data)
    stats = write_store(out, source, p.data.image_size, p.data.resize, p.data.on_bad_image, p.data.workers)
    stats["empty_folders"] = source.empty_folders
    write_json(metrics, stats)
    left_out = [f"{len(stats['skipped'])} bad files skipped"] if stats["skipped"] else []
    left_out += [f"{len(source.empty_folders)} folders without images left out"] if source.empty_folders else []
    listed = f" ({', '.join(left_out)}: listed in {metrics})" if left_out else ""
    typer.echo(f"prepare: {stats['images']} images, {stats['classes']} classes{listed} -> {out}")


def _prepare_vqa(p, out: Path, metrics: Path, write_vqa_store) -> None:
    """task: vqa: the images decoded once, the questions beside them."""
    from vistage.io import write_json
    from vistage.vqa.sources import load_vqa_source

    stats = write_vqa_store(out, load_vqa_source(p.data, p.vqa), p.data)
    write_json(metrics, stats)
    left_out = [f"{len(stats['skipped'])} bad images or entries skipped"] if stats["skipped"] else []
    left_out += [f"{stats['images_without_questions']} images without questions left out"] \
        if stats["images_without_questions"] else []
    listed = f" ({', '.join(left_out)}: see {metrics})" if left_out else ""
    typer.echo(f"prepare: {stats['images']} images, {stats['questions']} questions{listed} -> {out}")


app = single_command(prepare)

if __name__ == "__main__":
    run(app)
