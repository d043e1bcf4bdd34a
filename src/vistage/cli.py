"""The `vistage` command: the seven stage commands of the top-level stages/ folder, plus `list`,
`recipe` and `push-run-cache`.

Only Typer is imported here; each command imports what it needs when it runs, so
`vistage --help` answers without loading torch.
"""

import typer

from stages.evaluate import evaluate
from stages.export import export
from stages.predict import predict
from stages.prepare import prepare
from stages.report import report
from stages.split import split
from stages.train import train

from .command import run
from .listing import list_keywords
from .recipe_command import recipe
from .share_command import push_run_cache

app = typer.Typer(
    name="vistage",
    help="Reproducible stages for training and evaluating image classifiers (run them with `dvc repro`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for command in (prepare, split, train, predict, evaluate, report, export):
    app.command()(command)
app.command("list")(list_keywords)
app.command()(recipe)
app.command("push-run-cache")(push_run_cache)


def main() -> None:
    run(app)


if __name__ == "__main__":
    main()
