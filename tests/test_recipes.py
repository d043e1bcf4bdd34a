"""The users' recipes (recipes/*.yaml): valid params, one `dvc exp run` command each whose `-S`
flags set exactly the recipe's values (and, from the defaults, reset every other setting), the
`vistage recipe` command (its refusals of leftover settings and of a second run under one name),
and the script that builds recipe r5-csv's CSV. (Training each recipe for a few batches is tested
with the engine.)"""

import csv
import importlib.util
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from vistage.errors import VistageError
from vistage.params import Params
from vistage.recipes import (check_recipe, describe, flatten, hydra_value, leftover_settings, load_recipe, merge,
                             recipe_command, recipe_names, set_flags)

from .conftest import BIN, ROOT, SHARED_DATASETS, run, run_env

RECIPES = ROOT / "recipes"
NAMES = recipe_names(RECIPES)
BASE = yaml.safe_load((ROOT / "params.yaml").read_text())
SCRIPT = RECIPES / "tiny_imagenet_csv.py"

# what defines each recipe, from RECIPES.md (R3-R5) and the data at hand
DEFINING = {
    "r3-scratch": {"model": "resnet50", "pretrained": False, "optimizer": "adam", "lr": 1e-3,
                   "weight_decay": 1e-4, "epochs": 15, "batch_size": 512, "scheduler": "none",
                   "augment": ["flip", "crop", "color_jitter"], "data.image_size": 32},
    "r3-frozen": {"model": "tf_efficientnet_lite0", "pretrained": True, "freeze": "backbone", "freeze_epochs": 0,
                  "input_size": 224, "optimizer": "adamw", "scheduler": "onecycle", "batch_size": 128},
    "r3-finetune": {"pretrained": True, "freeze": "none", "input_size": 224, "scheduler": "cosine", "lr": 3e-4},
    "r3-two-stage": {"pretrained": True, "freeze": "backbone", "freeze_epochs": 3, "backbone_lr_scale": 0.1},
    "r4-pets": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "label_smoothing": 0.2, "data.source": "folder",
                "data.path": "../shared/datasets/oxford-pets-sample.tar", "data.image_size": 224,
                "augment": ["random_resized_crop", "flip", "autoaugment", "random_erasing"]},
    "r5-csv": {"model": "resnet34", "small_stem": True, "drop_rate": 0.5, "label_smoothing": 0.1,
               "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-3, "scheduler": "plateau", "lr_factor": 0.1,
               "lr_patience": 10, "epochs": 100, "batch_size": 64, "data.source": "csv",
               "data.path": "data/tiny-imagenet/train.csv", "data.val_fraction": 0.2,
               "augment": ["random_resized_crop", "flip", "randaugment", "random_erasing", "mixup_cutmix"]},
    # issue 11: the speed recipes
    "cifar10-cpu": {"model": "airbench", "patch_whitening": True, "optimizer": "sgd", "scheduler": "triangular",
                    "tta": ["flip", "translate"], "data.val_fraction": 0.1},
    "cifar10-gpu": {"model": "airbench", "patch_whitening": True, "optimizer": "sgd", "scheduler": "triangular",
                    "tta": ["flip", "translate"], "data_on_device": True, "data.val_fraction": 0.1},
}
DEFINING["easy-vqa"] = {"task": "vqa", "vqa.source": "easy-vqa", "model": "simple_cnn", "vqa.question_encoder": "bow",
                        "vqa.batch_by_image": True}
DEFINING["r1-vqa"] = {"task": "vqa", "vqa.source": "json", "model": "resnet50", "pretrained": False,
                      "vqa.question_encoder": "bow", "vqa.fusion": "concat", "vqa.loss": "soft_bce"}
DEFINING["r2-vqa"] = {"task": "vqa", "vqa.source": "json", "pretrained": True, "vqa.question_encoder": "minilm",
                      "vqa.loss": "soft_bce"}
DEFINING["pets-transfer"] = {"model": "tf_efficientnet_lite0", "pretrained": True, "freeze": "backbone",
                             "head": "solve", "head_refit": True, "augment": ["flip"], "tta": ["flip"],
                             "data.path": "../shared/datasets/oxford-pets-sample.tar"}
DEFINING["daquar"] = {"task": "vqa", "vqa.source": "csv", "data.path": "../shared/datasets/daquar-train.tar",
                      "pretrained": True, "freeze": "backbone", "freeze_epochs": 0, "augment": [],
                      "precision": "bf16", "channels_last": True, "data.val_fraction": 0.0}
