"""export: the best checkpoint as files a server runs without vistage (params `export:` lists the
formats), with model.json, and their parity and latency against PyTorch on the test images."""

from pathlib import Path
from typing import Annotated

import typer

from vistage.command import ParamsFile, run, single_command

Opt = typer.Option


def export(params: ParamsFile,
           checkpoint: Annotated[Path, Opt(help="the checkpoint to export")],
           store: Annotated[Path, Opt(help="the prepared store (its test images check the exported model)")],
           split: Annotated[Path, Opt(help="the split table to read")],
           out: Annotated[Path, Opt(help="folder to write: model.json and model.onnx / model.ts as params "
                                         "export lists")],
           metrics: Annotated[Path, Opt(help="parity with PyTorch and batch-1 latency to write (JSON)")],
           ) -> None:
    """model.json (classes, preprocessing, temperature) and each format of params `export:`
    (onnx, torchscript): the model with the resize and test-time views predict applies, taking
    normalised images with a dynamic batch size. Each format is checked against PyTorch on every
    test image (top-1 agreement, max logit difference) and timed at batch 1 beside eager PyTorch.
    A model a format cannot export is a warning line, recorded in both files."""
    from vistage.export import ExportPaths, export_model
    from vistage.params import load_params
    from vistage.runtime import use_threads

    p = load_params(params, keywords=())
    use_threads(p.threads)  # with dvc queue start -j N on a CPU: cores / N each
    typer.echo(f"export: {export_model(p, ExportPaths(checkpoint, store, split, out, metrics))}")


app = single_command(export)

if __name__ == "__main__":
    run(app)
