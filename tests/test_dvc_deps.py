"""dvc.yaml is the pipeline's map: each stage's cmd names every path it reads and writes, and its
deps cover every vistage module the command loads, so a code change reruns each stage it can
affect (and no dep is there for nothing).

Each stage's cmd runs as written in dvc.yaml, in a fresh interpreter, in a copy of the project;
the modules it loaded (lazy imports included) are recorded at exit."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, run_env

pytestmark = pytest.mark.slow

STAGES = ("prepare", "split", "train", "predict", "evaluate", "report", "export")
CODE = ("src/", "stages/")

# Runs `python SCRIPT ARGS...` as `__main__` and writes the project files of the loaded modules.
RECORDER = """
import json, runpy, sys
out, script, *args = sys.argv[1:]
sys.argv = [script, *args]
code = 0
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
files = sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)})
json.dump({"code": code, "files": files}, open(out, "w"))
"""


def dvc_stages(root: Path = ROOT) -> dict:
    return yaml.safe_load((root / "dvc.yaml").read_text())["stages"]


def code_deps(stage: dict) -> list[str]:
    return [d for d in stage["deps"] if d.startswith(CODE)]


def covered(file: str, deps: list[str]) -> bool:
    return any(file == d or file.startswith(d.rstrip("/") + "/") for d in deps)


def uncovered(files: list[str], deps: list[str]) -> list[str]:
    """The loaded project files that no dep covers (a dep is a file or a folder above it)."""
    return [f for f in files if not covered(f, deps)]


def project_files(loaded: list[str], script: str) -> list[str]:
    """Loaded module files of this project (vistage and stages), relative to the project root."""
    rel = [str(Path(f).resolve().relative_to(ROOT)) for f in loaded
           if Path(f).resolve().is_relative_to(ROOT / "src") or Path(f).resolve().is_relative_to(ROOT / "stages")]
    return sorted({*rel, script})


def _run_stages(project: Path) -> dict[str, list[str]]:
    """Each stage's cmd run as dvc.yaml says, in pipeline order, recording what it loaded."""
    loaded = {}
    for name in STAGES:
        cmd = shlex.split(dvc_stages(project)[name]["cmd"])
        assert cmd[0] == "python" and cmd[1] == f"stages/{name}.py", cmd
        out = project / f".loaded-{name}.json"
        proc = subprocess.run([sys.executable, "-c", RECORDER, str(out), *cmd[1:]], cwd=project, env=run_env(),
                              capture_output=True, text=True)
        record = json.loads(out.read_text())
        assert record["code"] == 0, f"{name} failed:\n{proc.stderr[-2000:]}"
        loaded[name] = project_files(record["files"], cmd[1])
        _, outs = _declared(dvc_stages(project)[name])
        assert all((project / o).exists() for o in outs), f"{name} did not write all of {sorted(outs)}"
    return loaded


@pytest.fixture(scope="module")
def loaded_by_stage(tmp_path_factory) -> dict[str, list[str]]:
    """What each stage loads for either task: the default pipeline (classify) and a tiny task: vqa one.
    A stage's deps are the same for both tasks (dvc.yaml has one pipeline), so they must cover the
    union, and each dep must cover something one of the two loads."""
    from .conftest import copy_project
    from .test_vqa_pipeline import easy_vqa_slice

    classify = copy_project(tmp_path_factory.mktemp("deps") / "project")
    data = easy_vqa_slice(tmp_path_factory.mktemp("easy-vqa"), {"train": 30, "test": 10})
    vqa = copy_project(tmp_path_factory.mktemp("deps-vqa") / "project", {
        "task": "vqa", "epochs": 1, "max_steps_per_epoch": 3, "batch_size": 32, "augment": [],
        "data": {"path": str(data / "qa.json"), "root": str(data / "images"), "image_size": 16},
        "vqa": {"source": "json", "hidden": 32, "embed_dim": 16}})
    runs = [_run_stages(classify), _run_stages(vqa)]
    return {name: sorted(set().union(*(run[name] for run in runs))) for name in STAGES}


@pytest.mark.parametrize("name", STAGES)
def test_every_loaded_module_is_a_dep_of_its_stage(loaded_by_stage, name):
    missing = uncovered(loaded_by_stage[name], code_deps(dvc_stages()[name]))
    assert not missing, f"dvc.yaml: stage {name} loads {missing} but does not list it (or its folder) in deps"


@pytest.mark.parametrize("name", STAGES)
def test_removing_any_code_dep_is_caught(loaded_by_stage, name):
    """The check above fails for every single dep taken out: each dep covers a module it loads."""
    deps = code_deps(dvc_stages()[name])
    for dep in deps:
        rest = [d for d in deps if d != dep]
        assert uncovered(loaded_by_stage[name], rest), f"dvc.yaml: stage {name}: dep {dep} covers nothing it loads"


def test_the_stages_load_no_torch_where_none_is_needed(loaded_by_stage):
    """evaluate scores saved logits: it must stay free of the model code (and of its deps)."""
    assert not any(f.endswith(("models.py", "training.py", "inference.py", "model.py"))
                   for f in loaded_by_stage["evaluate"])


def _path_options(cmd: str) -> dict[str, str]:
    words = shlex.split(cmd)
    return {words[i]: words[i + 1] for i in range(2, len(words) - 1) if words[i].startswith("--")}


def _declared(stage: dict) -> tuple[set[str], set[str]]:
    def names(entries):
        return {next(iter(e)) if isinstance(e, dict) else e for e in entries}

    outs = set().union(*(names(stage.get(k, [])) for k in ("outs", "metrics", "plots")))
    return set(stage["deps"]), outs


@pytest.mark.parametrize("name", STAGES)
def test_cmd_names_every_path_the_stage_declares(name):
    """Reading dvc.yaml alone tells what a stage reads and writes: each path in the cmd is a dep or
    an output (or the folder of some), and each data dep and output is in the cmd (a file, or
    the folder it is written in; the raw data comes in through params: ${data.path})."""
    stage = dvc_stages()[name]
    deps, outs = _declared(stage)
    in_cmd = [path for option, path in _path_options(stage["cmd"]).items() if option != "--params"]
    declared = deps | outs
    assert all(any(covered(d, [p]) for d in declared) for p in in_cmd), f"{name}: a cmd path is not declared"
    data = {d for d in declared if not d.startswith(CODE) and not d.startswith("${")}
    assert not uncovered(sorted(data), in_cmd), f"{name}: {uncovered(sorted(data), in_cmd)} declared, not in cmd"


def test_the_stage_commands_have_no_default_paths():
    """Paths come from dvc.yaml's cmd, not from defaults buried in the commands."""
    import inspect

    import stages

    for name in STAGES:
        module = __import__(f"stages.{name}", fromlist=[name])
        for parameter in inspect.signature(getattr(module, name)).parameters.values():
            default = parameter.default
            assert not isinstance(default, (str, Path)), f"stages/{name}.py: {parameter.name} has a default path"
    assert stages.__doc__
