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
    from vistage import distributed
    from vistage.params import load_params

    p = load_params(params)
    if p.devices > 1 and not distributed.under_torchrun():
        import subprocess

        from vistage.data.split import load_split
        from vistage.runtime import resolve_device

        n_train = int((load_split(split)["split"] == "train").sum())
        distributed.check_launch(p.devices, p.batch_size, resolve_device(p.device).type, n_train, str(params))
        args = ["--params", params, "--store", store, "--split", split, "--models", models, "--live", live]
        cmd = distributed.relaunch_command(p.devices, "stages.train", [str(a) for a in args])
        typer.echo(f"train: {p.devices} processes: {' '.join(cmd)}", err=True)
        raise typer.Exit(subprocess.run(cmd).returncode)

    from vistage.training import TrainPaths, train as run_training

    result = run_training(p, TrainPaths(store, split, models, live))
    if distributed.is_main_process():
        typer.echo("train: " + ", ".join(f"{k} {v:.4g}" for k, v in result.items()))


app = single_command(train)

if __name__ == "__main__":
    run(app)