for _name in ("r3-scratch", "r3-frozen", "r3-finetune", "r3-two-stage", "cifar10-cpu", "cifar10-gpu"):
    DEFINING[_name] |= {"data.source": "folder", "data.path": "../shared/datasets/cifar10-train.tar"}


def vistage(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "vistage"), *args], cwd=cwd, env=env or run_env(), capture_output=True,
                          text=True)


def test_the_recipes_of_r3_r4_r5_are_there():
    assert set(NAMES) == set(DEFINING)


@pytest.mark.parametrize("name", sorted(DEFINING))
def test_recipe_is_valid_params_and_says_what_it_is(name):
    overrides = check_recipe(name, ROOT / "params.yaml", RECIPES)
    flat = flatten(overrides)
    assert {k: flat.get(k) for k in DEFINING[name]} == DEFINING[name]
    Params.model_validate(merge(BASE, overrides))  # the params the experiment trains with
    lines = (RECIPES / f"{name}.yaml").read_text().splitlines()
    header = "\n".join(lines[:next(i for i, line in enumerate(lines) if not line.startswith("#"))])
    first = describe(RECIPES / f"{name}.yaml")
    assert first.startswith(name[:2].upper()) if name[0] == "r" and name[1].isdigit() else first
    for part in ("Reproduces:", "Data:", "Hardware and time", "Expected:"):
        assert f"# {part}" in header, f"{name}: the leading comment says nothing under {part!r}"


def _yaml12_floats(tree, like):
    """DVC writes 0.00001 as `1e-05`: a float in YAML 1.2 (DVC's reader), a string in YAML 1.1
    (PyYAML's; the params schema turns it back into the float). Read such strings as floats."""
    if isinstance(tree, dict) and isinstance(like, dict):
        return {k: _yaml12_floats(v, like.get(k)) for k, v in tree.items()}
    if isinstance(tree, str) and isinstance(like, float):
        return float(tree)
    return tree


@pytest.mark.parametrize("name", sorted(DEFINING))
def test_flags_set_exactly_the_recipe_through_hydra_and_dvc(name, tmp_path):
    from dvc.utils.hydra import apply_overrides
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = check_recipe(name, ROOT / "params.yaml", RECIPES)
    flags = set_flags(overrides, BASE)
    parsed = OverridesParser.create().parse_overrides(flags)
    assert {o.key_or_group: o.value() for o in parsed} == flatten(overrides)
    # what `dvc exp run -S ...` writes into params.yaml is the recipe on top of params.yaml
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    apply_overrides(params, flags)
    written = _yaml12_floats(yaml.safe_load(params.read_text()), merge(BASE, overrides))
    assert written == merge(BASE, overrides)
    assert Params.model_validate(written).model_dump() == Params.model_validate(merge(BASE, overrides)).model_dump()


@pytest.mark.parametrize("value", [
    "../shared/datasets/cifar10-train.tar", "/data/my images/train.csv", "C:\\data\\train.csv", "C:\\data\\",
    "it's", "say \"hi\"", "a,b", "[x]", "true", "null", "1e-3", "42", "nan", "", " padded ", "~/data", "*.jpg"])
