"""The real stage commands and the real dvc, in throwaway git repositories holding a copy of the
project. Most tests share one `dvc repro` (the `reproduced` fixture); those that need another
state (kill -9, raw data) make their own copy."""

import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from .conftest import copy_project, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STAGES = ["prepare", "split", "train", "predict", "evaluate", "report", "export"]
OUTPUTS = ["data/prepared/images.npy", "data/prepared/samples.csv", "data/prepared/classes.json", "data/split.csv",
           "models/best.pt", "models/last.pt", "reports/predictions.csv", "reports/logits.npz",
           "reports/index.html", "reports/report.md", "metrics/data.json", "metrics/split.json", "metrics/train/metrics.json",
           "metrics/eval.json", "metrics/confusion.csv", "metrics/per_class.csv", "metrics/calibration.csv",
           "metrics/confusion_pairs.csv", "metrics/cost.json", "reports/submission.csv", "reports/gradcam/index.csv",
           "models/export/model.json", "metrics/export.json"]


def _ran(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def _hashes(project) -> dict[str, str]:
    files = [p for p in (project / "metrics").rglob("*") if p.is_file()]
    files += [project / rel for rel in OUTPUTS]
    return {str(p.relative_to(project)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_repro_runs_every_stage_once_and_writes_its_outputs(reproduced):
    project, first = reproduced
    assert _ran(first) == STAGES
    for rel in OUTPUTS:
        assert (project / rel).is_file(), rel
    assert np.load(project / "data/prepared/images.npy", mmap_mode="r").shape == (1797, 8, 8, 3)
    split = pd.read_csv(project / "data/split.csv")["split"].value_counts().to_dict()
    assert split == {"train": 1258, "val": 269, "test": 270}
    ev = json.loads((project / "metrics/eval.json").read_text())
    assert list(ev) == ["test", "val"] and ev["test"]["images"] == 270 and ev["val"]["images"] == 269
    for scores in ev.values():
        assert scores["accuracy"] > 0.85  # 2 epochs on 8x8 digits: chance is 0.1
        assert scores["top5_accuracy"] >= scores["accuracy"] and 0 <= scores["ece"] < 0.5
        assert all(isinstance(v, (int, float)) for v in scores.values())
    assert "Running stage 'predict'" in first and first.count("predict: 270 test, 269 val images") == 1
    # data/new is empty by default and digits has no unlabeled images: a submission of none
    assert pd.read_csv(project / "reports/submission.csv").empty
    gradcam = pd.read_csv(project / "reports/gradcam/index.csv")
    assert gradcam["kind"].value_counts().get("correct") == 2 and len(gradcam) <= 8 + 2  # gradcam_examples: 8
    assert all((project / "reports/gradcam" / f).is_file() for f in gradcam["file"])
    cost = json.loads((project / "metrics/cost.json").read_text())
    assert cost["model"] == "simple_cnn" and cost["batch_size"] == 64 and cost["latency_ms_p50"] > 0


def test_evaluate_scores_what_predict_kept(reproduced):
    """The model runs once (predict) over test and val; evaluate's numbers follow from the saved
    logits."""
    from vistage.evaluation import Predictions

    project, _ = reproduced
    pred = Predictions.load(project / "reports/logits.npz")
    table = pd.read_csv(project / "reports/predictions.csv", dtype={"label": str, "predicted": str})
    split = pd.read_csv(project / "data/split.csv")
    ev = json.loads((project / "metrics/eval.json").read_text())
    assert pred.split_names == ["test", "val"] and len(set(pred.index)) == len(pred.index) == 270 + 269
    for name in ("test", "val"):
        part = pred.of(name)
        assert sorted(part.index) == sorted(split.loc[split["split"] == name, "index"])
        assert part.logits.shape == (ev[name]["images"], 10)
        assert (part.logits.argmax(1) == part.labels).mean() == pytest.approx(ev[name]["accuracy"], abs=1e-6)
        # cross-entropy from the logits (log-softmax), independently of evaluate's sklearn log_loss
        z = part.logits.astype(np.float64) / part.temperature  # the served (calibrated) probabilities
        log_p = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
        assert ev[name]["loss"] == pytest.approx(-log_p[np.arange(len(z)), part.labels].mean(), abs=1e-6)
    test = pred.of("test")
    assert list(test.index) == table["index"].tolist()  # predictions.csv: the test split
    assert (test.classes[test.logits.argmax(1)] == table["predicted"].to_numpy()).all()
    assert (table["correct"] == (table["label"] == table["predicted"])).all()
    assert table["correct"].mean() == pytest.approx(ev["test"]["accuracy"], abs=1e-6)
    confusion = pd.read_csv(project / "metrics/confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == 270
    pairs = pd.read_csv(project / "metrics/confusion_pairs.csv")
    assert list(pairs.columns) == ["actual", "predicted", "count", "rate"] and pairs["count"].sum() == 270
    assert len(pairs) == len(confusion.drop_duplicates())  # one row per pair that occurs
    assert pairs.groupby("actual")["rate"].sum().to_numpy() == pytest.approx(np.ones(10), abs=1e-5)
    per_class = pd.read_csv(project / "metrics/per_class.csv")
    assert per_class["support"].sum() == 270 and len(per_class) == 10
    calibration = pd.read_csv(project / "metrics/calibration.csv")
    assert list(calibration.columns) == ["bin_lower", "bin_upper", "confidence", "accuracy", "count"]
    assert calibration["count"].sum() == 270
    ece = (calibration["count"] * (calibration["accuracy"] - calibration["confidence"]).abs()).sum() / 270
    assert ece == pytest.approx(ev["test"]["ece"], abs=1e-5)  # the csv is rounded to 6 digits


def test_report_shows_metrics_curves_confusion_and_mistakes(reproduced):
    project, _ = reproduced
    html = (project / "reports/index.html").read_text()
    ev = json.loads((project / "metrics/eval.json").read_text())
    metrics = html.split(">Test metrics</h2>")[1].split("<h2")[0]
    assert "<th class=l>test</th><th class=l>val</th>" in metrics and "{" not in metrics
    for name in ("test", "val"):
        assert f"<td>{ev[name]['accuracy']:.4f}</td>" in metrics and f"<td>{ev[name]['ece']:.4f}</td>" in metrics
    assert html.count("<svg") == 4 and "Confusion matrix" in html and "data:image/png;base64" in html
    assert "Calibration" in html and "is not in HEAD" in html  # the first commit of the copy has no metrics
    markdown = (project / "reports/report.md").read_text()
    assert markdown.startswith("# vistage report") and "## Confusion matrix" in markdown
    for image in re.findall(r'src="([^"]+)"', markdown):
        assert (project / "reports" / image).is_file(), image


def test_outputs_are_git_ignored_and_metrics_are_not(reproduced):
    project, _ = reproduced
    generated = ["data/prepared", "data/split.csv", "models/best.pt", "reports/index.html", "reports/report.md"]
    ignored = run(["git", "check-ignore", *generated], project)
    assert len(ignored.stdout.split()) == len(generated)
    for kept in ("metrics/eval.json", "data/README.md", "data/raw/README.md"):
        assert run(["git", "check-ignore", kept], project, check=False).returncode == 1, kept


def test_noop_repro_runs_nothing(reproduced):
    project, _ = reproduced
    again = run(["dvc", "repro"], project)
    assert _ran(again.stdout) == [] and "up to date" in again.stdout


def test_bad_params_stop_dvc_repro_and_keep_every_output(reproduced):
    project, _ = reproduced
    before = _hashes(project)
    original = (project / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["model"] = "resnet1800"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        proc = run(["dvc", "repro"], project, check=False)
    finally:
        (project / "params.yaml").write_text(original)
    assert proc.returncode != 0
    assert "model: 'resnet1800' is not valid; did you mean 'resnet18'" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    assert _hashes(project) == before


def test_experiment_reruns_train_and_after_and_compares(reproduced):
    project, _ = reproduced
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "baseline"], project)
    exp = run(["dvc", "exp", "run", "-S", "lr=1e-4"], project)
    assert _ran(exp.stdout) == ["train", "predict", "evaluate", "report", "export"]
    assert yaml.safe_load((project / "params.yaml").read_text())["lr"] == pytest.approx(1e-4)
    shown = json.dumps(json.loads(run(["dvc", "exp", "show", "--json"], project).stdout))
    assert "0.0001" in shown and "accuracy" in shown
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], project).stdout)
    assert "metrics/eval.json" in diff and diff["metrics/eval.json"]["test.accuracy"]["diff"] < 0  # lr too low
    assert "val.accuracy" in diff["metrics/eval.json"]
    plots = run(["dvc", "plots", "diff", "--json"], project)
    assert "metrics/confusion.csv" in plots.stdout and "metrics/calibration.csv" in plots.stdout


