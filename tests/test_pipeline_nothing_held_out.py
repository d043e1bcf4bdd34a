"""The real stage commands and the real dvc on a run that holds nothing out, and on one whose
head trained on val (head_refit). A file of its own:
the suite runs each file on one worker (--dist loadfile), and test_pipeline_e2e.py is already
the longest."""

import json
import shutil

import pandas as pd
import pytest

from vistage.evaluation import REFIT_NOTE

from .conftest import run
from .test_pipeline_e2e import _images, _ran

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_a_run_that_holds_nothing_out_runs_every_stage_and_says_it_scored_the_training_images(reproduced):
    """The final model on every image (data.val_fraction and data.test_fraction 0): predict,
    evaluate, report and export score the training images, named train, and say what that means."""
    project, _ = reproduced
    exp = run(["dvc", "exp", "run", "-S", "data.val_fraction=0", "-S", "data.test_fraction=0", "-S", "epochs=1"],
              project)
    assert _ran(exp.stdout) == ["split", "train", "predict", "evaluate", "report", "export"]
    images = len(pd.read_csv(project / "data/split.csv").query("split == 'train'"))
    assert images == _images(project)
    metrics = json.loads((project / "metrics/eval.json").read_text())
    assert list(metrics) == ["train"] and metrics["train"]["images"] == images
    assert exp.stdout.count("these figures measure fit, not how the model does on new data") == 2  # predict, evaluate
    said = " ".join(exp.stderr.split())
    assert "no val split: best.pt, early stopping and scheduler: plateau follow train/acc" in said
    assert "calibrate: true fits no temperature" in said  # the default params calibrate
    assert len(pd.read_csv(project / "reports/predictions.csv")) == images
    assert "Metrics on the training images" in (project / "reports/index.html").read_text()
    assert json.loads((project / "metrics/export.json").read_text())["split"] == "train"
    assert "metrics/calibration.csv" in run(["dvc", "plots", "show", "--json"], project).stdout


def test_a_head_refit_on_val_is_scored_on_the_test_split_alone_and_says_so(pristine_repro, tmp_path):
    """head_refit: true solves best.pt's head on the val images too: the run logs the val scores of
    the head before the refit, and predict, evaluate, report and export score the test split alone."""
    project = tmp_path / "project"
    shutil.copytree(pristine_repro[0], project, symlinks=True)
    exp = run(["dvc", "exp", "run", "-S", "freeze=backbone", "-S", "head=solve", "-S", "head_refit=true",
               "-S", "epochs=1", "-S", "augment=[]"], project)
    assert _ran(exp.stdout) == ["train", "predict", "evaluate", "report", "export"]
    said = " ".join((exp.stdout + exp.stderr).split())
    assert "head refit on the train and val images (head_refit)" in said
    assert "best.pt: the solved head refit on train + val (head_refit)" in said
    assert REFIT_NOTE in said
    split = pd.read_csv(project / "data/split.csv")
    metrics = json.loads((project / "metrics/eval.json").read_text())
    assert list(metrics) == ["test"] and metrics["test"]["images"] == (split["split"] == "test").sum()
    assert metrics["test"]["accuracy"] > 0.5  # the small CNN's random frozen features, solved: well above 0.1
    live = json.loads((project / "metrics/train/metrics.json").read_text())
    assert 0 < live["val"]["acc"] < 1  # the held-out val score of the head before the refit
    assert json.loads((project / "metrics/export.json").read_text())["split"] == "test"
