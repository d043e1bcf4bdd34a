"""Nothing lost, ever: bad input is one line naming the key, file or row (exit 2, no traceback)
and leaves every earlier output byte-identical; a train killed at any point resumes to the
metrics and curves of an uninterrupted run.

One `dvc repro` serves every bad-input case (`CASES`, one row each): in its own copy of the
reproduced project, a case breaks one thing (a param, a data file, a checkpoint given to a
command, or a fault injected into it: a full disk, a late divergence; tests/faults.py), runs one
stage's command as dvc.yaml writes it, and every file under metrics/, data/, models/ and reports/
is hashed before and after: a stage that fails publishes none of its outputs. The kill trials
train on the session's 8x8 digits store for a few short epochs, in the background while the cases
run, two at a time. Each command is its own process, forked from one that imported the library
once (tests/stage_runner.py), so the table costs its checks, not a hundred interpreter start-ups.
(Unit-level cases of the same kind: test_faults.py, test_params.py, test_sources.py.)"""

import hashlib
import io
import json
import os
import pickle
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

from .conftest import TINY, default_params, merged, run_env
from .stage_runner import run_stage

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("metrics", "data", "models", "reports")  # every earlier output, in git or in DVC
RECORDS = ("dvc.lock", "params.yaml")  # what DVC and git record of them


def _digests(project: Path) -> dict[str, str]:
    """sha256 of every file under the outputs (data/: the store, split.csv and anything left beside
    them), but a failed train's run in progress (models/in-progress/: not an output, what a rerun
    with the same params resumes from)."""
    out = {}
    for top in OUTPUTS:
        for path in sorted((project / top).rglob("*")):
            if path.is_file() and "in-progress" not in path.relative_to(project).parts:
                out[str(path.relative_to(project))] = hashlib.sha256(path.read_bytes()).hexdigest()
    for name in RECORDS:
        out[name] = hashlib.sha256((project / name).read_bytes()).hexdigest()
    return out


def _stage_cmd(project: Path, stage: str, **replace) -> list[str]:
    """The stage's command from dvc.yaml, with some options given other values (or added)."""
    cmd = shlex.split(yaml.safe_load((project / "dvc.yaml").read_text())["stages"][stage]["cmd"])
    assert cmd[0] == "python"
    cmd[0] = sys.executable
    for option, value in replace.items():
        flag = "--" + option.replace("_", "-")
        if flag in cmd:
            cmd[cmd.index(flag) + 1] = str(value)
        else:  # an option dvc.yaml does not give (predict --input ...)
            cmd += [flag, str(value)]
    return cmd


# -- building bad files -----------------------------------------------------------------------

