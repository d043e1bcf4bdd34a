"""The users' recipes (recipes/*.yaml): valid params, one `dvc exp run` command each, and each one
trains for a few batches on tiny data."""

import io
import shlex
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vistage.params import Params
from vistage.recipes import check_recipe, dvc_command, load_recipe, recipe_names, set_flags
from vistage.training import TrainPaths, train

from .conftest import BIN, ROOT, TINY, default_params, merged, run_env

RECIPES = ROOT / "recipes"
NAMES = recipe_names(RECIPES)


def test_every_user_recipe_is_there():
    assert {"r3-scratch", "r3-frozen", "r3-finetune", "r3-two-stage", "r4-pets", "r5-csv"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_recipe_is_valid_and_its_flags_round_trip_through_hydra(name):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = check_recipe(name, ROOT / "params.yaml", RECIPES)
    parsed = OverridesParser.create().parse_overrides(set_flags(overrides))
    flat = {o.key_or_group: o.value() for o in parsed}
    expected = {k: v for k, v in overrides.items() if k != "data"}
    expected |= {f"data.{k}": v for k, v in overrides.get("data", {}).items()}
    assert flat == expected
    # what `dvc exp run -S` would write is valid params
    Params.model_validate(merged(default_params(), overrides))


def test_hydra_quoting_of_awkward_strings():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    values = {"data": {"path": "/data/my images/train.csv", "root": "1e-3", "csv_split_column": "true"}}
    parsed = OverridesParser.create().parse_overrides(set_flags(values))
    assert [o.value() for o in parsed] == ["/data/my images/train.csv", "1e-3", "true"]


def test_recipe_command_line(tmp_path):
    proc = subprocess.run([str(BIN / "vistage"), "recipe", "r5-csv"], cwd=ROOT, env=run_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    cmd = shlex.split(proc.stdout.strip())
    assert cmd == dvc_command("r5-csv", load_recipe("r5-csv", RECIPES))
    assert cmd[:5] == ["dvc", "exp", "run", "-n", "r5-csv"] and "small_stem=true" in cmd
    listing = subprocess.run([str(BIN / "vistage"), "recipe"], cwd=ROOT, env=run_env(), capture_output=True,
                             text=True)
    assert all(name in listing.stdout for name in NAMES)


def test_unknown_recipe_is_one_line_and_exit_2():
    proc = subprocess.run([str(BIN / "vistage"), "recipe", "r5csv"], cwd=ROOT, env=run_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "did you mean 'r5-csv'" in proc.stderr


def test_a_bad_recipe_names_its_file_and_key(tmp_path):
    (tmp_path / "typo.yaml").write_text("lrr: 0.1\n")
    from vistage.errors import VistageError

    with pytest.raises(VistageError, match=r"typo.yaml: unknown key 'lrr'; did you mean 'lr'"):
        check_recipe("typo", ROOT / "params.yaml", tmp_path)


def _smoke_params(name: str) -> Params:
    """The recipe's training params on the tiny digits store: few batches, small inputs."""
    overrides = {k: v for k, v in load_recipe(name, RECIPES).items() if k != "data"}
    smoke = {"epochs": 2, "batch_size": 16, "max_steps_per_epoch": 2, "num_workers": 0}
    if overrides.get("freeze_epochs"):
        smoke["freeze_epochs"] = 1  # stage 2 in the second epoch
    if overrides.get("input_size"):
        smoke["input_size"] = 32  # 224 px is a GPU's job
    return Params.model_validate(merged(merged(merged(default_params(), TINY), overrides), smoke))


@pytest.mark.parametrize("name", NAMES)
def test_recipe_trains_a_few_batches(name, digits_store, tmp_path):
    params = _smoke_params(name)
    result = train(params, TrainPaths(digits_store / "prepared", digits_store / "split.csv",
                                      tmp_path / "models", tmp_path / "live"))
    assert np.isfinite(result["train/loss"]) and result["epochs_trained"] == 2
    assert (tmp_path / "models" / "best.pt").is_file()


def _tiny_imagenet_tar(path: Path, classes: int = 3, per_class: int = 4) -> None:
    with tarfile.open(path, "w") as tar:
        for c in range(classes):
            wnid = f"n0000000{c}"
            for i in range(per_class):
                buf = io.BytesIO()
                Image.fromarray(np.full((64, 64, 3), 40 * c, np.uint8)).save(buf, "JPEG")
                info = tarfile.TarInfo(f"tiny-imagenet-200-subset/train/{wnid}/images/{wnid}_{i}.JPEG")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)
            boxes = f"{wnid}_0.JPEG\t0\t0\t10\t10\n".encode()
            info = tarfile.TarInfo(f"tiny-imagenet-200-subset/train/{wnid}/{wnid}_boxes.txt")
            info.size = len(boxes)
            tar.addfile(info, io.BytesIO(boxes))


def test_tiny_imagenet_csv_builds_the_r5_csv(tmp_path):
    _tiny_imagenet_tar(tmp_path / "tin.tar")
    out = tmp_path / "data" / "tiny-imagenet"
    for _ in range(2):  # a rerun reuses the extracted files
        subprocess.run([str(BIN / "python"), str(RECIPES / "tiny_imagenet_csv.py"), "--archive",
                        str(tmp_path / "tin.tar"), "--out", str(out)], check=True, capture_output=True)
    table = pd.read_csv(out / "train.csv")
    assert list(table.columns) == ["path", "label"] and len(table) == 12
    assert table["label"].value_counts().to_dict() == {f"n0000000{c}": 4 for c in range(3)}
    assert all((out / p).is_file() for p in table["path"])
    # and the csv source reads it as recipe r5-csv says
    from vistage.data.sources import load_source

    data = Params.model_validate(merged(default_params(), {"data": load_recipe("r5-csv", RECIPES)["data"]})).data
    data = data.model_copy(update={"path": str(out / "train.csv")})
    source = load_source(data)
    assert len(source.classes) == 3


def test_tiny_imagenet_csv_missing_archive_is_one_line(tmp_path):
    proc = subprocess.run([str(BIN / "python"), str(RECIPES / "tiny_imagenet_csv.py"), "--archive",
                           str(tmp_path / "missing.tar"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and proc.stderr.strip() == f"error: {tmp_path / 'missing.tar'}: archive not found"
