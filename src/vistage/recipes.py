"""Ready-made params for the users' recipes (recipes/*.yaml), run as DVC experiments.

A recipe is a YAML mapping of params.yaml overrides (top-level keys, and nested `data:` keys)
whose first comment line says what it is. `vistage recipe NAME` checks the overrides merged into
the current params.yaml against the params schema and turns them into one
`dvc exp run -n NAME -S key=value ...` command, each value written in Hydra's override grammar
(what `dvc exp run -S` parses). No torch (git is asked whether an experiment of that name exists);
registry keywords (model, augment, ...) are checked by the stages themselves, before any work,
when the experiment runs.

A recipe's figures were measured from the defaults (the params schema's, which the committed
params.yaml holds) with the recipe on top. `dvc exp run -S` sets only the keys it is given, so a
setting of params.yaml that differs from its default and that the recipe does not set (a leftover
`max_steps_per_epoch: 2`) would change the result: `leftover_settings` finds those, and the
command resets them to their defaults only when asked to (`from_defaults`).
"""

import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any


from .errors import VistageError, choice_error, shown_value

RECIPES_DIR = Path("recipes")  # relative to the project root, where vistage and dvc run
DATA_PATH_KEYS = ("data.path", "data.root")


def recipe_names(folder: Path = RECIPES_DIR) -> list[str]:
    return sorted(p.stem for p in Path(folder).glob("*.yaml"))


def recipe_path(name: str, folder: Path = RECIPES_DIR) -> Path:
    folder = Path(folder)
    names = recipe_names(folder)
    if name not in names:
        if not names:
            raise VistageError(f"{folder}/: no recipes here (run vistage from the project's root folder)")
        raise choice_error("recipe", name, names, where=f"{folder}/")
    return folder / f"{name}.yaml"


def describe(path: Path) -> str:
    """The recipe's first comment line: what it reproduces, in one line."""
    for line in Path(path).read_text().splitlines():
        if line.startswith("#") and line.lstrip("#").strip():
            return line.lstrip("#").strip()
    return ""


def load_recipe(name: str, folder: Path = RECIPES_DIR) -> dict:
    """The raw overrides of recipes/NAME.yaml (not yet checked against the schema)."""
    from .params import read_mapping

    path = recipe_path(name, folder)
    overrides = read_mapping(path)
    if not overrides:
        raise VistageError(f"{path}: expected a mapping of params.yaml keys to values, got an empty file")
    return overrides