def _image_folder(root, classes=("a", "b", "c"), per_class=10, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(80 * k + 20, 10, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def _set_data(project, **data):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"].update(data)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _changed(project) -> set[str]:
    """The stages (and .dvc files) `dvc status` reports as changed."""
    return set(json.loads(run(["dvc", "status", "--json"], project).stdout))


def _images(project) -> int:
    return json.loads((project / "metrics/data.json").read_text())["images"]


def test_raw_data_in_the_repo_is_a_dependency_of_prepare(project):
    """`dvc add data/raw/NAME`: replacing, adding or removing an image there reruns prepare."""
    from PIL import Image

    shapes = project / "data/raw/shapes"
    _image_folder(shapes)
    run(["dvc", "add", "data/raw/shapes"], project)
    _set_data(project, source="folder", path="data/raw/shapes")
    run(["dvc", "repro", "prepare"], project)
    assert _images(project) == 30 and "prepare" not in _changed(project)

    Image.new("RGB", (8, 8), (255, 0, 0)).save(shapes / "a" / "0.png")  # the same name, other pixels
    assert "prepare" in _changed(project)
    assert "modified:           data/raw/shapes" in run(["dvc", "status", "prepare"], project).stdout
    _image_folder(shapes, classes=("d",), per_class=10, seed=1)  # a new class folder
    (shapes / "b" / "0.png").unlink()
    run(["dvc", "add", "data/raw/shapes"], project)
    assert "Running stage 'prepare'" in run(["dvc", "repro", "prepare"], project).stdout
    assert _images(project) == 39
    assert "prepare" not in _changed(project)


def test_csv_and_images_outside_the_repo_are_a_dependency_of_prepare(project, tmp_path):
    """Data outside the project (absolute paths): DVC hashes it in place, the images the CSV
    points to included."""
    from PIL import Image

    outside = tmp_path / "outside"
    _image_folder(outside / "images")
    rows = [{"path": f"images/{c}/{i}.png", "label": c} for c in "abc" for i in range(10)]
    pd.DataFrame(rows).to_csv(outside / "labels.csv", index=False)
    _set_data(project, source="csv", path=str(outside / "labels.csv"), root=str(outside))
    run(["dvc", "repro", "prepare"], project)
    assert _images(project) == 30 and "prepare" not in _changed(project)

    Image.new("RGB", (8, 8), (0, 255, 0)).save(outside / "images" / "c" / "3.png")  # an image the CSV lists
    assert "prepare" in _changed(project)
    assert "modified:           " + str(outside) in run(["dvc", "status", "prepare"], project).stdout
    assert "Running stage 'prepare'" in run(["dvc", "repro", "prepare"], project).stdout


def test_kill_9_during_dvc_repro_then_repro_resumes(tmp_path):
    """kill -9 the whole `dvc repro` mid-training; the next `dvc repro` resumes from
    models/in-progress/last.pt (not a DVC output: dvc leaves it alone) and ends with the metrics of an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from vistage.checkpoint import load_checkpoint

    from .conftest import run_env
    from .stage_runner import run_stage

    project = copy_project(tmp_path / "project", {"epochs": 5})
    run(["dvc", "repro", "split"], project)
    proc = subprocess.Popen(["dvc", "repro"], cwd=project, env=run_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = project / "models" / "in-progress" / "last.pt"  # the run's own, published only when it ends
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if last.exists() and load_checkpoint(last)["epoch"] >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # dvc and the stage process it started
    proc.wait()
    epoch_at_kill = load_checkpoint(last)["epoch"]
    assert 2 <= epoch_at_kill < 5, "training finished before it could be killed"

    resumed = run(["dvc", "repro", "train"], project)  # the stages after it have nothing to show here
    assert f"resuming from models/in-progress/last.pt at epoch {epoch_at_kill + 1}/5" in resumed.stdout + resumed.stderr
    assert _ran(resumed.stdout)[0] == "train"

    # the same training, uninterrupted, into other directories
    reference = run_stage([sys.executable, "stages/train.py", "--params", "params.yaml", "--store", "data/prepared",
                           "--split", "data/split.csv", "--models", "ref_models", "--live", "ref_live"], project,
                          run_env())
    assert reference.returncode == 0, reference.stderr[-3000:]
    got = json.loads((project / "metrics/train/metrics.json").read_text())
    want = json.loads((project / "ref_live/metrics.json").read_text())
    got.pop("throughput"), want.pop("throughput")
    assert got == want
    for curve in ("train/loss.tsv", "val/acc.tsv"):  # no epoch logged twice or lost
        assert (project / "metrics/train/plots/metrics" / curve).read_text() == \
            (project / "ref_live/plots/metrics" / curve).read_text()