def test_string_values_round_trip_through_hydra(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    got = OverridesParser.create().parse_overrides([f"data.path={hydra_value(value)}"])[0].value()
    assert got == value and isinstance(got, str)
    # and the shell-quoted command line gives dvc that same argument
    assert shlex.split(shlex.join(["-S", f"data.path={hydra_value(value)}"]))[1] == f"data.path={hydra_value(value)}"


def test_other_values_in_hydra_syntax():
    assert set_flags({"augment": ["flip", "crop"], "input_size": None, "small_stem": True, "lr": 1e-5,
                      "data": {"path": "../d/x.tar", "split_seed": 3}}) == [
        "augment=[flip,crop]", "input_size=null", "small_stem=true", "lr=1e-05", "data.path=../d/x.tar",
        "data.split_seed=3"]
    with pytest.raises(VistageError, match="interpolation"):
        hydra_value("${oc.env:HOME}")


def test_a_key_missing_from_params_yaml_is_added(tmp_path):
    """dvc exp run -S cannot set a key params.yaml lacks; `+key=` adds it."""
    from dvc.utils.hydra import apply_overrides

    base = {k: v for k, v in BASE.items() if k != "ema_decay"}
    base["data"] = {k: v for k, v in BASE["data"].items() if k != "split_seed"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(base))
    flags = set_flags({"ema_decay": 0.999, "lr": 0.01, "data": {"split_seed": 7}}, base)
    assert flags == ["+ema_decay=0.999", "lr=0.01", "+data.split_seed=7"]
    apply_overrides(tmp_path / "params.yaml", flags)
    written = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert (written["ema_decay"], written["lr"], written["data"]["split_seed"]) == (0.999, 0.01, 7)


@pytest.mark.parametrize("text, message", [
    ("lrr: 0.1\n", r"recipes/bad.yaml: unknown key 'lrr'; did you mean 'lr'\?"),
    ("data:\n  imge_size: 64\n", r"recipes/bad.yaml: unknown key 'data.imge_size'; did you mean 'image_size'\?"),
    ("epochs: -1\n", r"recipes/bad.yaml: epochs: -1 is not valid"),
    ("freeze: all\n", r"recipes/bad.yaml: freeze: 'all' is not valid"),
    ("data:\n  val_fraction: 0.6\n  test_fraction: 0.5\n", r"recipes/bad.yaml: data.val_fraction \+ data.test"),
    ("- lr\n", r"recipes/bad.yaml: expected a mapping"),
    ("lr: [1\n", r"recipes/bad.yaml: not valid YAML \(line 2\)"),
])
def test_a_bad_recipe_is_one_line_naming_its_file_and_key(tmp_path, text, message):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "bad.yaml").write_text(text)
    with pytest.raises(VistageError, match=message) as err:
        check_recipe("bad", ROOT / "params.yaml", tmp_path / "recipes")
    assert "\n" not in str(err.value)


def test_a_bad_params_yaml_is_named_as_such(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**BASE, "lrr": 1}))
    with pytest.raises(VistageError, match=r"params.yaml \(with .*r5-csv.yaml on top\): unknown key 'lrr'"):
        check_recipe("r5-csv", tmp_path / "params.yaml", RECIPES)


def test_recipe_values_come_back_as_the_schema_reads_them(tmp_path):
    (tmp_path / "mine.yaml").write_text("lr: 1e-3\nepochs: '5'\n")  # YAML reads both as strings
    assert check_recipe("mine", ROOT / "params.yaml", tmp_path) == {"lr": 0.001, "epochs": 5}


def test_unknown_recipe_exits_2_with_one_line():
    proc = vistage("recipe", "r5csv")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "did you mean 'r5-csv'" in proc.stderr
    assert all(name in proc.stderr for name in NAMES)  # the valid names


def test_vistage_recipe_prints_the_command_and_lists_the_recipes():
    proc = vistage("recipe", "r3-two-stage")
    assert proc.returncode == 0, proc.stderr
    cmd = shlex.split(proc.stdout)
    assert cmd == recipe_command("r3-two-stage", ROOT / "params.yaml", folder=RECIPES)
    assert cmd[:5] == ["dvc", "exp", "run", "-n", "r3-two-stage"] and cmd[5::2] == ["-S"] * (len(cmd[5:]) // 2)
    assert {"freeze=backbone", "freeze_epochs=3", "backbone_lr_scale=0.1", "augment=[flip,crop]"} <= set(cmd)
    listing = vistage("recipe")
    assert listing.returncode == 0, listing.stderr
    for name in NAMES:
        assert name in listing.stdout and describe(RECIPES / f"{name}.yaml")[:30] in listing.stdout


def test_recipe_modules_and_help_import_no_torch():
    code = ("import sys; from pathlib import Path; import vistage.cli; from vistage.recipes import recipe_command; "
            "recipe_command('r4-pets', Path('params.yaml')); assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def fake_dvc(tmp_path):
    """A project folder with one recipe whose data exists, and a `dvc` on PATH that records its
    arguments and exits 3."""
    project = tmp_path / "project"
    (project / "recipes").mkdir(parents=True)
    (project / "data").mkdir()
    (project / "data" / "mine.csv").write_text("path,label\n")
    shutil.copy(ROOT / "params.yaml", project)
    (project / "recipes" / "mine.yaml").write_text("# mine\nlr: 0.01\ndata:\n  source: csv\n  path: data/mine.csv\n")
    shutil.copy(RECIPES / "r5-csv.yaml", project / "recipes")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "dvc").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "args"}\nexit 3\n')
    (fake_bin / "dvc").chmod(0o755)
    env = run_env()
    env["PATH"] = f"{fake_bin}{os.pathsep}{env['PATH']}"
    return project, env, tmp_path / "args"


