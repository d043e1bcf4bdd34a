from pathlib import Path

import typer

from .options import ParamsOption


def recipe(name: str = typer.Argument(None, help="recipe name (recipes/NAME.yaml); none: list them"),
           run: bool = typer.Option(False, "--run", help="run the experiment now (dvc exp run)"),
           queue: bool = typer.Option(False, "--queue", help="queue it instead (then: dvc queue start -j N)"),
           params: Path = ParamsOption) -> None:
    """Ready-made params for the users' recipes (R3-R5), as one `dvc exp run -S ...` command."""
    import shlex
    import subprocess

    from ..recipes import RECIPES_DIR, check_recipe, describe, dvc_command, recipe_names, recipe_path

    if name is None:
        for each in recipe_names():
            typer.echo(f"{each:14} {describe(recipe_path(each))}")
        if not recipe_names():
            typer.echo(f"no recipes in {RECIPES_DIR}/ (run vistage from the project folder)", err=True)
        return
    cmd = dvc_command(name, check_recipe(name, params), queue=queue)
    typer.echo(shlex.join(cmd))
    if run or queue:
        raise typer.Exit(subprocess.run(cmd).returncode)
