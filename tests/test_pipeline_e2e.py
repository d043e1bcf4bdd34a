"""The real CLI and the real dvc, in a throwaway git repository holding a copy of the project."""

import json

import pandas as pd
import pytest
import yaml

from .conftest import run

pytestmark = pytest.mark.e2e

OUTPUTS = ["data/prepared/images.npy", "data/split.csv", "models/best.pt", "models/last.pt",
           "metrics/data.json", "metrics/split.json", "metrics/train/metrics.json", "metrics/eval.json",
           "metrics/confusion.csv", "metrics/per_class.csv", "reports/predictions.csv", "reports/index.html"]


def _ran(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def test_repro_then_noop_then_experiment(project):
    first = run(["dvc", "repro"], project)
    assert _ran(first.stdout) == ["prepare", "split", "train", "evaluate", "predict", "report"]
    for rel in OUTPUTS:
        assert (project / rel).is_file(), rel
    ev = json.loads((project / "metrics/eval.json").read_text())
    assert ev["split"] == "test" and ev["images"] == 270 and 0 < ev["accuracy"] <= 1
    assert set(ev) >= {"accuracy", "precision_macro", "recall_macro", "f1_macro"}
    confusion = pd.read_csv(project / "metrics/confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == 270
    predictions = pd.read_csv(project / "reports/predictions.csv")
    assert (predictions["correct"] == (predictions["label"] == predictions["predicted"])).all()
    assert predictions["correct"].mean() == pytest.approx(ev["accuracy"], abs=1e-6)
    html = (project / "reports/index.html").read_text()
    assert "<svg" in html and "Confusion matrix" in html and "data:image/png;base64" in html
    # DVC outputs are ignored by git; the small metrics are not
    ignored = run(["git", "check-ignore", "data/prepared", "models/best.pt", "reports/index.html"], project)
    assert len(ignored.stdout.split()) == 3
    assert run(["git", "check-ignore", "metrics/eval.json"], project, check=False).returncode == 1

    second = run(["dvc", "repro"], project)
    assert _ran(second.stdout) == [] and "up to date" in second.stdout

    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "baseline"], project)
    exp = run(["dvc", "exp", "run", "-S", "lr=1e-4"], project)
    assert _ran(exp.stdout) == ["train", "evaluate", "predict", "report"]
    assert yaml.safe_load((project / "params.yaml").read_text())["lr"] == pytest.approx(1e-4)

    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    text = json.dumps(shown)
    assert "0.0001" in text and "accuracy" in text
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], project).stdout)
    assert "metrics/eval.json" in diff and "accuracy" in diff["metrics/eval.json"]
    plots = run(["dvc", "plots", "diff", "--json"], project)
    assert "metrics/confusion.csv" in plots.stdout


def test_bad_params_stop_dvc_repro_and_keep_outputs(project):
    run(["dvc", "repro"], project)
    before = {rel: (project / rel).read_bytes() for rel in ("models/best.pt", "metrics/eval.json")}
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["model"] = "resnet1800"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run(["dvc", "repro"], project, check=False)
    assert proc.returncode != 0
    assert "model: 'resnet1800' is not valid; did you mean 'resnet18'" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    for rel, content in before.items():
        assert (project / rel).read_bytes() == content, f"{rel} changed"


def test_stages_run_by_hand(project):
    for stage in ("prepare", "split", "train", "evaluate", "predict", "report"):
        proc = run(["vistage", stage, "--params", "params.yaml"], project)
        assert stage in proc.stdout
    assert (project / "reports/index.html").is_file()


def test_kill_9_during_dvc_repro_then_repro_resumes(project):
    """kill -9 the whole `dvc repro` mid-training; the next `dvc repro` resumes from models/last.pt
    (persist: true keeps it) and ends with the metrics of an uninterrupted run."""
    import os
    import signal
    import subprocess
    import time

    from vistage.checkpoint import load_checkpoint

    from .conftest import run_env

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["epochs"] = 5
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro", "split"], project)
    proc = subprocess.Popen(["dvc", "repro"], cwd=project, env=run_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = project / "models" / "last.pt"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if last.exists() and load_checkpoint(last)["epoch"] >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # dvc and the vistage process it started
    proc.wait()
    epoch_at_kill = load_checkpoint(last)["epoch"]
    assert 2 <= epoch_at_kill < 5, "training finished before it could be killed"

    resumed = run(["dvc", "repro"], project)
    assert f"resuming from models/last.pt at epoch {epoch_at_kill + 1}/5" in resumed.stdout + resumed.stderr
    assert _ran(resumed.stdout)[0] == "train"

    # the same training, uninterrupted, into other directories
    run(["vistage", "train", "--params", "params.yaml", "--models", "ref_models", "--live", "ref_live"], project)
    got = json.loads((project / "metrics/train/metrics.json").read_text())
    want = json.loads((project / "ref_live/metrics.json").read_text())
    got.pop("throughput"), want.pop("throughput")
    assert got == want
    for curve in ("train/loss.tsv", "val/acc.tsv"):  # no epoch logged twice or lost
        assert (project / "metrics/train/plots/metrics" / curve).read_text() == \
            (project / "ref_live/plots/metrics" / curve).read_text()
