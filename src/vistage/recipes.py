"""Ready-made params for the users' recipes (recipes/*.yaml), run as DVC experiments.

A recipe is a YAML mapping of params.yaml overrides. `vistage recipe NAME` turns it into one
`dvc exp run -n NAME -S key=value ...` command (Hydra override syntax, which `-S` parses), after
checking that the overrides merged into the current params.yaml pass the params schema. Pure:
no torch, no training here.
"""

import json
import re
from pathlib import Path

import yaml
from pydantic import ValidationError

from .errors import VistageError, choice_error

RECIPES_DIR = Path("recipes")


def recipe_names(folder: Path = RECIPES_DIR) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def recipe_path(name: str, folder: Path = RECIPES_DIR) -> Path:
    names = recipe_names(folder)
    if name not in names:
        if not names:
            raise VistageError(f"{folder}/: no recipes here (run vistage from the project folder)")
        raise choice_error("recipe", name, names, where=str(folder))
    return folder / f"{name}.yaml"


def describe(path: Path) -> str:
    """The first comment line of a recipe file: what it reproduces."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def load_recipe(name: str, folder: Path = RECIPES_DIR) -> dict:
    path = recipe_path(name, folder)
    try:
        overrides = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise VistageError(f"{path}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(overrides, dict):
        raise VistageError(f"{path}: expected a mapping of params.yaml keys to values")
    return overrides


def merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def check_recipe(name: str, params_path: Path, folder: Path = RECIPES_DIR) -> dict:
    """The recipe's overrides, after checking them merged into params_path against the schema
    and the registries (one-line error naming the recipe file and key otherwise)."""
    from .params import Params, _format_error, check_keywords

    overrides = load_recipe(name, folder)
    base = yaml.safe_load(params_path.read_text()) if params_path.is_file() else {}
    where = recipe_path(name, folder)
    try:
        params = Params.model_validate(merge(base or {}, overrides))
    except ValidationError as err:
        raise VistageError(_format_error(where, err)) from None
    check_keywords(params, where=str(where))
    return overrides


def _flatten(overrides: dict, prefix: str = "") -> list[tuple[str, object]]:
    items = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


_PLAIN = re.compile(r"^[A-Za-z0-9_./\-:+]+$")


def _value(value) -> str:
    """A value in Hydra's override grammar: what `dvc exp run -S key=VALUE` parses back."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(_value(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in ("true", "false", "null") and not _is_number(text):
        return text
    return json.dumps(text).replace("'", "\\'")  # quoted, so Hydra keeps it a string


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def set_flags(overrides: dict) -> list[str]:
    return [f"{key}={_value(value)}" for key, value in _flatten(overrides)]


def dvc_command(name: str, overrides: dict, queue: bool = False) -> list[str]:
    cmd = ["dvc", "exp", "run", "-n", name]
    if queue:
        cmd.append("--queue")
    for flag in set_flags(overrides):
        cmd += ["-S", flag]
    return cmd
