import shlex
import sys

import pytest
import yaml

from vistage.errors import VistageError
from vistage.params import PREDICTION_KEYS, Params, load_params

from .conftest import ROOT, run_env
from .stage_runner import run_stage


def test_project_params_are_valid():
    p = load_params(ROOT / "params.yaml")
    assert p.model and p.epochs >= 1 and p.data.source == "digits"


def test_defaults_equal_project_params():
    """params.yaml spells out every default, so what a run used is visible in one file."""
    assert load_params(ROOT / "params.yaml", keywords=()) == Params()


def test_scientific_notation_is_a_number(write_params):
    # PyYAML reads `1e-4` (no dot) as a string; it must still be accepted as dvc -S writes it
    path = write_params()
    path.write_text(path.read_text().replace("lr: 0.003", "lr: 1e-4"))
    assert load_params(path, keywords=()).lr == pytest.approx(1e-4)


BAD = [
    # (override, words that must appear in the one-line error)
    ({"model": "resnet1800"}, ["model", "'resnet1800'", "resnet18"]),
    ({"optimizer": "adamx"}, ["optimizer", "'adamx'", "adamax"]),
    ({"scheduler": "cosin"}, ["scheduler", "'cosin'", "cosine", "onecycle"]),
    ({"augment": ["crop", "flipp"]}, ["augment", "'flipp'", "flip"]),
    ({"loss": "crossentropy"}, ["loss", "cross_entropy"]),
    ({"data": {"source": "digit"}}, ["data.source", "'digit'", "digits"]),
    ({"lr": "fast"}, ["lr", "'fast'", "number"]),
    ({"epochs": -1}, ["epochs", "-1", "greater than or equal to 1"]),
    ({"batch_size": 0}, ["batch_size", "0"]),
    ({"lrr": 0.1}, ["unknown key 'lrr'", "did you mean 'lr'"]),
    ({"data": {"image_sise": 32}}, ["unknown key 'data.image_sise'", "image_size"]),
    ({"device": "tpu"}, ["device", "'tpu'", "cpu"]),
    ({"data": {"val_fraction": 0.6, "test_fraction": 0.5}}, ["val_fraction", "test_fraction", "below 1"]),
]


@pytest.mark.parametrize("override,words", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_params_give_one_line_naming_key_value_and_choices(write_params, override, words):
    path = write_params(override)
    with pytest.raises(VistageError) as exc:
        load_params(path)
    message = str(exc.value)
    assert "\n" not in message
    assert str(path) in message
    for word in words:
        assert word in message


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("lr: 0.1\nmodel: [unclosed\n")
    with pytest.raises(VistageError, match=r"not valid YAML \(line \d+\)"):
        load_params(path)


def test_missing_params_file(tmp_path):
    with pytest.raises(VistageError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


@pytest.mark.parametrize("stage", ["prepare", "split", "train", "predict", "report"])  # evaluate reads no params
def test_every_stage_refuses_bad_params_with_exit_2_and_no_traceback(tmp_path, write_params, stage):
    path = write_params({"epochs": -1})
    sentinel = tmp_path / "models" / "best.pt"
    sentinel.parent.mkdir()
    sentinel.write_bytes(b"earlier output")
    args = shlex.split(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["cmd"])[2:]
    args[args.index("--params") + 1] = str(path)  # the stage's own arguments, as dvc.yaml runs it
    proc = run_stage([sys.executable, "-m", "vistage", stage, *args], tmp_path, run_env())
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "epochs" in proc.stderr and "Traceback" not in proc.stderr
    assert sentinel.read_bytes() == b"earlier output"


def test_dvc_yaml_train_params_cover_the_training_schema():
    """Every top-level param must be declared by the stage that reads it, or DVC would not rerun it."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = set(stages["train"]["params"]) | {f"data.{k}" for k in Params.model_fields["data"].annotation.model_fields}
    declared_data = set(stages["prepare"]["params"]) | set(stages["split"]["params"])
    top_level = set(Params.model_fields) - {"data", "vqa"}
    report_only = {"report_baseline_rev"}  # the report stage depends on the whole params.yaml
    export_only = {"export"}  # the export stage's: changing the formats never retrains
    assert top_level - set(PREDICTION_KEYS) - report_only - export_only <= declared
    assert export_only <= set(stages["export"]["params"]) and not export_only & set(stages["train"]["params"])
    assert {"params.yaml": None} in stages["report"]["params"]
    assert set(PREDICTION_KEYS) <= set(stages["predict"]["params"])  # read by predict only: train never reruns
    assert not set(PREDICTION_KEYS) & set(stages["train"]["params"])
    # the vqa: group: its data keys are prepare's, its vocabulary and model keys train's
    vqa_keys = {f"vqa.{k}" for k in Params.model_fields["vqa"].annotation.model_fields}
    assert "vqa" in stages["train"]["params"] or vqa_keys <= set(stages["train"]["params"]) | declared_data
    # workers changes how fast prepare runs, not what it writes: declaring it would rerun prepare
    data_keys = {f"data.{k}" for k in Params.model_fields["data"].annotation.model_fields} - {"data.workers"}
    assert data_keys == {k for k in declared_data if k.startswith("data.")}
