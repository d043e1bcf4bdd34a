from pathlib import Path

import typer

from .options import ParamsOption


def train(params: Path = ParamsOption,
          store: Path = typer.Option(Path("data/prepared"), help="prepared store"),
          split: Path = typer.Option(Path("data/split.csv"), help="split table"),
          models: Path = typer.Option(Path("models"), help="checkpoint directory (best.pt, last.pt)"),
          live: Path = typer.Option(Path("metrics/train"), help="DVCLive directory (metrics, curves)")) -> None:
    """Train the model; keep best and last checkpoints; resume an interrupted run."""
    from ..params import load_params
    from ..training import TrainPaths, train as run_training

    p = load_params(params)
    result = run_training(p, TrainPaths(store, split, models, live))
    typer.echo("train: " + ", ".join(f"{k} {v:.4g}" for k, v in result.items()))
