"""The `vistage` command: one sub-command per pipeline stage, plus `list`.

Only Typer is imported here; each command imports what it needs when it runs, so
`vistage --help` answers without loading torch.
"""

import sys

import typer

from .errors import VistageError
from .stages.evaluate import evaluate
from .stages.listing import list_keywords
from .stages.predict import predict
from .stages.prepare import prepare
from .stages.recipe import recipe
from .stages.report import report
from .stages.split import split
from .stages.train import train

app = typer.Typer(
    name="vistage",
    help="Reproducible stages for training and evaluating image classifiers (run them with `dvc repro`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for command in (prepare, split, train, evaluate, predict, report):
    app.command()(command)
app.command("list")(list_keywords)
app.command()(recipe)


def main() -> None:
    try:
        app()
    except VistageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted: outputs written so far are complete; rerun to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