def test_run_and_queue_execute_dvc_and_pass_its_exit_code(fake_dvc):
    project, env, args = fake_dvc
    proc = vistage("recipe", "mine", "--run", cwd=project, env=env)
    assert proc.returncode == 3
    assert args.read_text().split("\n")[:-1] == shlex.split(proc.stdout)[1:]
    assert "data.path=data/mine.csv" in proc.stdout
    proc = vistage("recipe", "mine", "--queue", cwd=project, env=env)
    assert proc.returncode == 3
    sent = args.read_text().split("\n")[:-1]
    # a queued experiment runs in a copy under .dvc/tmp/exps: its data path is made absolute
    assert sent[:5] == ["exp", "run", "-n", "mine", "--queue"]
    assert f"data.path={os.path.abspath(project / 'data' / 'mine.csv')}" in sent


def test_run_with_missing_data_stops_before_dvc(fake_dvc):
    project, env, args = fake_dvc
    proc = vistage("recipe", "r5-csv", "--run", cwd=project, env=env)
    assert proc.returncode == 2 and not args.exists() and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "data/tiny-imagenet/train.csv" in proc.stderr
    printed = vistage("recipe", "r5-csv", cwd=project, env=env)  # printing it only notes it
    assert printed.returncode == 0 and printed.stdout.startswith("dvc exp run") and "note:" in printed.stderr


def test_run_and_queue_pass_force_to_dvc(fake_dvc):
    project, env, args = fake_dvc
    for mode, options in (("--run", ["--force"]), ("--queue", ["--queue", "--force"])):
        proc = vistage("recipe", "mine", mode, "--force", cwd=project, env=env)
        assert proc.returncode == 3
        assert args.read_text().split("\n")[:4 + len(options)] == ["exp", "run", "-n", "mine", *options]


# settings a workspace keeps from earlier experiments: a smoke run's cap, another recipe's task and data
LEFTOVERS = {"task": "vqa", "epochs": 3, "max_steps_per_epoch": 2, "seed": 7, "augment": ["flip"], "input_size": 64,
             "gradcam_layer": "layer4", "data": {"source": "csv", "path": "elsewhere/x.csv", "val_fraction": 0.05,
                                                 "split_seed": 5},
             "vqa": {"hidden": 32, "questions_file": "qa.csv"}}


def test_leftovers_are_the_settings_off_their_defaults_that_the_recipe_does_not_set(tmp_path):
    params = tmp_path / "params.yaml"
    # epochs is the recipe's; seed and momentum (a string YAML 1.1 reads, 0.9 to the schema) are at their
    # defaults; threads is how the run uses the machine, not what it computes
    params.write_text(yaml.safe_dump(merge(BASE, {"epochs": 2, "max_steps_per_epoch": 3, "seed": 42, "threads": 1,
                                                  "momentum": "9e-1", "data": {"val_fraction": 0.3}})))
    assert leftover_settings("easy-vqa", params, RECIPES) == {"max_steps_per_epoch": 3, "data.val_fraction": 0.3}
    assert leftover_settings("easy-vqa", ROOT / "params.yaml", RECIPES) == {}


def test_run_and_queue_refuse_leftover_settings_leaving_params_yaml_as_it_was(fake_dvc):
    project, env, args = fake_dvc
    params = project / "params.yaml"
    params.write_text(yaml.safe_dump(merge(BASE, {"epochs": 3, "max_steps_per_epoch": 2}), sort_keys=False))
    before = params.read_bytes()
    for mode in ("--run", "--queue"):
        proc = vistage("recipe", "mine", mode, cwd=project, env=env)
        assert proc.returncode == 2 and proc.stdout == "" and not args.exists(), proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: params.yaml holds settings")
        assert "(epochs: 3, max_steps_per_epoch: 2)" in proc.stderr
        assert "add --from-defaults to reset them to epochs: 15, max_steps_per_epoch: 0" in proc.stderr
        assert params.read_bytes() == before
    printed = vistage("recipe", "mine", cwd=project, env=env)  # printing the command only notes them
    assert printed.returncode == 0 and printed.stderr.startswith("note: params.yaml holds settings")
    proc = vistage("recipe", "mine", "--run", "--from-defaults", cwd=project, env=env)
    assert proc.returncode == 3 and proc.stderr == ""
    sent = args.read_text().split("\n")[:-1]
    assert sent == shlex.split(proc.stdout)[1:]
    # the recipe's settings, then the leftovers reset to their defaults
    assert sent[4::2] == ["-S"] * 5 and sent[5::2] == ["lr=0.01", "data.source=csv", "data.path=data/mine.csv",
                                                      "epochs=15", "max_steps_per_epoch=0"]


