"""The Task seam: every setting a task does not read is refused or warned about (a table), files of
another task are one line naming both, and the structure the seam promises holds (no task tests
outside src/vistage/tasks, no import cycles, thin stages, typer only in the CLI)."""

import ast
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vistage.errors import VistageError
from vistage.params import Params, load_params
from vistage.tasks import TASKS, create_task

from .conftest import ROOT

# a valid, non-default value for every setting some task does not read (keys of Task.unread; a
# trailing dot: a whole group, one of its settings stands for it)
SET = {
    "data.source": "folder", "data.csv_path_column": "file", "data.csv_label_column": "y",
    "data.csv_split_column": "part", "data.csv_group_column": "group", "loss": "focal", "mix_alpha": 0.4,
    "data_on_device": True, "predict_top_k": 3, "gradcam_examples": 2, "gradcam_layer": "layer4", "cost_repeats": 5,
    "calibrate": False, "export": ["onnx"],
    "vqa.": ("vqa.fusion", "concat"), "head": "solve", "head_refit": True, "feature_norm": "power",
}
# settings a task reads that cannot work together (task, {key: value}, level, words of the message)
CONTRADICTIONS = [
    ("vqa", {"augment": ["mixup"]}, "error", "mixing two images leaves no answer"),
    ("vqa", {"tta": ["flip"]}, "error", "swaps left and right"),
    ("vqa", {"label_smoothing": 0.1}, "warning", "read by vqa.loss: cross_entropy only"),
    ("vqa", {"vqa": {"question_finetune": True}}, "warning", "read by vqa.question_encoder: minilm only"),
    ("vqa", {"vqa": {"attention_hops": 1}}, "warning", "read by vqa.fusion: san only"),
    ("vqa", {"gradcam_examples": 2}, "warning", "read by vqa.fusion: san only"),
]


def _nested(key: str, value) -> dict:
    *groups, last = key.split(".")
    out = {last: value}
    for group in reversed(groups):
        out = {group: out}
    return out


