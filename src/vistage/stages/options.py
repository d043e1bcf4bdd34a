"""Options shared by every stage command."""

from pathlib import Path

import typer

ParamsOption = typer.Option(Path("params.yaml"), "--params", "-p", help="params file", dir_okay=False)