@pytest.mark.parametrize("name", sorted(DEFINING))
def test_from_defaults_the_run_has_exactly_the_defaults_and_the_recipe(name, tmp_path):
    """Whatever params.yaml holds, what `dvc exp run -S ...` writes into it (and the stages read)
    is the defaults with the recipe on top."""
    from dvc.utils.hydra import apply_overrides

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(merge(BASE, LEFTOVERS), sort_keys=False))
    cmd = recipe_command(name, params, folder=RECIPES, from_defaults=True)
    assert cmd[:5] == ["dvc", "exp", "run", "-n", name] and cmd[5::2] == ["-S"] * (len(cmd[5:]) // 2)
    apply_overrides(params, cmd[6::2])
    applied = Params.model_validate(yaml.safe_load(params.read_text()))
    assert applied == Params.model_validate(merge(Params().model_dump(mode="json"), load_recipe(name, RECIPES)))


@pytest.mark.e2e
@pytest.mark.slow
def test_a_recipe_runs_again_under_its_name_only_with_force(tmp_path):
    """Real dvc in a git repository of one stage that counts its runs."""
    project, runs = tmp_path / "project", tmp_path / "runs"
    (project / "recipes").mkdir(parents=True)
    shutil.copy(ROOT / "params.yaml", project)
    (project / "recipes" / "mine.yaml").write_text("# mine\nlr: 0.01\n")
    stage = {"cmd": f"echo ran >> {shlex.quote(str(runs))} && echo done > out.txt", "params": ["lr"],
             "outs": ["out.txt"]}
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"count": stage}}))
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"],
                ["git", "config", "user.name", "t"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "init"]):
        run(cmd, project)
    first = vistage("recipe", "mine", "--run", cwd=project)
    assert first.returncode == 0, first.stderr
    params = (project / "params.yaml").read_bytes()
    again = vistage("recipe", "mine", "--run", cwd=project)
    assert again.returncode == 2 and again.stdout == "" and again.stderr.count("\n") == 1, again.stderr
    assert again.stderr.startswith("error: experiment 'mine' exists already") and "add --force" in again.stderr
    assert (project / "params.yaml").read_bytes() == params and runs.read_text() == "ran\n"
    forced = vistage("recipe", "mine", "--run", "--force", cwd=project)
    assert forced.returncode == 0, forced.stderr
    assert shlex.split(forced.stdout.splitlines()[0])[:6] == ["dvc", "exp", "run", "-n", "mine", "--force"]
    assert runs.read_text() == "ran\nran\n"


# --- recipes/tiny_imagenet_csv.py --------------------------------------------------------------

def _tiny_imagenet_tar(path: Path, classes: int = 3, per_class: int = 4) -> None:
    """The layout of tiny-imagenet-200-train.tar, with a few small images."""
    from PIL import Image

    def add(tar, name, data: bytes = b""):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    def folder(tar, name):
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)

    top = "tiny-imagenet-200-subset"
    wnids = [f"n0144{c:04d}" for c in range(classes)]
    with tarfile.open(path, "w") as tar:
        folder(tar, f"{top}/")
        add(tar, f"{top}/PROVENANCE.md", b"# provenance\n")
        folder(tar, f"{top}/train/")
        for c, wnid in enumerate(wnids):
            folder(tar, f"{top}/train/{wnid}/")
            folder(tar, f"{top}/train/{wnid}/images/")
            for i in range(per_class):
                buf = io.BytesIO()
                Image.new("RGB" if i else "L", (64, 64), 40 * c + i).save(buf, "JPEG")
                add(tar, f"{top}/train/{wnid}/images/{wnid}_{i}.JPEG", buf.getvalue())
            add(tar, f"{top}/train/{wnid}/{wnid}_boxes.txt", f"{wnid}_0.JPEG\t0\t0\t10\t10\n".encode())
        add(tar, f"{top}/wnids.txt", "\n".join(wnids).encode())
        add(tar, f"{top}/words.txt", "\n".join(f"{w}\tthing {w}" for w in wnids).encode())


