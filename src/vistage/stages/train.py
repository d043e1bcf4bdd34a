import sys
from pathlib import Path

import typer

from .options import ParamsOption


def train(params: Path = ParamsOption,
          store: Path = typer.Option(Path("data/prepared"), help="prepared store"),
          split: Path = typer.Option(Path("data/split.csv"), help="split table"),
          models: Path = typer.Option(Path("models"), help="checkpoint directory (best.pt, last.pt)"),
          live: Path = typer.Option(Path("metrics/train"), help="DVCLive directory (metrics, curves)")) -> None:
    """Train the model; keep best and last checkpoints; resume an interrupted run.

    With `devices: N` (N > 1) in params.yaml it re-runs itself under torchrun on N processes;
    started by torchrun yourself (several nodes), it joins that process group instead."""
    from .. import distributed
    from ..params import load_params

    p = load_params(params)
    if p.devices > 1 and not distributed.under_torchrun():
        import subprocess

        cmd = distributed.relaunch_command(p.devices, sys.argv[1:])
        typer.echo(f"train: {p.devices} processes: {' '.join(cmd)}", err=True)
        raise typer.Exit(subprocess.run(cmd).returncode)

    from ..training import TrainPaths, train as run_training

    result = run_training(p, TrainPaths(store, split, models, live))
    if distributed.is_main_process():
        typer.echo("train: " + ", ".join(f"{k} {v:.4g}" for k, v in result.items()))