def _png(seed: int = 0, size: int = 8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _bomb_png() -> bytes:
    """A tiny PNG whose header claims 40000 x 40000 pixels (a decompression bomb)."""
    data = bytearray(_png())
    ihdr = bytearray(data[16:29])  # width, height, depth, colour type, ...
    ihdr[0:8] = struct.pack(">II", 40000, 40000)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    return bytes(data)


def _folder(root: Path, extra: dict[str, bytes] | None = None) -> Path:
    """Two classes of three good PNGs each, plus `extra` files (relative name -> bytes)."""
    for cls in ("a", "b"):
        for i in range(3):
            (root / cls).mkdir(parents=True, exist_ok=True)
            (root / cls / f"{i}.png").write_bytes(_png(i + (10 if cls == "b" else 0)))
    for rel, data in (extra or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _members() -> dict[str, bytes]:
    return {f"{cls}/{i}.png": _png(i + (10 if cls == "b" else 0)) for cls in ("a", "b") for i in range(3)}


def _tar(path: Path, extra: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {**_members(), **(extra or {})}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _zip(path: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in {**_members(), **(extra or {})}.items():
            zf.writestr(name, data)
    return path


def _csv(bad: Path, rows: str, header: str = "path,label") -> Path:
    _folder(bad / "images")
    good = "".join(f"{cls}/{i}.png,{cls}\n" for cls in ("a", "b") for i in range(3))
    (bad / "labels.csv").write_text(f"{header}\n{good}{rows}")
    return bad / "labels.csv"


class _RunsCode:
    """Unpickling this runs `touch MARKER`: a file holding it must be refused unopened."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cifar(root: Path, **batch_override) -> Path:
    """A tiny CIFAR-10 folder: 2 images per batch, 10 classes; `batch_override` replaces batch
    files (name -> bytes, or None to leave the file out)."""
    root.mkdir(parents=True)
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    files = {"batches.meta": pickle.dumps(meta)}
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        files[name] = pickle.dumps({b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
                                    b"labels": [0, 1]})
    files.update(batch_override)
    for name, data in files.items():
        if data is not None:
            (root / name).write_bytes(data)
    return root


def _batch(**fields) -> bytes:
    batch = {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 1]}
    batch.update({k.encode(): v for k, v in fields.items()})
    return pickle.dumps({k: v for k, v in batch.items() if v is not None})


def _torch_file(path: Path, obj) -> Path:
    import torch

    torch.save(obj, path)
    return path


def _truncated(path: Path, obj) -> Path:
    _torch_file(path, obj)
    path.write_bytes(path.read_bytes()[:300])
    return path


def _best(project: Path) -> dict:
    from vistage.checkpoint import load_checkpoint

    return load_checkpoint(project / "models" / "best.pt")


# -- the cases --------------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    stage: str  # the dvc.yaml stage whose command runs ("vistage ...": that command; "dvc repro")
    words: list[str]  # all in the one error line
    params: dict = field(default_factory=dict)  # merged into params.yaml ("bad/" in a value: the case's folder)
    make: object = None  # (project, bad folder) -> None: writes the bad files
    args: dict = field(default_factory=dict)  # options of the command given other values ("bad/...")
    params_text: str | None = None  # params.yaml replaced by this text
    fault: str | None = None  # a function of tests/faults.py injected into the command


def _src(source, path="bad/in", **data):
    return {"data": {"source": source, "path": path, **data}}


def _a_file(p, b):
    (b / "file").write_text("a file where a folder is expected")


def _vqa_json(**vqa):
    return {"task": "vqa", "data": {"path": "bad/q.json", "root": "bad/images"}, "vqa": {"source": "json", **vqa}}


def _vqa_files(entry: dict):
    """bad/q.json: one good question about bad/images/a.png, then `entry` (entry 1)."""
    def make(p, b):
        (b / "images").mkdir()
        (b / "images" / "a.png").write_bytes(_png())
        good = {"image": "a.png", "question": "what shape?", "answers": [{"answer": "circle"}]}
        (b / "q.json").write_text(json.dumps([good, entry]))
    return make


def _evil_pickle(p, b):
    (b / "evil.pt").write_bytes(pickle.dumps({"model": _RunsCode(b / "ran")}))


def _other_classes(p, b):
    state = _best(p)
    state["classes"] = [f"other{i}" for i in range(len(state["classes"]))]
    _torch_file(b / "other.pt", state)


def _weights(shape_of=lambda k, v: v.shape, rename=lambda k: k):
    def make(p, b):
        import torch

        weights = {rename(k): torch.zeros(shape_of(k, v)) for k, v in _best(p)["model"].items()}
        _torch_file(b / "w.pt", weights)
    return make


CASES = [
    # params: types, ranges, unknown keys, YAML (checked by every stage; prepare and split start fastest)
    Case("params-type-int", "prepare", ["params.yaml", "epochs", "'ten'"], {"epochs": "ten"}),
    Case("params-type-float", "split", ["params.yaml", "lr", "'fast'"], {"lr": "fast"}),
    Case("params-type-bool", "prepare", ["params.yaml", "deterministic", "'maybe'"], {"deterministic": "maybe"}),
    Case("params-type-list", "prepare", ["params.yaml", "augment", "'crop'"], {"augment": "crop"}),
    Case("params-type-nested", "prepare", ["params.yaml", "data.image_size", "'big'"],
         {"data": {"image_size": "big"}}),
    Case("params-range-zero", "prepare", ["params.yaml", "batch_size", "0"], {"batch_size": 0}),
    Case("params-range-negative", "split", ["params.yaml", "epochs", "-1"], {"epochs": -1}),
    Case("params-range-above", "prepare", ["params.yaml", "momentum", "1.5"], {"momentum": 1.5}),
    Case("params-range-image-size", "prepare", ["params.yaml", "data.image_size", "2"], {"data": {"image_size": 2}}),
    Case("params-range-fraction", "split", ["params.yaml", "data.val_fraction", "1.5"],
         {"data": {"val_fraction": 1.5}}),
    Case("params-infinite", "prepare", ["params.yaml", "weight_decay", "inf"], {"weight_decay": float("inf")}),
    Case("params-literal", "prepare", ["params.yaml", "data.resize", "'stretch'"], {"data": {"resize": "stretch"}}),
    Case("params-literal-device", "split", ["params.yaml", "device", "'tpu'"], {"device": "tpu"}),
    Case("params-empty-path", "prepare", ["params.yaml", "data.path", "''"], {"data": {"path": ""}}),
    Case("params-unknown-key", "prepare", ["params.yaml", "unknown key 'lrr'", "did you mean 'lr'"], {"lrr": 0.1}),
    Case("params-unknown-data-key", "split", ["params.yaml", "unknown key 'data.sorce'", "did you mean 'source'"],
         {"data": {"sorce": "folder"}}),
    Case("params-fractions-sum", "split", ["params.yaml", "data.val_fraction + data.test_fraction", "0.6 + 0.5"],
         {"data": {"val_fraction": 0.6, "test_fraction": 0.5}}),
    Case("params-not-yaml", "prepare", ["params.yaml", "not valid YAML", "line"], params_text="epochs: [1,\n"),
    Case("params-not-mapping", "split", ["params.yaml", "expected a mapping", "list"], params_text="- a\n- b\n"),
    Case("params-file-missing", "prepare", ["bad/none.yaml", "params file not found"],
         args={"params": "bad/none.yaml"}),
    # keywords and contradictions already refused (the stage that uses them checks them)
    Case("keyword-source", "prepare", ["data.source", "'folderz'", "did you mean 'folder'"], _src("folderz")),
    Case("keyword-model", "train", ["model", "'resnet1800'", "resnet18"], {"model": "resnet1800"}),
    Case("keyword-optimizer", "train", ["optimizer", "'adamww'", "adamw"], {"optimizer": "adamww"}),
    Case("keyword-augment", "train", ["augment", "'flipp'", "flip"], {"augment": ["flipp"]}),
    Case("contradiction-two-mixes", "train", ["augment", "mixup, cutmix", "keep one"],
         {"augment": ["mixup", "cutmix"]}),
    Case("contradiction-pretrained-simple-cnn", "train", ["simple_cnn", "pretrained: false"], {"pretrained": True}),
    # data: a folder
    Case("folder-missing", "prepare", ["data.path", "bad/nowhere"], _src("folder", "bad/nowhere")),
    Case("folder-corrupt-image", "prepare", ["a/corrupt.png", "1 bad image"],
         _src("folder"), lambda p, b: _folder(b / "in", {"a/corrupt.png": b"\x89PNG\r\n\x1a\n" + b"junk" * 20})),
    Case("folder-truncated-image", "prepare", ["b/cut.png", "1 bad image"],
         _src("folder"), lambda p, b: _folder(b / "in", {"b/cut.png": _png(99, 64)[:200]})),
    Case("folder-empty-image", "prepare", ["a/empty.jpg", "empty file"],
         _src("folder"), lambda p, b: _folder(b / "in", {"a/empty.jpg": b""})),
    Case("folder-text-as-image", "prepare", ["b/notes.jpg", "1 bad image"],
         _src("folder"), lambda p, b: _folder(b / "in", {"b/notes.jpg": b"just some text\n"})),
    Case("folder-decompression-bomb", "prepare", ["a/bomb.png", "DecompressionBomb"],
         _src("folder"), lambda p, b: _folder(b / "in", {"a/bomb.png": _bomb_png()})),
    Case("folder-image-outside-classes", "prepare", ["loose.png", "not inside a class folder"],
         _src("folder"), lambda p, b: _folder(b / "in", {"loose.png": _png(5)})),
    Case("folder-link-outside-root", "prepare", ["a/link.png", "links outside the data root"],
         _src("folder"), lambda p, b: (_folder(b / "in"), (b / "out.png").write_bytes(_png(7)),
                                       os.symlink(b / "out.png", b / "in" / "a" / "link.png"))),
    Case("folder-no-images", "prepare", ["bad/in", "no images found"],
         _src("folder"), lambda p, b: (b / "in" / "a").mkdir(parents=True)),
    # data: archives
    Case("tar-not-an-archive", "prepare", ["bad/in.tar.gz", "not a readable tar archive"],
         _src("folder", "bad/in.tar.gz"), lambda p, b: (b / "in.tar.gz").write_bytes(b"not gzip at all" * 10)),
    Case("tar-truncated", "prepare", ["bad/in.tar.gz", "not a readable tar archive"],
         _src("folder", "bad/in.tar.gz"),
         lambda p, b: (b / "in.tar.gz").write_bytes(_tar(b / "t.tar.gz").read_bytes()[:300])),
    Case("tar-dotdot-member", "prepare", ["../../escape.png", "escapes the archive root"],
         _src("folder", "bad/in.tar.gz"), lambda p, b: _tar(b / "in.tar.gz", {"../../escape.png": _png(3)})),
    Case("tar-absolute-member", "prepare", ["/tmp/abs.png", "escapes the archive root"],
         _src("folder", "bad/in.tar.gz"), lambda p, b: _tar(b / "in.tar.gz", {"/tmp/abs.png": _png(3)})),
    Case("tar-corrupt-member", "prepare", ["b/bad.png", "1 bad image"],
         _src("folder", "bad/in.tar.gz"), lambda p, b: _tar(b / "in.tar.gz", {"b/bad.png": b"GIF89a broken"})),
    Case("zip-slip", "prepare", ["../evil/x.png", "escapes the archive root"],
         _src("folder", "bad/in.zip"), lambda p, b: _zip(b / "in.zip", {"../evil/x.png": _png(3)})),
    Case("zip-not-an-archive", "prepare", ["bad/in.zip", "not a readable zip archive"],
         _src("folder", "bad/in.zip"), lambda p, b: (b / "in.zip").write_bytes(b"PK\x03\x04 but nothing else")),
    Case("zip-truncated", "prepare", ["bad/in.zip", "not a readable zip archive"],
         _src("folder", "bad/in.zip"),
         lambda p, b: (b / "in.zip").write_bytes(_zip(b / "z.zip").read_bytes()[:-60])),
    Case("zip-empty-member", "prepare", ["a/empty.png", "empty file"],
         _src("folder", "bad/in.zip"), lambda p, b: _zip(b / "in.zip", {"a/empty.png": b""})),
    # data: a CSV of paths and labels
    Case("csv-missing-file", "prepare", ["labels.csv row 8", "a/gone.png", "file not found"],
         _src("csv", "bad/labels.csv", root="bad/images"), lambda p, b: _csv(b, "a/gone.png,a\n")),
    Case("csv-empty-label", "prepare", ["labels.csv row 8", "a/0.png", "empty label"],
         _src("csv", "bad/labels.csv", root="bad/images"), lambda p, b: _csv(b, "a/0.png,\n")),
    Case("csv-empty-path", "prepare", ["labels.csv row 8", "empty path"],
         _src("csv", "bad/labels.csv", root="bad/images"), lambda p, b: _csv(b, ",a\n")),
    Case("csv-dotdot-path", "prepare", ["labels.csv row 8", "../labels.csv", "escapes the data root"],
         _src("csv", "bad/labels.csv", root="bad/images"), lambda p, b: _csv(b, "../labels.csv,a\n")),
    Case("csv-absolute-path", "prepare", ["labels.csv row 8", "/etc/hostname", "escapes the data root"],
         _src("csv", "bad/labels.csv", root="bad/images"), lambda p, b: _csv(b, "/etc/hostname,a\n")),
    Case("csv-missing-column", "prepare", ["labels.csv", "no column 'klass'", "data.csv_label_column"],
         _src("csv", "bad/labels.csv", root="bad/images", csv_label_column="klass"), lambda p, b: _csv(b, "")),
    Case("csv-bad-split-value", "prepare", ["labels.csv row 2", "split 'holdout'"],
         _src("csv", "bad/labels.csv", root="bad/images", csv_split_column="split"),
         lambda p, b: (_folder(b / "images"), (b / "labels.csv").write_text("path,label,split\na/0.png,a,holdout\n"))),
    Case("csv-ragged-row", "prepare", ["labels.csv", "not a readable CSV", "line 8"],
         _src("csv", "bad/labels.csv", root="bad/images"), lambda p, b: _csv(b, "a/0.png,a,extra,more\n")),
    Case("csv-empty-file", "prepare", ["labels.csv", "not a readable CSV"],
         _src("csv", "bad/labels.csv", root="bad/images"),
         lambda p, b: (_folder(b / "images"), (b / "labels.csv").write_bytes(b""))),
    Case("csv-binary", "prepare", ["labels.csv", "not a readable CSV"],
         _src("csv", "bad/labels.csv", root="bad/images"),
         lambda p, b: (_folder(b / "images"), (b / "labels.csv").write_bytes(b"path,label\n\xff\xfe\x00\x81,\x9c\n"))),
    # data: CIFAR python batches
    Case("cifar-pickle-runs-code", "prepare", ["data_batch_2", "not a CIFAR python batch", "refusing"],
         _src("cifar"), lambda p, b: _cifar(b / "in", data_batch_2=pickle.dumps({"data": _RunsCode(b / "ran")}))),
    Case("cifar-missing-batch", "prepare", ["bad/in", "data_batch_3 is missing"],
         _src("cifar"), lambda p, b: _cifar(b / "in", data_batch_3=None)),
    Case("cifar-truncated-batch", "prepare", ["data_batch_1", "not a CIFAR python batch"],
         _src("cifar"), lambda p, b: _cifar(b / "in", data_batch_1=_batch()[:50])),
    Case("cifar-not-a-dict", "prepare", ["test_batch", "not a CIFAR python batch"],
         _src("cifar"), lambda p, b: _cifar(b / "in", test_batch=pickle.dumps([1, 2, 3]))),
    Case("cifar-missing-key", "prepare", ["data_batch_4", "labels"],
         _src("cifar"), lambda p, b: _cifar(b / "in", data_batch_4=_batch(labels=None))),
    Case("cifar-wrong-shape", "prepare", ["data_batch_5", "3072"],
         _src("cifar"), lambda p, b: _cifar(b / "in", data_batch_5=_batch(data=np.zeros((2, 100), np.uint8)))),
    Case("cifar-label-out-of-range", "prepare", ["data_batch_1", "label 99"],
         _src("cifar"), lambda p, b: _cifar(b / "in", data_batch_1=_batch(labels=[0, 99]))),
    Case("cifar-no-batches", "prepare", ["bad/in", "no CIFAR batches found"],
         _src("cifar"), lambda p, b: _folder(b / "in")),
    Case("cifar-not-an-archive", "prepare", ["bad/in.tar.gz", "not a readable CIFAR archive"],
         _src("cifar", "bad/in.tar.gz"), lambda p, b: (b / "in.tar.gz").write_bytes(b"\x1f\x8b broken")),
    # inputs of the report (what evaluate and predict wrote, given broken)
    Case("report-cost-not-json", "report", ["bad/cost.json", "not valid JSON", "line 1"],
         make=lambda p, b: (b / "cost.json").write_text("{oops"), args={"cost": "bad/cost.json"}),
    Case("report-pairs-no-count", "report", ["bad/pairs.csv", "no column count"],
         make=lambda p, b: (b / "pairs.csv").write_text("actual,predicted\n1,2\n"), args={"confusion_pairs": "bad/pairs.csv"}),
    Case("report-gradcam-outside", "report", ["bad/cam/index.csv", "'../../params.yaml'", "is outside"],
         make=lambda p, b: ((b / "cam").mkdir(), (b / "cam" / "index.csv").write_text(
             "file,id,label,predicted,confidence,kind\n../../params.yaml,1,a,b,0.5,mistake\n")),
         args={"gradcam": "bad/cam"}),
    # checkpoints given to predict
    Case("checkpoint-runs-code", "predict", ["bad/evil.pt", "never runs code"], make=_evil_pickle,
         args={"checkpoint": "bad/evil.pt"}),
    Case("checkpoint-text", "predict", ["bad/text.pt", "not a readable vistage checkpoint"],
         make=lambda p, b: (b / "text.pt").write_text("not a checkpoint"), args={"checkpoint": "bad/text.pt"}),
    Case("checkpoint-empty", "predict", ["bad/empty.pt", "not a readable vistage checkpoint"],
         make=lambda p, b: (b / "empty.pt").write_bytes(b""), args={"checkpoint": "bad/empty.pt"}),
    Case("checkpoint-truncated", "predict", ["bad/cut.pt", "not a readable vistage checkpoint"],
         make=lambda p, b: (b / "cut.pt").write_bytes((p / "models" / "best.pt").read_bytes()[:4000]),
         args={"checkpoint": "bad/cut.pt"}),
    Case("checkpoint-missing", "predict", ["bad/none.pt", "checkpoint missing"], args={"checkpoint": "bad/none.pt"}),
    Case("checkpoint-other-classes", "predict", ["bad/other.pt", "other0", "data/prepared", "retrain"],
         make=_other_classes, args={"checkpoint": "bad/other.pt"}),
    Case("checkpoint-weights-only", "predict", ["bad/w.pt", "not a vistage checkpoint"],
         make=_weights(), args={"checkpoint": "bad/w.pt"}),
    # new images and Grad-CAM settings given to predict
    Case("predict-input-missing", "predict", ["predict_input", "bad/none", "does not exist"],
         {"predict_input": "bad/none"}),
    Case("predict-input-bad-image", "predict", ["predict: 1 bad image(s)", "x/broken.png"], {"predict_input": "bad/new"},
         lambda p, b: _folder(b / "new", {"x/broken.png": b"not a png"})),
    Case("predict-gradcam-layer", "predict", ["gradcam_layer", "'layer9'", "not a module"], {"gradcam_layer": "layer9"}),
    # pretrained weights files given to train
    Case("weights-missing", "train", ["pretrained", "bad/none.pt", "not found"], {"pretrained": "bad/none.pt"}),
    Case("weights-runs-code", "train", ["bad/evil.pt", "never runs code"], {"pretrained": "bad/evil.pt"},
         _evil_pickle),
    Case("weights-truncated", "train", ["bad/cut.pt", "not a readable weights file"], {"pretrained": "bad/cut.pt"},
         lambda p, b: (b / "cut.pt").write_bytes((p / "models" / "best.pt").read_bytes()[:4000])),
    Case("weights-no-state-dict", "train", ["bad/list.pt", "holds no state dict"], {"pretrained": "bad/list.pt"},
         lambda p, b: _torch_file(b / "list.pt", [1, 2, 3])),
    Case("weights-other-model", "train", ["bad/w.pt", "does not fit this model", "key 'x."],
         {"pretrained": "bad/w.pt"}, _weights(rename=lambda k: "x." + k)),
    Case("weights-other-shapes", "train", ["bad/w.pt", "tensors of", "fit this model"], {"pretrained": "bad/w.pt"},
         _weights(shape_of=lambda k, v: (*v.shape, 2))),
    # a split table that does not belong to the store
    Case("split-other-store", "train", ["bad/split.csv", "rows but the store has", "rerun split"],
         make=lambda p, b: (b / "split.csv").write_text("index,split\n0,train\n1,val\n"),
         args={"split": "bad/split.csv"}),
    Case("split-no-split-column", "predict", ["bad/split.csv", "no column 'split'"],
         make=lambda p, b: (b / "split.csv").write_text("index,part\n0,train\n"), args={"split": "bad/split.csv"}),
    # all or nothing: a stage that fails late publishes none of its outputs (its new ones differ:
    # epochs 3, image_size 10), and a place it cannot write is one line naming it
    Case("publish-prepare-metrics-unwritable", "prepare", ["cannot write bad/file/data.json", "last good run"],
         {"data": {"image_size": 10}}, _a_file, args={"metrics": "bad/file/data.json"}),
    Case("publish-train-disk-full-at-the-end", "train", ["cannot write metrics/train", "No space left", "last good run"],
         {"epochs": 3}, fault="disk_full_publishing_curves"),
    Case("publish-train-models-unwritable", "train", ["cannot write bad/file/models", "bad/file is not a folder"],
         make=_a_file, args={"models": "bad/file/models"}),
    Case("publish-train-diverges-in-epoch-2", "train", ["training diverged at epoch 2", "lower lr"], {"epochs": 3},
         fault="weights_blow_up_in_epoch_2"),
    Case("publish-train-nan-val-loss-is-never-best", "train", ["training diverged at epoch 2", "val loss nan"],
         {"epochs": 3}, fault="nan_validation_loss_in_epoch_2"),
    # a VQA questions file: its bad entries named as questions, an emptied answer list refused
    Case("vqa-question-empty", "prepare", ["bad question", "bad/q.json entry 1", "no question"],
         _vqa_json(), _vqa_files({"image": "a.png", "question": " "})),
    Case("vqa-question-empty-answer-list", "prepare", ["bad question", "bad/q.json entry 1", "answers: an empty list"],
         _vqa_json(), _vqa_files({"image": "a.png", "question": "what colour?", "answers": []})),
    Case("checkpoint-of-the-other-task", "predict", ["models/best.pt", "task: classify", "says task: vqa"],
         {"task": "vqa"}),
    # the export stage and the exported model: an unknown format, a VQA model, no checkpoint, --model alone
    Case("params-export-format", "export", ["params.yaml", "export", "'onx'", "did you mean 'onnx'"],
         {"export": ["onx"]}),
    Case("vqa-export-refused", "export", ["export:", "VQA model is not supported yet"],
         {"task": "vqa", "export": ["onnx"]}),
    Case("checkpoint-missing-for-export", "export", ["bad/none.pt", "checkpoint missing"],
         args={"checkpoint": "bad/none.pt"}),
    Case("predict-model-with-checkpoint", "predict", ["--model", "--input", "without --checkpoint"],
         args={"model": "bad/model.onnx"}),
    Case("vqa-predict-images-option-missing", "predict", ["--images", "bad/none", "does not exist"], {"task": "vqa"},
         _vqa_files({"image": "a.png", "question": "what colour?"}), args={"input": "bad/q.json", "images": "bad/none"}),
    Case("vqa-question-image-missing", "prepare", ["bad question", "bad/q.json entry 1", "'b.png' not found"],
         _vqa_json(), _vqa_files({"image": "b.png", "question": "what colour?"})),
    # a recipe run on top of leftover settings would not reproduce its figures
    Case("recipe-on-leftover-settings", "vistage recipe easy-vqa --run", ["max_steps_per_epoch: 2", "--from-defaults"],
         {"max_steps_per_epoch": 2}),
    # settings that contradict each other
    Case("contradiction-freeze-norm-from-scratch", "train", ["freeze_norm", "pretrained: false"], {"freeze_norm": True}),
]


# informational lines a stage may print before it meets the problem (host-dependent): not errors
HINTS = ("this CPU runs bf16 natively", "epoch ")  # "epoch ": train's lines before a late failure


def _error_line(proc: subprocess.CompletedProcess) -> str:
    """The one line a user error gives: exit 2, no traceback, `error: ...` alone on stderr (the
    informational HINTS aside)."""
    stderr = proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr and stderr.endswith("\n"), stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(HINTS)]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def reproduced_project(pristine_repro):
    """The project after a full `dvc repro` (8x8 digits, two epochs), shared by every case: each
    case breaks something in a copy of it."""
    return pristine_repro[0]


@dataclass
class Outcome:
    proc: subprocess.CompletedProcess | None
    before: dict
    after: dict
    ran_code: bool
    error: BaseException | None = None


def _run_case(case: Case, reproduced: Path, base: Path) -> Outcome:
    """Break what the case breaks in a copy of the reproduced project, run the stage's command."""
    project = base / case.id
    shutil.copytree(reproduced, project, symlinks=True)
    bad = project / "bad"
    bad.mkdir()
    before = _digests(project)
    params = project / "params.yaml"
    original_params = params.read_text()
    try:
        if case.make:
            case.make(project, bad)
        if case.params_text is not None:
            params.write_text(case.params_text)
        elif case.params:
            params.write_text(yaml.safe_dump(merged(yaml.safe_load(params.read_text()), case.params), sort_keys=False))
        if case.stage.startswith("vistage "):  # a command of the vistage CLI, not a stage of dvc.yaml
            proc = run_stage([sys.executable, "-m", *shlex.split(case.stage)], project, run_env())
        elif case.stage == "dvc repro":
            proc = subprocess.run(["dvc", "repro"], cwd=project, env=run_env(), capture_output=True, text=True, timeout=300)
        else:
            proc = run_stage(_stage_cmd(project, case.stage, **case.args), project, run_env(), fault=case.fault)
        params.write_text(original_params)  # the case's params are not an output
    except BaseException as exc:  # noqa: BLE001 -- reported by the case's test
        return Outcome(None, before, {}, False, exc)
    outcome = Outcome(proc, before, _digests(project), (bad / "ran").exists())
    shutil.rmtree(project, ignore_errors=True)
    return outcome


@pytest.fixture(scope="module")
def outcomes(reproduced_project, tmp_path_factory) -> dict[str, Outcome]:
    """Every case, each in its own copy of the reproduced project, two at a time (the stages
    mostly wait on imports: this halves the wall time on 2 cores)."""
    from concurrent.futures import ThreadPoolExecutor

    base = tmp_path_factory.mktemp("cases")
    with ThreadPoolExecutor(max(2, min(4, os.cpu_count() or 1))) as pool:
        done = pool.map(lambda c: _run_case(c, reproduced_project, base), [*CASES, DIVERGES_UNDER_DVC])
        return {case.id: outcome for case, outcome in zip([*CASES, DIVERGES_UNDER_DVC], done)}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input_is_one_line_and_loses_nothing(outcomes, case):
    outcome = outcomes[case.id]
    if outcome.error is not None:
        raise outcome.error
    assert not outcome.ran_code, "a file ran code"
    err = _error_line(outcome.proc)
    missing = [w for w in case.words if w not in err]
    assert not missing, f"{missing} not in: {err}"
    assert outcome.before and outcome.after == outcome.before, "an earlier output changed"


# lr 1e10 diverges in epoch 1: dvc repro reruns train alone (only lr changed), which stops with one
# line; dvc then adds its own lines and exits 255. (test_faults.py runs the train command alone.)
DIVERGES_UNDER_DVC = Case("dvc-repro-diverges", "dvc repro", ["training diverged at epoch 1", "lower lr"],
                          {"lr": 1e10})


def test_a_diverging_train_under_dvc_repro_loses_nothing(outcomes):
    outcome = outcomes[DIVERGES_UNDER_DVC.id]
    if outcome.error is not None:
        raise outcome.error
    stderr = outcome.proc.stderr
    assert outcome.proc.returncode != 0 and "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and all(w in errors[0] for w in DIVERGES_UNDER_DVC.words), stderr[-3000:]
    assert "failed to reproduce 'train'" in stderr and "Running stage 'prepare'" not in outcome.proc.stdout
    assert outcome.after == outcome.before, "an earlier output or dvc.lock changed"


# -- user text stays text: hostile class names through the report command ----------------------

def _classes_renamed(project: Path, names: list[str]) -> None:
    """The reproduced project as if its class folders had `names`: the store's class list and every
    table the report reads that names a class."""
    import pandas as pd

    meta_file = project / "data" / "prepared" / "classes.json"
    meta = json.loads(meta_file.read_text())
    rename = dict(zip(meta["classes"], names))
    meta_file.write_text(json.dumps({**meta, "classes": [rename[c] for c in meta["classes"]]}))
    for table in ("metrics/per_class.csv", "metrics/confusion.csv", "metrics/confusion_pairs.csv",
                  "reports/predictions.csv", "reports/gradcam/index.csv"):
        frame = pd.read_csv(project / table, dtype=str, keep_default_na=False)
        for column in {"class", "actual", "predicted", "label"} & set(frame.columns):
            frame[column] = frame[column].map(lambda v: rename.get(v, v))
        frame.to_csv(project / table, index=False)


def test_class_names_with_markup_stay_text_through_the_report_command(reproduced_project, tmp_path):
    """The report stage's dvc.yaml command on classes named with markup: report.md rendered as
    CommonMark with raw HTML let through, and index.html, hold no tag, handler or link of theirs
    (tests/test_report_escaping.py: every kind of name, both tasks, and Chromium)."""
    from .test_report_escaping import HOSTILE, MARKDOWN_TAGS, PAGE_TAGS, Parsed, render_commonmark

    project = tmp_path / "project"
    shutil.copytree(reproduced_project, project, symlinks=True)
    names = HOSTILE[:10]  # the digits' 10 classes
    _classes_renamed(project, names)
    proc = run_stage(_stage_cmd(project, "report"), project, run_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    markdown = Parsed(render_commonmark((project / "reports" / "report.md").read_text()))
    page = Parsed((project / "reports" / "index.html").read_text())
    for parsed, allowed in ((markdown, MARKDOWN_TAGS), (page, PAGE_TAGS)):
        assert {tag for tag, _ in parsed.tags} <= allowed, {tag for tag, _ in parsed.tags} - allowed
        assert not [name for _, attrs in parsed.tags for name in attrs if name.startswith("on")]
        assert all(attrs.get("href", "#").startswith("#") for tag, attrs in parsed.tags if tag == "a")
        shown = [name for name in names if name in parsed.text]
        assert len(shown) >= 3, f"the renamed classes do not show: {parsed.text[:2000]}"


def test_the_table_covers_every_category():
    kinds = {}
    for case in CASES:
        kinds[case.id.split("-")[0]] = kinds.get(case.id.split("-")[0], 0) + 1
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    assert {"params", "keyword", "folder", "tar", "zip", "csv", "cifar", "checkpoint", "weights", "predict",
            "publish", "vqa", "contradiction", "recipe"} <= set(kinds)


# -- kill -9 of train at five points, then the plain command resumes -----------------------------

KILL_PARAMS = {"epochs": 3, "max_steps_per_epoch": 6}  # 6 optimisation steps an epoch: seconds a run

# Each trial runs stages/train.py with one fault injected (no product code changed): at the point
# tests/faults.py's kill_at names, the process kills itself with SIGKILL.

# (id, where the kill happens, the epoch last.pt holds after the kill: the resume starts after it)
KILLS = [
    ("epoch1-before-any-checkpoint", "step:3", None),
    ("right-after-a-checkpoint", "after:last.pt@1", 1),
    ("during-a-checkpoint-write", "during:last.pt@2", 1),
    ("during-the-last-epoch", "step:15", 2),
    ("during-validation", "validate:2", 1),
    ("right-after-best-pt", "after:best.pt@2", None),  # None: whichever epoch improved
]


def _train_dir(digits_store, dest: Path) -> tuple[Path, list[str]]:
    """A project-like folder on the session's digits store (symlinked) and the train command."""
    (dest / "data").mkdir(parents=True)
    os.symlink(digits_store / "prepared", dest / "data" / "prepared")
    os.symlink(digits_store / "split.csv", dest / "data" / "split.csv")
    (dest / "params.yaml").write_text(yaml.safe_dump(merged(merged(default_params(), TINY), KILL_PARAMS)))
    cmd = _stage_cmd(ROOT, "train")
    cmd[1] = str(ROOT / cmd[1])  # this checkout's stages/train.py, run in `dest`
    return dest, cmd


@dataclass
class Trial:
    killed: subprocess.CompletedProcess
    last_epoch: int | None  # of models/last.pt after the kill
    leftovers: list[str]  # temporary files the kill left in models/in-progress/
    published: list[str]  # checkpoints and metrics published by the killed run: none
    resumed: subprocess.CompletedProcess
    work: Path


def _trial(digits_store, base: Path, kill_id: str, point: str) -> Trial:
    from vistage.checkpoint import load_checkpoint

    work, cmd = _train_dir(digits_store, base / kill_id)
    killed = run_stage(cmd, work, run_env(), fault=f"kill_at={point}")
    last = work / "models" / "in-progress" / "last.pt"
    last_epoch = load_checkpoint(last)["epoch"] if last.exists() else None
    in_progress = work / "models" / "in-progress"
    leftovers = sorted(p.name for p in in_progress.glob(".*.tmp")) if in_progress.exists() else []
    published = sorted(p.name for p in (work / "models").glob("*.pt")) + \
        sorted(p.name for p in (work / "metrics").glob("**/*") if p.is_file())
    resumed = run_stage(cmd, work, run_env())
    return Trial(killed, last_epoch, leftovers, published, resumed, work)


@pytest.fixture(scope="module", autouse=True)
def trials(request, digits_store, tmp_path_factory):
    """The uninterrupted run ("reference") and every kill trial, started in the background when
    the module starts (two at a time) so they share the cores with the bad-input cases."""
    from concurrent.futures import ThreadPoolExecutor

    if not any(item.name.startswith("test_kill_9_of_train") for item in request.session.items):
        yield {}
        return
    base = tmp_path_factory.mktemp("kills")

    def reference():
        work, cmd = _train_dir(digits_store, base / "reference")
        return run_stage(cmd, work, run_env())

    with ThreadPoolExecutor(2) as pool:
        jobs = {"reference": pool.submit(reference)}
        jobs.update({kill_id: pool.submit(_trial, digits_store, base, kill_id, point) for kill_id, point, _ in KILLS})
        jobs["reference_dir"] = base / "reference"
        yield jobs


def _result(trials: dict, key: str):
    return trials[key].result()

def _final_metrics(work: Path) -> dict:
    metrics = json.loads((work / "metrics/train/metrics.json").read_text())
    metrics.pop("throughput")
    curves = {str(p.relative_to(work)): p.read_text() for p in sorted((work / "metrics/train/plots").rglob("*.tsv"))
              if "throughput" not in p.name}
    assert curves, "no curves"
    return {"metrics.json": metrics, **curves}


def _weights_of(path: Path) -> dict:
    from vistage.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    return {"epoch": state["epoch"], "best_metric": state["best_metric"],
            **{k: v.numpy().tobytes() for k, v in state["model"].items()}}


@pytest.mark.parametrize("kill_id, point, last_epoch", KILLS, ids=[k[0] for k in KILLS])
def test_kill_9_of_train_then_the_rerun_resumes_to_the_same_result(trials, kill_id, point, last_epoch):
    ref = _result(trials, "reference")
    assert ref.returncode == 0, ref.stderr[-3000:]
    trial, reference = _result(trials, kill_id), trials["reference_dir"]
    assert trial.killed.returncode == -signal.SIGKILL, \
        f"not killed at {point} (exit {trial.killed.returncode}):\n{trial.killed.stderr[-2000:]}"
    if last_epoch is not None:
        assert trial.last_epoch == last_epoch
    if point.startswith("during:"):
        assert trial.leftovers, "the kill left no half-written checkpoint: the fault was not injected"
    assert not trial.published, f"a killed run published {trial.published}"
    assert trial.resumed.returncode == 0, trial.resumed.stderr[-3000:]
    said = trial.resumed.stdout + trial.resumed.stderr
    if trial.last_epoch:
        assert f"resuming from models/in-progress/last.pt at epoch {trial.last_epoch + 1}/3" in said, said[-3000:]
    else:
        assert "resuming" not in said
    assert sorted(p.name for p in (trial.work / "models").iterdir()) == ["best.pt", "last.pt"], \
        "the rerun left temporary files or the run in progress behind"
    assert _final_metrics(trial.work) == _final_metrics(reference)
    for name in ("best.pt", "last.pt"):
        assert _weights_of(trial.work / "models" / name) == _weights_of(reference / "models" / name), name