def _script():
    spec = importlib.util.spec_from_file_location("tiny_imagenet_csv", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _r5_reads(csv_path: Path):
    """The csv source with recipe r5-csv's data params, pointed at `csv_path`."""
    from vistage.data.sources import load_source

    data = load_recipe("r5-csv", RECIPES)["data"] | {"path": str(csv_path), "root": str(csv_path.parent)}
    return load_source(Params.model_validate(merge(BASE, {"data": data})).data)


def test_tiny_imagenet_csv_builds_the_r5_csv_once(tmp_path):
    _tiny_imagenet_tar(tmp_path / "tin.tar")
    out = tmp_path / "data" / "tiny-imagenet"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "tin.tar"), str(out)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert "12 images, 3 classes" in proc.stdout
    with (out / "train.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "label"] and len(rows) == 13
    assert rows[1] == ["tiny-imagenet-200-subset/train/n01440000/images/n01440000_0.JPEG", "n01440000"]
    assert all((out / p).is_file() and Path(p).parent.parent.name == label for p, label in rows[1:])
    # a rerun does not extract again and writes the same CSV
    script = _script()
    before = (out / "train.csv").read_bytes()
    assert script.extract(tmp_path / "tin.tar", out) is False
    assert script.main([str(tmp_path / "tin.tar"), str(out)]) == 0
    assert (out / "train.csv").read_bytes() == before
    # and the csv source reads it with recipe r5-csv's data params
    source = _r5_reads(out / "train.csv")
    assert len(source.classes) == 3 and len(source.samples) == 12


def test_tiny_imagenet_csv_errors_are_one_line(tmp_path):
    def script(*args):
        return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)

    proc = script(tmp_path / "missing.tar", tmp_path / "out")
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {tmp_path / 'missing.tar'}: archive not found")
    assert proc.stderr.count("\n") == 1
    (tmp_path / "junk.tar").write_bytes(b"not a tar")
    proc = script(tmp_path / "junk.tar", tmp_path / "out")
    assert (proc.returncode, proc.stderr) == (2, f"error: {tmp_path / 'junk.tar'}: not a readable tar archive\n")
    with tarfile.open(tmp_path / "empty.tar", "w"):
        pass
    proc = script(tmp_path / "empty.tar", tmp_path / "empty")
    assert proc.returncode == 2 and "no <class>/images/<image> files" in proc.stderr
    proc = script(tmp_path / "junk.tar", tmp_path / "empty")  # OUT holds another archive's files
    assert proc.returncode == 2 and "another archive (empty.tar" in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("archive", ["cifar10-train.tar", "oxford-pets-sample.tar"])
@pytest.mark.shared
@pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason="../shared/datasets is absent")
def test_recipe_data_paths_read_as_their_sources_say(archive):
    """Every recipe's data.path is where the data is, and its source lists it (nothing decoded)."""
    from vistage.data.sources import load_source

    expected = {"cifar10-train.tar": (10, 50_000), "oxford-pets-sample.tar": (37, 370)}[archive]
    users = [n for n in NAMES if load_recipe(n, RECIPES).get("data", {}).get("path", "").endswith(archive)]
    # the recipes reading one archive read it with the same data params (the split and the store's
    # side aside: neither changes what the source lists): one check covers them
    def reading(name):
        return {k: v for k, v in load_recipe(name, RECIPES)["data"].items()
                if not k.endswith("_fraction") and k != "image_size"}

    assert users and len({json.dumps(reading(n), sort_keys=True) for n in users}) == 1
    data = Params.model_validate(merge(BASE, load_recipe(users[0], RECIPES))).data
    source = load_source(data.model_copy(update={"path": str(ROOT / data.path)}))  # relative to the root
    assert (len(source.classes), len(source.samples)) == expected


@pytest.mark.shared
@pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason="../shared/datasets is absent")
def test_tiny_imagenet_csv_on_the_real_archive(tmp_path):
    out = tmp_path / "tiny-imagenet"
    assert _script().main([str(SHARED_DATASETS / "tiny-imagenet-200-train.tar"), str(out)]) == 0
    source = _r5_reads(out / "train.csv")
    assert len(source.classes) == 200 and len(source.samples) == 10_000
