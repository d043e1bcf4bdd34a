"""`vistage recipe`: ready-made params for the users' recipes, as one `dvc exp run` command."""

from pathlib import Path
from typing import Annotated

import typer

from .command import ParamsFile


def recipe(name: Annotated[str | None, typer.Argument(help="recipe name (recipes/NAME.yaml); none: list them")] = None,
           run: Annotated[bool, typer.Option("--run", help="run the experiment now (dvc exp run)")] = False,
           queue: Annotated[bool, typer.Option("--queue", help="queue it instead (then: dvc queue start -j N)")] = False,
           params: ParamsFile = Path("params.yaml")) -> None:
    """Ready-made params for the users' recipes (R3-R5): print one `dvc exp run -S ...` command, or run it."""
    import shlex
    import shutil
    import subprocess
    import sys

    from .errors import VistageError
    from .recipes import RECIPES_DIR, describe, load_recipe, missing_data, recipe_command, recipe_names

    if name is None:
        from rich.console import Console
        from rich.table import Table

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
        return
    cmd = recipe_command(name, params, queue=queue)
    missing = missing_data(load_recipe(name))
    note = (f"{RECIPES_DIR / name}.yaml: data.path {missing!r} does not exist here; the comment at the top "
            f"of the recipe says where its data comes from")
    if missing and (run or queue):
        raise VistageError(note)
    typer.echo(shlex.join(cmd))
    if missing:
        typer.echo(f"note: {note}", err=True)
    if not (run or queue):
        return
    # the dvc of this environment, also when its bin folder is not on PATH
    dvc = shutil.which("dvc") or shutil.which("dvc", path=str(Path(sys.executable).parent))
    if dvc is None:
        raise VistageError("dvc not found: install vistage's dependencies (make repro) or put dvc on PATH")
    code = subprocess.run([dvc, *cmd[1:]]).returncode
    if queue and code == 0:
        typer.echo("queued: start it with `dvc queue start -j N`, follow with `dvc queue status`", err=True)
    raise typer.Exit(code)
