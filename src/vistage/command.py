"""What every command shares: the params option, building a one-command Typer app, and ending
on a user error with one line.

Only Typer is imported here: `--help` of any command answers without loading torch.
"""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from .errors import VistageError

ParamsFile = Annotated[Path, typer.Option("--params", "-p", help="params file", dir_okay=False)]


def single_command(fn: Callable) -> typer.Typer:
    """A Typer app of one command, so `python stages/NAME.py --help` shows that command's options."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(fn)
    return app


def run(app: typer.Typer) -> None:
    """Run `app`; a VistageError (bad params, bad data, missing input) is one line and exit 2.

    The command's outputs are published together when it succeeds, and not at all when it fails
    (io.publishing): a failed or interrupted stage leaves the last good run's outputs as they were,
    under DVC too, which deletes them before the command runs (dvc_restore)."""
    from .io import publishing

    try:
        try:
            with publishing():
                app()
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                _put_back_outputs()
            raise
        except BaseException:
            _put_back_outputs()
            raise
    except VistageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted: no output was replaced; rerun to resume", file=sys.stderr)
        sys.exit(130)


def _put_back_outputs() -> None:
    """Under DVC, which deleted this stage's outputs before running it: put them back."""
    from .dvc_restore import restore_after_failure

    restore_after_failure()
