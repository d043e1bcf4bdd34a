"""The one exception type for problems the user can fix (bad params, bad data, missing inputs).

The CLI prints it as a single line and exits with code 2, no traceback; anything else is a bug
and keeps its traceback.
"""

import difflib
from collections.abc import Iterable


class VistageError(Exception):
    """A user-facing error: the message names the file, key or row and what is valid."""

    exit_code = 2


def shown_value(value) -> str:
    """A setting's value in a message as YAML writes it, strings quoted (`'5'` is not `5`)."""
    import json

    return repr(value) if isinstance(value, str) else json.dumps(value)


def closest(value: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The choices that look most like `value` (for "did you mean" hints)."""
    return difflib.get_close_matches(str(value), list(choices), n=n, cutoff=0.5)


def choice_error(what: str, value, choices: Iterable[str], where: str = "params.yaml",
                 max_listed: int = 40) -> VistageError:
    """`params.yaml: model: 'resnet1800' is not a known model; did you mean 'resnet18'? valid: ...`"""
    choices = sorted(choices)
    hint = closest(value, choices)
    msg = f"{where}: {what}: {value!r} is not valid"
    if hint:
        msg += "; did you mean " + " or ".join(repr(h) for h in hint) + "?"
    if len(choices) <= max_listed:
        msg += "; valid: " + ", ".join(choices)
    else:
        msg += f" ({len(choices)} valid names; `vistage list {what}` shows them all)"
    return VistageError(msg)


def require_task(found: str, expected: str, path, what: str) -> None:
    """A file written for another task (a checkpoint, a predictions file) is one line naming both."""
    if found != expected:
        remedy = "retrain" if what == "checkpoint" else "rerun predict"
        raise VistageError(f"{path}: a {what} of task: {found}, but params.yaml says task: {expected}; "
                           f"{remedy} with task: {expected}, or set task: {found}")
