"""train: fit the model params.yaml names; keep best and last checkpoints; resume an interrupted run."""

from pathlib import Path
from typing import Annotated

import typer

from vistage.command import ParamsFile, run, single_command


def train(params: ParamsFile,
          store: Annotated[Path, typer.Option(help="the prepared store to read")],
          split: Annotated[Path, typer.Option(help="the split table to read")],
          models: Annotated[Path, typer.Option(help="checkpoint directory to write (best.pt, last.pt)")],
          live: Annotated[Path, typer.Option(help="DVCLive directory to write (metrics, curves)")]) -> None:
    """Train the model; keep best and last checkpoints; resume an interrupted run.

    With `devices: N` (N > 1) in params.yaml it re-runs itself under torchrun on N processes;
    started by torchrun yourself (several nodes), it joins that process group instead."""
    from vistage.params import load_params
    from vistage.runtime import use_threads
    from vistage.training import TrainPaths, train_stage

    p = load_params(params)
    use_threads(p.threads)  # with dvc queue start -j N on a CPU: cores / N each
    code, summary = train_stage(p, params, TrainPaths(store, split, models, live))
    if summary:
        typer.echo(f"train: {summary}")
    raise typer.Exit(code)


app = single_command(train)

if __name__ == "__main__":
    run(app)
