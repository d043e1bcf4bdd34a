"""The export stage: model.json, ONNX and TorchScript files that agree with PyTorch, the exported
model served by `vistage predict --model` and by the README's snippet, and its one-line refusals."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from vistage.errors import VistageError

from .conftest import ROOT, TINY, default_params, merged, run_env, tiny_params
from .stage_runner import run_stage


@torch.library.custom_op("vistage_test::twice", mutates_args=())
def twice(x: torch.Tensor) -> torch.Tensor:
    """An operator torch.onnx has no translation for: what an unexportable model contains."""
    return x * 2


@twice.register_fake
def _(x):
    return torch.empty_like(x)


def _params_file(path, **override):
    path.write_text(yaml.safe_dump(merged(merged(default_params(), TINY), override), sort_keys=False))
    return path


def _export_cmd(params, checkpoint, store_dir, out_dir):
    return [sys.executable, "stages/export.py", "--params", str(params), "--checkpoint", str(checkpoint),
            "--store", str(store_dir / "prepared"), "--split", str(store_dir / "split.csv"),
            "--out", str(out_dir / "export"), "--metrics", str(out_dir / "export.json")]


@pytest.fixture(scope="module")
def exported(smoke_checkpoint, digits_store, tmp_path_factory):
    """The export stage's command, as dvc.yaml runs it, with export: [onnx, torchscript]:
    (its folder holding export/ and export.json, the completed process)."""
    out = tmp_path_factory.mktemp("exported")
    params = _params_file(out / "params.yaml", export=["onnx", "torchscript"])
    proc = run_stage(_export_cmd(params, smoke_checkpoint / "models/best.pt", digits_store, out), ROOT, run_env())
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.fixture(scope="module")
def new_images(digits_store, tmp_path_factory):
    """The first 40 test digits as PNG files: new images to predict."""
    from vistage.data.store import load_store

    out = tmp_path_factory.mktemp("new-images")
    store = load_store(digits_store / "prepared")
    test = pd.read_csv(digits_store / "split.csv").query("split == 'test'")["index"].to_numpy()[:40]
    for k, i in enumerate(test):
        Image.fromarray(np.asarray(store.images[i])).save(out / f"digit{k:02d}.png")
    return out


@pytest.mark.slow
def test_every_format_agrees_with_pytorch_on_every_test_image(exported):
    out, proc = exported
    metrics = json.loads((out / "export.json").read_text())
    assert metrics["model"] == "simple_cnn" and metrics["split"] == "test" and metrics["images"] == 270
    assert metrics["formats"] == ["onnx", "torchscript"] and metrics["eager_latency_ms_p50"] > 0
    for fmt in ("onnx", "torchscript"):
        m = metrics[fmt]
        assert m["exported"] and m["top1_agreement"] == 1.0 and m["disagreements"] == 0
        assert m["disagreeing_images"] == [] and 0 <= m["max_abs_logit_diff"] < 1e-4
        assert m["latency_ms_p50"] > 0 and m["speedup_vs_eager"] > 0
    assert sorted(p.name for p in (out / "export").iterdir()) == ["model.json", "model.onnx", "model.ts"]
    assert "top-1 agrees with PyTorch on 100.00% of 270 test images" in proc.stdout


@pytest.mark.slow
def test_model_json_holds_what_a_server_needs(exported, smoke_checkpoint):
    from vistage import __version__
    from vistage.checkpoint import load_checkpoint

    out, _ = exported
    card = json.loads((out / "export/model.json").read_text())
    state = load_checkpoint(smoke_checkpoint / "models/best.pt")
    assert card["vistage_version"] == __version__ and card["task"] == "classify" and card["model"] == "simple_cnn"
    assert card["classes"] == state["classes"] == [str(d) for d in range(10)]
    pre = card["preprocessing"]
    assert pre["image_size"] == 8 and pre["resize"] == "crop" and "centred square" in pre["resize_rule"]
    assert pre["mean"] == state["normalize"]["mean"] and pre["std"] == state["normalize"]["std"]
    assert card["input"] == {"name": "image", "dtype": "float32", "layout": "NCHW", "shape": ["batch", 3, 8, 8],
                             "dynamic_batch": True}
    assert card["temperature"] == state["temperature"] != 1.0 and card["probabilities"] == "softmax(logits / temperature)"
    assert card["formats"]["onnx"]["file"] == "model.onnx" and card["formats"]["onnx"]["opset"] >= 17
    assert card["formats"]["torchscript"]["file"] == "model.ts" and "failed" not in card


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_the_batch_size_is_dynamic(exported):
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported[0] / "export/model.onnx"), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(exported[0] / "export/model.ts"))
    x = np.random.default_rng(0).standard_normal((5, 3, 8, 8)).astype(np.float32)
    for n in (1, 2, 5):
        logits = session.run(["logits"], {"image": x[:n]})[0]
        assert logits.shape == (n, 10)
        assert np.allclose(logits, scripted(torch.from_numpy(x[:n])).detach().numpy(), atol=1e-4)


@pytest.mark.slow
def test_predict_with_the_onnx_model_writes_pytorchs_csv(exported, smoke_checkpoint, new_images, tmp_path):
    params = _params_file(tmp_path / "params.yaml")
    base = [sys.executable, "stages/predict.py", "--params", str(params), "--input", str(new_images)]
    torch_run = run_stage([*base, "--checkpoint", str(smoke_checkpoint / "models/best.pt"), "--out",
                           str(tmp_path / "torch.csv")], ROOT, run_env())
    onnx_run = run_stage([*base, "--model", str(exported[0] / "export/model.onnx"), "--out",
                          str(tmp_path / "onnx.csv")], ROOT, run_env())
    assert torch_run.returncode == 0 and onnx_run.returncode == 0, onnx_run.stderr
    expected, got = pd.read_csv(tmp_path / "torch.csv"), pd.read_csv(tmp_path / "onnx.csv")
    assert len(got) == 40 and list(got.columns) == list(expected.columns)
    names = [c for c in got.columns if c == "id" or c == "predicted" or re.fullmatch(r"top\d", c)]
    pd.testing.assert_frame_equal(got[names], expected[names])
    numbers = [c for c in got.columns if c not in names]
    assert np.abs(got[numbers].to_numpy() - expected[numbers].to_numpy()).max() <= 2e-5  # 5 decimals written


@pytest.mark.slow
def test_the_readme_snippet_runs_the_exported_model(exported, smoke_checkpoint, new_images, tmp_path):
    """The Export section's onnxruntime snippet, pasted as it is, gives predict's class and confidence."""
    from vistage.new_images import predict_images

    snippet = (ROOT / "README.md").read_text().split("## Export", 1)[1].split("```python\n", 1)[1].split("```")[0]
    assert len(snippet.strip().splitlines()) <= 10
    shutil.copytree(exported[0] / "export", tmp_path / "models/export")
    shutil.copy(new_images / "digit07.png", tmp_path / "image.png")
    (tmp_path / "one").mkdir()
    shutil.copy(new_images / "digit07.png", tmp_path / "one/image.png")
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    predicted, confidence = proc.stdout.split()
    table, _ = predict_images(smoke_checkpoint / "models/best.pt", tmp_path / "one", "cpu", "error")
    assert predicted == str(table["predicted"][0]) and abs(float(confidence) - table["confidence"][0]) <= 2e-5


@pytest.mark.slow
def test_a_model_the_exporter_refuses_is_one_warning_and_the_stage_succeeds(smoke_checkpoint, digits_store,
                                                                           tmp_path, monkeypatch, capsys):
    from vistage import export as export_module
    from vistage.inference import tta_logits

    monkeypatch.setattr(export_module.Served, "forward", lambda self, x: tta_logits(self.model, twice(x), ()))
    paths = export_module.ExportPaths(smoke_checkpoint / "models/best.pt", digits_store / "prepared",
                                      digits_store / "split.csv", tmp_path / "export", tmp_path / "export.json")
    summary = export_module.export_model(tiny_params(export=["onnx"]), paths)
    warning = capsys.readouterr().err.strip()
    assert warning.count("\n") == 0 and warning.startswith("warning: export: model 'simple_cnn' cannot be exported "
                                                           "to onnx: ")
    assert "vistage_test.twice" in warning and "onnx: not exported" in summary
    card = json.loads((tmp_path / "export/model.json").read_text())
    assert card["formats"] == {} and "vistage_test.twice" in card["failed"]["onnx"]
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["model.json"]
    metrics = json.loads((tmp_path / "export.json").read_text())
    assert metrics["onnx"]["exported"] is False and metrics["formats"] == []


def test_no_format_writes_model_json_alone(smoke_checkpoint, digits_store, tmp_path):
    from vistage.export import ExportPaths, export_model

    paths = ExportPaths(smoke_checkpoint / "models/best.pt", digits_store / "prepared", digits_store / "split.csv",
                        tmp_path / "export", tmp_path / "export.json")
    assert export_model(tiny_params(), paths) == f"{tmp_path}/export/model.json -> {tmp_path}/export.json"
    assert [p.name for p in (tmp_path / "export").iterdir()] == ["model.json"]
    assert json.loads((tmp_path / "export/model.json").read_text())["formats"] == {}
    assert json.loads((tmp_path / "export.json").read_text())["formats"] == []


def test_an_unknown_format_is_a_did_you_mean_error(write_params):
    from vistage.params import load_params

    with pytest.raises(VistageError) as err:
        load_params(write_params({"export": ["onx"]}), keywords=())
    assert str(err.value).endswith("params.yaml: export: 'onx' is not valid; did you mean 'onnx'?; "
                                   "valid: onnx, torchscript")
    assert load_params(write_params({"export": ["onnx", "torchscript"]}), keywords=()).export == ["onnx", "torchscript"]


def test_the_formats_params_checks_are_the_exporters_registered():
    from vistage.export import FORMATS
    from vistage.params import EXPORT_FORMATS

    assert FORMATS.own_names() == sorted(EXPORT_FORMATS)


def test_export_is_not_a_training_param():
    """Changing the formats never makes a checkpoint look stale (resume compares training params)."""
    assert "export" not in tiny_params(export=["onnx"]).training_dict()


def test_a_missing_onnxruntime_is_one_line_saying_how_to_install_it(monkeypatch, tmp_path):
    import importlib.util

    from vistage.export import ExportPaths, export_model

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    paths = ExportPaths(tmp_path / "missing.pt", tmp_path, tmp_path / "split.csv", tmp_path / "out",
                        tmp_path / "m.json")
    with pytest.raises(VistageError) as err:  # before the checkpoint is even looked for
        export_model(tiny_params(export=["onnx"]), paths)
    assert str(err.value) == ("export: onnx needs the package(s) onnxruntime, not installed: "
                              "pip install 'vistage[export]'")
    with pytest.raises(VistageError, match=r"predict --model .* needs the package\(s\) onnxruntime"):
        from vistage.served import OnnxModel

        (tmp_path / "model.onnx").write_bytes(b"")
        (tmp_path / "model.json").write_text(json.dumps({"task": "classify"}))
        OnnxModel(tmp_path / "model.onnx")


def test_vqa_export_is_refused_in_one_line_and_model_json_says_so(tmp_path):
    from vistage.export import ExportPaths, export_model
    from vistage.params import contradictions

    vqa = {"task": "vqa", "augment": [], "data": {"source": "digits"}}
    with pytest.raises(VistageError, match=r"export: \[\"onnx\"\] is not read with task: vqa \(exporting a VQA "
                                           r"model is not supported yet"):
        contradictions(tiny_params(**vqa, export=["onnx"]), "params.yaml")  # train refuses it before any work
    paths = ExportPaths(tmp_path / "best.pt", tmp_path, tmp_path / "split.csv", tmp_path / "export",
                        tmp_path / "export.json")
    with pytest.raises(VistageError, match="^export: exporting a VQA model is not supported yet"):
        export_model(tiny_params(**vqa, export=["onnx"]), paths)
    export_model(tiny_params(**vqa), paths)  # export: [] (the default): a model.json that says so
    card = json.loads((tmp_path / "export/model.json").read_text())
    assert card["task"] == "vqa" and card["supported"] is False and "not supported yet" in card["note"]


def test_predict_takes_a_checkpoint_or_an_exported_model_with_input(tmp_path):
    from vistage.tasks import PredictPaths

    out = tmp_path / "out.csv"
    with pytest.raises(VistageError, match="--checkpoint needed"):
        PredictPaths(None, out).check_model()
    with pytest.raises(VistageError, match="give it with --input, without --checkpoint"):
        PredictPaths(None, out, model=tmp_path / "model.onnx").check_model()
    with pytest.raises(VistageError, match="give it with --input, without --checkpoint"):
        PredictPaths(tmp_path / "best.pt", out, input=tmp_path, model=tmp_path / "model.onnx").check_model()
    PredictPaths(None, out, input=tmp_path, model=tmp_path / "model.onnx").check_model()


def test_preprocessing_is_the_normalizers_to_the_bit():
    from vistage.batches import Normalizer
    from vistage.served import preprocess

    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    expected = Normalizer(mean, std, torch.device("cpu"))(torch.from_numpy(images)).numpy()
    assert np.array_equal(preprocess(images, mean, std), expected)


def test_the_temperature_comes_from_the_checkpoint_when_it_holds_one():
    from vistage.export import _temperature

    assert _temperature({}) == 1.0
    assert _temperature({"temperature": 1.7}) == 1.7
    assert _temperature({"info": {"temperature": 0.8}}) == 0.8


def test_the_exporters_reason_is_its_summary_line():
    from vistage.export import _reason

    message = ("Failed to convert the exported program to an ONNX model. \x1b[96mThis is step 3/3\x1b[0m\n\n"
               "## Exception summary\n\n<class 'torch.onnx._internal.exporter._errors.DispatchError'>: No ONNX "
               "function found for <OpOverload(op='x.y')>.\n⬆️\nmore")
    assert _reason(RuntimeError(message)) == "RuntimeError: No ONNX function found for <OpOverload(op='x.y')>."
    assert _reason(ValueError("one\ntwo")) == "ValueError: one"


@pytest.mark.slow
def test_a_power_normalized_classifier_exports_and_agrees(digits_store, tmp_path):
    """feature_norm: power's root and normalization are ordinary operators: both formats export
    them and agree with PyTorch on every test image."""
    from vistage.training import train

    from .conftest import train_paths

    train(tiny_params(feature_norm="power", epochs=1, max_steps_per_epoch=4), train_paths(digits_store, tmp_path))
    params = _params_file(tmp_path / "params.yaml", feature_norm="power", export=["onnx", "torchscript"])
    proc = run_stage(_export_cmd(params, tmp_path / "models/best.pt", digits_store, tmp_path), ROOT, run_env())
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "export.json").read_text())
    for fmt in ("onnx", "torchscript"):
        assert metrics[fmt]["exported"] and metrics[fmt]["top1_agreement"] == 1.0
        assert metrics[fmt]["max_abs_logit_diff"] < 1e-4
