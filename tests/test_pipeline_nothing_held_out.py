"""The real stage commands and the real dvc on a run that holds nothing out. A file of its own:
the suite runs each file on one worker (--dist loadfile), and test_pipeline_e2e.py is already
the longest."""

import json

import pandas as pd
import pytest

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