def _load(tmp_path, settings: dict, capsys) -> str:
    """load_params of a params.yaml holding `settings` as the train stage reads it; its warnings."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(settings))
    load_params(path)
    return capsys.readouterr().err


def _unread_rows():
    for name in TASKS.own_names():
        for key, (level, _) in create_task(name).unread.items():
            yield name, key, level


def test_every_unread_setting_has_a_row_here():
    assert {key for _, key, _ in _unread_rows()} <= set(SET), "add a value for the new unread setting to SET"


@pytest.mark.parametrize("task, key, level", list(_unread_rows()))
def test_a_setting_the_task_does_not_read_is_refused_or_warned_about(tmp_path, capsys, task, key, level):
    shown, value = SET[key] if key.endswith(".") else (key, SET[key])
    settings = {"task": task, **_nested(shown, value)}
    if level == "error":
        with pytest.raises(VistageError, match=re.escape(shown)):
            _load(tmp_path, settings, capsys)
        return
    warnings = _load(tmp_path, settings, capsys).splitlines()
    assert [w for w in warnings if w.startswith(f"warning: {tmp_path / 'params.yaml'}: {shown}:")
            and f"not read with task: {task}" in w], warnings


@pytest.mark.parametrize("task, settings, level, words", CONTRADICTIONS)
def test_settings_that_contradict_each_other_in_a_task(tmp_path, capsys, task, settings, level, words):
    settings = {"task": task, **settings}
    if level == "error":
        with pytest.raises(VistageError, match=words):
            _load(tmp_path, settings, capsys)
    else:
        assert words in _load(tmp_path, settings, capsys)


def test_the_defaults_draw_no_word_for_either_task(tmp_path, capsys):
    for name in TASKS.own_names():
        assert _load(tmp_path, {"task": name}, capsys) == ""


def test_an_unknown_task_lists_the_valid_ones(tmp_path, capsys):
    with pytest.raises(VistageError, match=r"task: 'vqaa' is not valid; did you mean 'vqa'\?; valid: classify, vqa"):
        _load(tmp_path, {"task": "vqaa"}, capsys)


# -- files of the other task -------------------------------------------------------------------

def _checkpoint(path: Path, task: str) -> Path:
    params = Params(task=task).training_dict()
    torch.save({"model": {}, "classes": ["a"], "image_size": 8, "normalize": {"mean": [0.5] * 3, "std": [0.5] * 3},
                "params": params, "epoch": 1, "task": task}, path)
    return path


def test_a_checkpoint_of_the_other_task_is_one_line_naming_both(tmp_path):
    from vistage.checkpoint import load_trained
    from vistage.tasks.vqa.predict import load_vqa_model

    with pytest.raises(VistageError, match="a checkpoint of task: vqa, but params.yaml says task: classify") as exc:
        load_trained(_checkpoint(tmp_path / "vqa.pt", "vqa"))
    assert "\n" not in str(exc.value)
    with pytest.raises(VistageError, match="a checkpoint of task: classify, but params.yaml says task: vqa"):
        load_vqa_model(_checkpoint(tmp_path / "classify.pt", "classify"), torch.device("cpu"))


def test_predictions_of_the_other_task_are_one_line_naming_both(tmp_path):
    from vistage.evaluation import Predictions
    from vistage.tasks.base import EvaluatePaths

    Predictions(np.array(["a", "b"]), np.array(["test"]), np.array([0]), np.array(["x"]), np.array([0]),
                np.zeros((1, 2), np.float32)).save(tmp_path / "logits.npz")
    paths = EvaluatePaths(*(tmp_path / name for name in ("m.json", "p.csv", "c.csv", "cal.csv")))
    with pytest.raises(VistageError, match="a predictions file of task: classify, but params.yaml says task: vqa"):
        create_task("vqa").evaluate(Params(task="vqa"), tmp_path / "logits.npz", paths)
    assert not paths.metrics.exists()


# -- the structure -----------------------------------------------------------------------------

SRC = ROOT / "src" / "vistage"
TASK_TESTS = re.compile(r"task\s*==|task\s*!=|\.task is (not )?None|is_vqa|\"vqa\" in |'vqa' in ")


def _code(folder: Path):
    return [p for p in sorted(folder.rglob("*.py")) if "__pycache__" not in p.parts]


def test_no_task_is_decided_outside_the_tasks():
    outside = [p for p in _code(SRC) + _code(ROOT / "stages") if SRC / "tasks" not in p.parents]
    found = [f"{p.relative_to(ROOT)}:{i}" for p in outside for i, line in enumerate(p.read_text().splitlines(), 1)
             if TASK_TESTS.search(line.split("#")[0])]
    assert not found


def _imports(path: Path) -> set[str]:
    """The vistage modules `path` imports (lazy imports too), as dotted names."""
    module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m in MODULES and m != module}


MODULES = {".".join(p.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__"): p for p in _code(SRC)}


def test_no_import_cycle_and_the_engine_imports_no_task():
    graph = {m: _imports(p) for m, p in MODULES.items()}
    # a package's __init__ importing its own submodules is how a package exposes them, not a cycle
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            assert state.get(d) != 1, f"import cycle: {' -> '.join(stack[stack.index(d):] + [d])}"
            if d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    engine = ("vistage.training", "vistage.checkpoint", "vistage.precision", "vistage.optim", "vistage.distributed")
    for m in engine:
        assert not {d for d in graph[m] if d.startswith(("vistage.tasks.classify", "vistage.tasks.vqa"))}, m


def test_stage_files_are_thin_and_typer_stays_in_the_cli():
    for stage in sorted((ROOT / "stages").glob("[a-z]*.py")):
        assert len(stage.read_text().splitlines()) < 60, stage.name
    cli = {"cli.py", "command.py", "listing.py", "recipe_command.py", "share_command.py"}
    typer_users = {p.name for p in _code(SRC) if re.search(r"^\s*(import typer|from typer)", p.read_text(), re.M)}
    assert typer_users <= cli, typer_users - cli


# -- settings VQA now honours ------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_vqa(tmp_path_factory):
    from vistage.tasks.vqa.data import load_questions, vqa_split_table, write_vqa_store
    from vistage.tasks.vqa.sources import load_vqa_source

    from .test_vqa_pipeline import make_vqa_json, vqa_params

    base = tmp_path_factory.mktemp("vqa-tta")
    folder = make_vqa_json(base / "raw")
    rng = np.random.default_rng(0)
    for png in (folder / "images").rglob("*.png"):  # texture, so that a 1-pixel shift changes the image
        Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(png)
    p = vqa_params(folder)
    write_vqa_store(base / "prepared", load_vqa_source(p.data, p.vqa), p.data)
    vqa_split_table(load_questions(base / "prepared"), 0.2, 0.2, 0).to_csv(base / "split.csv", index=False)
    return base


def test_vqa_validates_on_translated_views_from_cached_features_as_from_images(small_vqa, tmp_path, monkeypatch):
    """tta: [translate] under task: vqa averages the image and its two 1-pixel shifts; with a frozen
    image encoder the shifted views' features are cached too and give the same validation."""
    from vistage.tasks.vqa import features
    from vistage.training import TrainPaths, train

    from .test_vqa_pipeline import vqa_params

    def val_loss(name: str, **override) -> float:
        p = vqa_params(small_vqa / "raw", freeze="backbone", epochs=1, augment=[], **override)
        out = tmp_path / name
        result = train(p, TrainPaths(small_vqa / "prepared", small_vqa / "split.csv", out / "models", out / "live"))
        return result["val/loss"]

    plain, cached = val_loss("plain"), val_loss("cached", tta=["translate"])
    monkeypatch.setattr(features, "cacheable", lambda params: False)
    assert val_loss("images", tta=["translate"]) == pytest.approx(cached, abs=1e-5)
    assert cached != pytest.approx(plain, abs=1e-6)  # the views count