def merge(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` on top; nested mappings (data:) merge key by key."""
    out = dict(base)
    for key, value in overrides.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both else value
    return out


def flatten(overrides: dict, prefix: str = "") -> dict[str, Any]:
    """{'data': {'path': x}} -> {'data.path': x}: the keys as `-S` names them."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, dict):  # an empty mapping sets nothing
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _lookup(tree: dict, dotted: str) -> tuple[bool, Any]:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_recipe(name: str, params_path: Path = Path("params.yaml"), folder: Path = RECIPES_DIR) -> dict:
    """The recipe's overrides, checked and normalised: merged into `params_path` they must pass
    the params schema (else a one-line VistageError naming the recipe file and the key). Values
    come back as the schema reads them (`lr: 1e-3`, a string to YAML, comes back 0.001)."""
    overrides, validated = _validated(name, Path(params_path), folder)
    return _unflatten({key: validated[key] for key in flatten(overrides)})


# How a run uses the machine, not what it computes: never a leftover, kept as params.yaml holds it
# (threads: 1 for two experiments at once on 2 cores must not stop, or be reset by, a recipe)
MACHINE_SETTINGS = frozenset({"threads"})


def leftover_settings(name: str, params_path: Path = Path("params.yaml"), folder: Path = RECIPES_DIR) -> dict:
    """The settings of `params_path` that differ from their defaults and that recipe NAME does not
    set, dotted key -> value as the schema reads it: on top of them the recipe would not run as
    measured. MACHINE_SETTINGS are not among them."""
    overrides, validated = _validated(name, Path(params_path), folder)
    defaults = default_settings()
    recipe_keys = flatten(overrides)
    return {key: value for key, value in validated.items()
            if key not in recipe_keys and key not in MACHINE_SETTINGS and value != defaults[key]}


def default_settings() -> dict[str, Any]:
    """Every setting's default (the params schema's), dotted key -> value as JSON dumps it."""
    from .params import Params

    return flatten(Params().model_dump(mode="json"))


def _validated(name: str, params_path: Path, folder: Path) -> tuple[dict, dict[str, Any]]:
    """(the recipe's raw overrides, every setting of `params_path` with them on top as the schema
    reads it, dotted key -> value)."""
    from pydantic import ValidationError

    from .params import Params, _format_error, check_fractions

    path = recipe_path(name, folder)
    overrides = load_recipe(name, folder)
    base = _read_base(params_path)
    try:
        params = Params.model_validate(merge(base, overrides))
    except ValidationError as err:
        loc = ".".join(str(p) for p in err.errors()[0]["loc"])
        from_recipe = any(loc == k or loc.startswith(k + ".") or k.startswith(loc + ".")
                          for k in flatten(overrides))
        where = str(path) if from_recipe else f"{params_path} (with {path} on top)"
        raise VistageError(_format_error(Path(where), err)) from None
    check_fractions(params, path)
    return overrides, flatten(params.model_dump(mode="json"))


def leftovers_message(name: str, leftovers: dict[str, Any], params_path: Path = Path("params.yaml")) -> str:
    """One line: which settings stop recipe NAME from running as measured, and the ways on."""
    defaults = default_settings()
    found = ", ".join(f"{key}: {shown_value(value)}" for key, value in leftovers.items())
    resets = ", ".join(f"{key}: {shown_value(defaults[key])}" for key in leftovers)
    return (f"{params_path} holds settings that recipe {name} does not set and that differ from their defaults "
            f"({found}), so the run would not reproduce the recipe; add --from-defaults to reset them to {resets} "
            f"(with --run, dvc leaves them in params.yaml, as it does the recipe's), or run the command `vistage recipe {name}` prints, "
            f"which keeps them")


def _read_base(params_path: Path) -> dict:
    from .params import read_mapping

    return read_mapping(params_path, missing="params file not found (run vistage from the project's root folder)")


def _unflatten(flat: dict[str, Any]) -> dict:
    tree: dict = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


# Unquoted, Hydra reads these characters as a plain string (paths included: ../a/b-c.tar);
# anything else (spaces, commas, brackets, quotes, `=`, `$`, `\`, `*`, `~`) is quoted.
_PLAIN = re.compile(r"[A-Za-z0-9_./:+@-]+")
# unquoted words Hydra would read as something other than the same string
_NOT_STRINGS = re.compile(r"(?i)(null|true|false|[-+]?(inf|nan)|[-+]?[0-9_.]*[0-9][0-9_.]*(e[-+]?[0-9_]+)?)")


def hydra_value(value: Any) -> str:
    """`value` in Hydra's override grammar, so that `-S key=<this>` sets exactly `value`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # shortest round-trip form: 0.0003, 1e-05
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_quote_key(k)}:{hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if "${" in text:
        raise VistageError(f"{text!r}: a value with '${{' would be read as an interpolation by dvc exp run -S")
    if _PLAIN.fullmatch(text) and not _NOT_STRINGS.fullmatch(text):
        return text
    return _quote(text)


def _quote_key(key: Any) -> str:
    text = str(key)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise VistageError(f"{text!r}: not a key dvc exp run -S can set in a mapping")
    return text


def _quote(text: str) -> str:
    """A single-quoted Hydra string: a run of backslashes before a quote (or before the closing
    quote) is doubled, and the quote itself escaped."""
    body = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    body = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, body)
    return f"'{body}'"


def set_flags(overrides: dict, base: dict | None = None) -> list[str]:
    """`key=value` for each override, dotted keys for nested ones. A key that `base` (the parsed
    params.yaml) lacks gets Hydra's `+` (add): dvc exp run -S refuses to set a missing key."""
    flags = []
    for key, value in flatten(overrides).items():
        add = "+" if base is not None and not _lookup(base, key)[0] else ""
        flags.append(f"{add}{key}={hydra_value(value)}")
    return flags


def absolute_data_paths(overrides: dict, cwd: Path | None = None) -> dict:
    """The overrides with relative data.path and data.root made absolute: a queued experiment
    runs in a copy of the repository under .dvc/tmp/exps, where `../shared/...` and git-ignored
    files such as data/tiny-imagenet/train.csv are not."""
    cwd = Path.cwd() if cwd is None else Path(cwd)
    flat = flatten(overrides)
    for key in DATA_PATH_KEYS:
        value = flat.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            flat[key] = os.path.abspath(cwd / Path(value).expanduser())  # `..` folded, links kept
    return _unflatten(flat)


def missing_data(overrides: dict, cwd: Path | None = None) -> str | None:
    """The recipe's data.path when it does not exist."""
    flat = flatten(overrides)
    path = flat.get("data.path")
    if not isinstance(path, str) or not path:
        return None
    full = Path(path).expanduser()
    full = full if full.is_absolute() else (Path.cwd() if cwd is None else Path(cwd)) / full
    return None if full.exists() else path


def experiment_exists(name: str, cwd: Path | None = None) -> bool:
    """Whether the repository holds a DVC experiment NAME on its current commit, which
    `dvc exp run -n NAME` refuses to replace without --force. DVC keeps it as the git ref
    refs/exps/<commit[:2]>/<commit[2:]>/NAME (dvc.repo.experiments.refs.ExpRefInfo)."""
    git = shutil.which("git")
    if git is None:
        return False
    head = subprocess.run([git, "rev-parse", "--verify", "--quiet", "HEAD"], cwd=cwd, capture_output=True, text=True)
    if head.returncode != 0:  # not a git repository, or no commit yet: dvc says so itself
        return False
    commit = head.stdout.strip()
    ref = f"refs/exps/{commit[:2]}/{commit[2:]}/{name}"
    return subprocess.run([git, "show-ref", "--verify", "--quiet", ref], cwd=cwd).returncode == 0


def experiment_exists_message(name: str) -> str:
    return (f"experiment {name!r} exists already on this commit: add --force to run it again (dvc exp run --force "
            f"replaces it and reruns every stage), or remove it first: dvc exp remove {name}")


def dvc_command(name: str, overrides: dict, queue: bool = False, base: dict | None = None,
                resets: dict | None = None, force: bool = False) -> list[str]:
    """`dvc exp run -n NAME [--queue] [--force] -S k=v ...` as an argument list (shlex.join it to
    print): the recipe's `overrides`, then the `resets` of leftover settings to their defaults."""
    cmd = ["dvc", "exp", "run", "-n", name]
    if queue:
        cmd.append("--queue")
    if force:
        cmd.append("--force")
    for flag in set_flags(overrides, base) + set_flags(resets or {}, base):
        cmd += ["-S", flag]
    return cmd


def recipe_command(name: str, params_path: Path = Path("params.yaml"), queue: bool = False,
                   folder: Path = RECIPES_DIR, from_defaults: bool = False, force: bool = False) -> list[str]:
    """The one documented command of recipe NAME, checked against `params_path`; `from_defaults`
    also resets the settings the recipe does not set to their defaults, so that it runs as measured."""
    overrides = check_recipe(name, params_path, folder)
    if queue:
        overrides = absolute_data_paths(overrides)
    resets = {}
    if from_defaults:
        defaults = default_settings()
        resets = _unflatten({key: defaults[key] for key in leftover_settings(name, params_path, folder)})
    return dvc_command(name, overrides, queue=queue, base=_read_base(Path(params_path)), resets=resets, force=force)
