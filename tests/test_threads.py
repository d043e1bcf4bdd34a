"""`threads` in params.yaml: torch's CPU threads in the stages that run a model (train, predict,
export), so that N experiments at once on one CPU (dvc queue start -j N) can split its cores."""

import json
import subprocess
import sys

import pytest
import yaml

from .conftest import BIN, ROOT, run, run_env


def test_use_threads_sets_torchs_threads_and_0_keeps_its_default():
    code = ("import torch; from vistage.runtime import use_threads; before = torch.get_num_threads(); "
            "use_threads(0); kept = torch.get_num_threads(); use_threads(1); print(before, kept, torch.get_num_threads())")
    env = {**run_env(), "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["2", "2", "1"]


def test_the_predict_stage_runs_on_the_threads_params_yaml_names(reproduced, tmp_path):
    """The stage's own cost file names the threads it ran on: 2 from params.yaml, where the
    environment (the test worker's) says 1."""
    project, _ = reproduced
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["threads"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run([str(BIN / "python"), "stages/predict.py", "--params", str(tmp_path / "params.yaml"),
         "--checkpoint", "models/best.pt", "--store", "data/prepared", "--split", "data/split.csv",
         "--out", str(tmp_path / "predictions.csv"), "--logits", str(tmp_path / "logits.npz"),
         "--cost", str(tmp_path / "cost.json")], project)
    assert json.loads((tmp_path / "cost.json").read_text())["device"].endswith("(2 threads)")


def test_threads_must_not_be_negative(tmp_path):
    from vistage.errors import VistageError
    from vistage.params import load_params

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["threads"] = -1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(VistageError, match="threads"):
        load_params(tmp_path / "params.yaml")
