"""Shared fixtures: small params, a prepared digits store, and a throwaway copy of the project."""

import fcntl
import os

# Under pytest-xdist (`make test` runs one worker per core) each worker's torch, and every stage
# command a test starts, keeps to one thread: workers that each spin a thread per core contend for
# the same cores and run several times slower than one at a time. Set before anything imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_threads, "1")
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vistage.recipes import merge as merged  # params.yaml overrides merge as recipes do

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"
BIN = Path(sys.executable).parent  # the venv's bin: vistage and dvc live here


# The test files that take longest (about a minute each on 2 cores), started first: pytest-xdist
# hands out whole files (--dist loadfile, so a module's fixtures are built once) in collection order,
# and a long file started last would leave the other workers idle while it runs alone.
LONGEST_FIRST = ["test_guarantees.py", "test_vqa_pipeline.py", "test_pipeline_e2e.py", "test_sharing.py",
                 "test_dvc_deps.py", "test_engine.py", "test_faults.py", "test_calibration.py"]


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's tests keep their order


def run_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env["COLUMNS"] = "200"
    return env


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=run_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def default_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


# A fast configuration: digits at 8x8 (their native size), two epochs.
TINY = {"epochs": 2, "batch_size": 64, "data": {"image_size": 8}}


def tiny_params(**override):
    """Params of the TINY configuration with `override` on top."""
    from vistage.params import Params

    return Params.model_validate(merged(merged(default_params(), TINY), override))


def train_paths(store_dir: Path, out_dir: Path):
    """TrainPaths reading the digits_store fixture and writing under out_dir."""
    from vistage.training import TrainPaths

    return TrainPaths(store_dir / "prepared", store_dir / "split.csv", out_dir / "models", out_dir / "live")


@pytest.fixture
def write_params(tmp_path):
    def write(override: dict | None = None, name: str = "params.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(merged(merged(default_params(), TINY), override or {}), sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def digits_store(tmp_path_factory):
    """A prepared digits store and split at 8x8, built once per test session."""
    from vistage.data.sources import load_source
    from vistage.data.split import split_table
    from vistage.data.store import load_store, write_store
    from vistage.params import Params

    base = tmp_path_factory.mktemp("digits")
    p = Params.model_validate(merged(default_params(), TINY))
    write_store(base / "prepared", load_source(p.data), 8)
    store = load_store(base / "prepared")
    split_table(store.samples, store.classes, 0.15, 0.15, 0).to_csv(base / "split.csv", index=False)
    return base


@pytest.fixture(scope="session")
def digits_model(digits_store, tmp_path_factory):
    """tiny_params(epochs=3) trained once on digits_store: (its train() result, the folder holding
    models/ and live/). Read-only: the tests that demand learning share it instead of each training
    the same deterministic run again."""
    from vistage.training import train

    out = tmp_path_factory.mktemp("digits-model")
    return train(tiny_params(epochs=3), train_paths(digits_store, out)), out


@pytest.fixture(scope="session")
def smoke_checkpoint(digits_store, tmp_path_factory):
    """A checkpoint of three optimisation steps on digits_store (models/best.pt under the returned
    folder): for the tests of what is done with a checkpoint, not of how well it classifies."""
    from vistage.training import train

    out = tmp_path_factory.mktemp("digits-smoke")
    train(tiny_params(epochs=1, max_steps_per_epoch=3), train_paths(digits_store, out))
    return out


def copy_project(dest: Path, override: dict | None = None) -> Path:
    """A copy of the project's tracked files (TINY params, no committed results) in a fresh git
    repository with one commit."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for rel in filter(None, files.stdout.split("\0")):
        src = ROOT / rel
        if src.is_file() and not rel.startswith(("metrics/", "tests/", "bench/")) and rel != "dvc.lock":
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (dest / "metrics").mkdir(exist_ok=True)
    params = merged(merged(default_params(), TINY), override or {})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"],
                ["git", "config", "user.name", "t"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        run(cmd, dest)
    return dest


@pytest.fixture
def project(tmp_path):
    """A throwaway copy of the project (see copy_project)."""
    return copy_project(tmp_path / "project")


def built_once(tmp_path_factory, name: str, build) -> tuple[Path, str]:
    """build(folder) -> text, run once per test run: (folder, text). Under pytest-xdist the first
    worker to ask builds it in a folder all workers share, while the others wait and reuse it."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        return folder, build(folder)
    shared = tmp_path_factory.getbasetemp().parent  # pytest-N/, above each worker's popen-gwK/
    folder, done = shared / name, shared / f"{name}.txt"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed building it left
            folder.mkdir()
            done.write_text(build(folder))
    return folder, done.read_text()


@pytest.fixture(scope="session")
def pristine_repro(tmp_path_factory):
    """The project after one full `dvc repro` (the suite's only one), never changed afterwards:
    tests copy it (shutil.copytree, links kept) instead of running the pipeline again.
    (project, output of that repro)."""
    folder, output = built_once(tmp_path_factory, "pristine",
                                lambda folder: run(["dvc", "repro"], copy_project(folder / "project")).stdout)
    return folder / "project", output


@pytest.fixture(scope="session")
def reproduced(pristine_repro, tmp_path_factory):
    """A copy of the reproduced project, shared by the end-to-end tests that only read it or run
    experiments on top of it: (project, output of that first repro)."""
    dest = tmp_path_factory.mktemp("reproduced") / "project"
    shutil.copytree(pristine_repro[0], dest, symlinks=True)
    return dest, pristine_repro[1]
