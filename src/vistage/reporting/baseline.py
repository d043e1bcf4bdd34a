"""The headline metrics as committed at another git revision (by default the last commit), to show
what changed; or why there is nothing to compare with, or why the two runs are not comparable (another
task, other classes, other split sizes: their metrics measure other things, so no change is a gain
or a loss)."""

import csv
import io
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# what each task counts in a split of its metrics file: the split's size, and so the task that scored it
SPLIT_SIZE = {"images": "classify", "questions": "vqa"}
# metrics where a lower value is better; the counts are neither better nor worse
LOWER_IS_BETTER = ("loss", "ece")
NEUTRAL = tuple(SPLIT_SIZE)


def better(metric: str, delta: float) -> bool | None:
    if metric in NEUTRAL:
        return None
    return delta < 0 if metric in LOWER_IS_BETTER else delta > 0


@dataclass
class Baseline:
    named: str  # the revision described: "HEAD (1a2b3c4: subject)"
    metrics: dict  # the metrics file as committed there
    classes: list[str] | None  # the classes of the per-class table committed there (None: none there)


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)


def _committed(path: Path, commit: str) -> str | None:
    """The file's text at `commit`; None where it was not committed (or is not in that repository)."""
    folder = path.resolve().parent
    if not folder.is_dir():
        return None
    shown = _git(folder, "show", f"{commit}:./{path.name}")  # ./: relative to the folder
    return None if shown.returncode else shown.stdout


def _classes_of(per_class_csv: str | None) -> list[str] | None:
    rows = list(csv.DictReader(io.StringIO(per_class_csv))) if per_class_csv else []
    return [row["class"] for row in rows] if rows and "class" in rows[0] else None


def read_baseline(metrics: Path, rev: str | None, per_class: Path | None = None) -> tuple[Baseline | None, str]:
    """The metrics file (and the per-class table's classes) as they are at git revision `rev`, and
    the revision described; or None and a sentence saying why there is no baseline."""
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
    text = _committed(metrics, commit)
    if text is None:
        return None, f"No comparison: {metrics} is not in {named}."
    try:
        committed = json.loads(text)
    except json.JSONDecodeError:
        return None, f"No comparison: {metrics} in {named} is not valid JSON."
    classes = _classes_of(_committed(per_class, commit)) if per_class is not None else None
    return Baseline(named, committed, classes), named


def _split_sizes(metrics: dict) -> dict[str, tuple[str, int]]:
    """{split: (what it counts, how many)} of a metrics file."""
    sizes = {}
    for split, scores in metrics.items():
        key = next((k for k in SPLIT_SIZE if isinstance(scores, dict) and isinstance(scores.get(k), int)), None)
        if key is not None:
            sizes[split] = (key, scores[key])
    return sizes


def _tasks(sizes: dict[str, tuple[str, int]]) -> str:
    return "/".join(sorted({SPLIT_SIZE[key] for key, _ in sizes.values()}))


def _other_classes(now: list[str], then: list[str]) -> str | None:
    if set(now) == set(then):
        return None
    if len(now) != len(then):
        return f"other classes ({len(now)} now, {len(then)} then)"
    renamed = len(set(now) - set(then))
    return f"other classes (as many, {renamed} of {len(now)} named otherwise)"


def _other_sizes(now: dict[str, tuple[str, int]], then: dict[str, tuple[str, int]]) -> str | None:
    changed = [f"{split}: {n} {key} now, {then[split][1]} then" for split, (key, n) in now.items()
               if split in then and then[split][1] != n]
    return f"other split sizes ({'; '.join(changed)})" if changed else None


def _no_common_split(now: dict[str, tuple[str, int]], then: dict[str, tuple[str, int]]) -> str | None:
    """A run that held nothing out scores `train` alone, which a baseline of test and val lacks."""
    if now and then and not now.keys() & then.keys():
        return f"no split in common ({', '.join(now)} now, {', '.join(then)} then)"
    return None


def not_comparable(now: dict, classes: list[str] | None, base: Baseline) -> list[str]:
    """Why this run's metrics and the baseline's measure other things: another task (what a split
    counts), no split in common, other classes, other split sizes; [] when, as far as the committed
    files tell, they measure the same. What either side does not have is not compared."""
    sizes_now, sizes_then = _split_sizes(now), _split_sizes(base.metrics)
    tasks_now, tasks_then = _tasks(sizes_now), _tasks(sizes_then)
    if tasks_now and tasks_then and tasks_now != tasks_then:
        return [f"another task ({tasks_now} now, {tasks_then} then)"]  # nothing else is alike either
    if disjoint := _no_common_split(sizes_now, sizes_then):
        return [disjoint]  # no score has a counterpart
    reasons = [_other_classes(classes, base.classes) if classes and base.classes else None,
               _other_sizes(sizes_now, sizes_then)]
    return [reason for reason in reasons if reason]
