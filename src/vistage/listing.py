"""`vistage list`: the valid keywords of every registry."""

from typing import Annotated

import typer


def list_keywords(kind: Annotated[str | None, typer.Argument(help="one registry (e.g. models) to list in full")] = None
                  ) -> None:
    """Show the valid keywords of every registry (models, optimizers, schedulers, ...)."""
    from rich.console import Console
    from rich.table import Table

    from .errors import choice_error
    from .registries import ALL

    console = Console()
    if kind is None:
        for name, registry in ALL.items():
            table = Table(title=f"{name} ({registry.kind}: in params.yaml)", title_justify="left")
            table.add_column("keyword")
            table.add_column("what it is")
            for key, text in registry.describe():
                table.add_row(key, text)
            console.print(table)
        console.print("`vistage list KIND` lists every name of one registry, e.g. `vistage list models`.")
        return
    # accept the singular and the params key too: model, data.source, augment
    aliases = {r.kind: n for n, r in ALL.items()} | {"data.source": "sources", "augment": "augmentations"}
    kind = aliases.get(kind, kind)
    if kind not in ALL:
        raise choice_error("kind", kind, ALL, where="vistage list")
    for name in ALL[kind].names():
        typer.echo(name)
