"""The headline metrics as committed at another git revision (by default the last commit), to show
what changed; or why there is nothing to compare with."""

import json
import shutil
import subprocess
from pathlib import Path

# metrics where a lower value is better; `images` is a count, neither better nor worse
LOWER_IS_BETTER = ("loss", "ece")
NEUTRAL = ("images",)


def better(metric: str, delta: float) -> bool | None:
    if metric in NEUTRAL:
        return None
    return delta < 0 if metric in LOWER_IS_BETTER else delta > 0


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)


def committed_metrics(metrics: Path, rev: str | None) -> tuple[dict | None, str]:
    """The JSON file `metrics` as it is at git revision `rev`, and the revision described
    ("HEAD (1a2b3c4: subject)"); or None and a sentence saying why there is no baseline."""
    if not rev:
        return None, "No comparison: no baseline revision asked for (report_baseline_rev is empty)."
    if shutil.which("git") is None:
        return None, f"No comparison with {rev}: git is not installed."
    folder = metrics.resolve().parent
    if not folder.is_dir() or _git(folder, "rev-parse", "--git-dir").returncode:
        return None, f"No comparison with {rev}: {metrics} is not in a git repository."
    found = _git(folder, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if found.returncode:
        return None, f"No comparison: there is no revision {rev!r} in this git repository (no commit yet?)."
    commit = found.stdout.strip()
    named = f"{rev} ({commit[:7]}: {_git(folder, 'log', '-1', '--format=%s', commit).stdout.strip()})"
    shown = _git(folder, "show", f"{commit}:./{metrics.name}")  # ./: relative to the folder
    if shown.returncode:
        return None, f"No comparison: {metrics} is not in {named}."
    try:
        return json.loads(shown.stdout), named
    except json.JSONDecodeError:
        return None, f"No comparison: {metrics} in {named} is not valid JSON."
