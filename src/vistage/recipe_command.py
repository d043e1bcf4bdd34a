"""`vistage recipe`: ready-made params for the users' recipes, as one `dvc exp run` command."""

from pathlib import Path
from typing import Annotated

import typer

from .command import ParamsFile


def recipe(name: Annotated[str | None, typer.Argument(help="recipe name (recipes/NAME.yaml); none: list them")] = None,
           run: Annotated[bool, typer.Option("--run", help="run the experiment now (dvc exp run)")] = False,
           queue: Annotated[bool, typer.Option("--queue", help="queue it instead (then: dvc queue start -j N)")] = False,
           from_defaults: Annotated[bool, typer.Option(
               "--from-defaults", help="reset the settings of params.yaml that the recipe does not set to their "
                                       "defaults (without it, --run and --queue refuse to run on top of them)")] = False,
           force: Annotated[bool, typer.Option(
               "--force", help="run again under the same name: replace the experiment and rerun every stage "
                               "(dvc exp run --force)")] = False,
           params: ParamsFile = Path("params.yaml")) -> None:
    """Ready-made params for the users' recipes (R3-R5): print one `dvc exp run -S ...` command, or run it."""
    import shlex

    from .errors import VistageError
    from .recipes import recipe_command

    if name is None:
        _print_recipes()
        return
    cmd = recipe_command(name, params, queue=queue, from_defaults=from_defaults, force=force)
    obstacles = _obstacles(name, params, from_defaults, force)
    if obstacles and (run or queue):
        raise VistageError(obstacles[0])  # before dvc touches params.yaml
    typer.echo(shlex.join(cmd))
    for obstacle in obstacles:
        typer.echo(f"note: {obstacle}", err=True)
    if run or queue:
        _run_dvc(cmd, queue)


def _obstacles(name: str, params: Path, from_defaults: bool, force: bool) -> list[str]:
    """What would keep the experiment from running as the recipe says, one line each: its data
    missing, settings of params.yaml that would change its result, an experiment of that name.
    --run and --queue refuse on the first; printing the command notes them all."""
    from .recipes import (RECIPES_DIR, experiment_exists, experiment_exists_message, leftover_settings,
                          leftovers_message, load_recipe, missing_data)

    found = []
    missing = missing_data(load_recipe(name))
    if missing:
        found.append(f"{RECIPES_DIR / name}.yaml: data.path {missing!r} does not exist here; the comment at the top "
                     f"of the recipe says where its data comes from")
    leftovers = {} if from_defaults else leftover_settings(name, params)
    if leftovers:
        found.append(leftovers_message(name, leftovers, params))
    if not force and experiment_exists(name):
        found.append(experiment_exists_message(name))
    return found


def _run_dvc(cmd: list[str], queue: bool) -> None:
    """Run `cmd` with this environment's dvc and exit with its code."""
    import shutil
    import subprocess
    import sys

    from .errors import VistageError

    # the dvc of this environment, also when its bin folder is not on PATH
    dvc = shutil.which("dvc") or shutil.which("dvc", path=str(Path(sys.executable).parent))
    if dvc is None:
        raise VistageError("dvc not found: install vistage's dependencies (make repro) or put dvc on PATH")
    code = subprocess.run([dvc, *cmd[1:]]).returncode
    if queue and code == 0:
        typer.echo("queued: start it with `dvc queue start -j N` (on a CPU, with threads: CORES/N in params.yaml, "
                   "or the N runs wait on each other's threads), follow with `dvc queue status`", err=True)
    raise typer.Exit(code)


def _print_recipes() -> None:
    """The table of recipes: name and what each reproduces."""
    from rich.console import Console
    from rich.table import Table

    from .errors import VistageError
    from .recipes import RECIPES_DIR, describe, recipe_names

    names = recipe_names()
    if not names:
        raise VistageError(f"{RECIPES_DIR}/: no recipes here (run vistage from the project's root folder)")
    table = Table(title=f"recipes ({RECIPES_DIR}/NAME.yaml)", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("what it reproduces")
    rows = sorted((describe(RECIPES_DIR / f"{each}.yaml"), each) for each in names)  # R3 step 1, 2, ...
    for text, each in rows:
        table.add_row(each, text)
    console = Console()
    console.print(table)
    console.print("`vistage recipe NAME` prints its `dvc exp run` command; --run runs it, --queue queues it.")
