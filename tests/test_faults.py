"""Faults and bad input lose nothing: each case exits 2 with one line naming the key or file, or
dies and is cleaned up by the rerun. (More cases: test_params.py, test_sources.py, and the kill -9
of training in test_pipeline_e2e.py.)"""

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from .conftest import ROOT, TINY, default_params, merged, run_env
from .stage_runner import run_stage


def _train_cmd(work, **override):
    """A train run on the session's digits store (symlinked), with params `override`."""
    (work / "params.yaml").write_text(yaml.safe_dump(merged(merged(default_params(), TINY), override)))
    return [sys.executable, str(ROOT / "stages" / "train.py"), "--params", "params.yaml", "--store", "data/prepared",
            "--split", "data/split.csv", "--models", "models", "--live", "metrics/train"]


@pytest.fixture
def work(digits_store, tmp_path):
    (tmp_path / "data").mkdir()
    os.symlink(digits_store / "prepared", tmp_path / "data" / "prepared")
    os.symlink(digits_store / "split.csv", tmp_path / "data" / "split.csv")
    return tmp_path


@pytest.mark.parametrize("override, words", [
    ({"devices": 64}, ["devices: 64", "CPU cores"]),
    ({"devices": 2, "batch_size": 63}, ["batch_size: 63", "multiple of the 2"]),
    ({"devices": 2, "batch_size": 4096}, ["batch_size: 4096", "at most the 1258 training images"]),
], ids=["more-processes-than-cores", "batch-not-divisible", "batch-larger-than-data"])
def test_ddp_settings_are_checked_before_any_process_starts(work, override, words):
    if override["devices"] == 2 and (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 cores")
    proc = run_stage(_train_cmd(work, **override), work, run_env())
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert all(w in proc.stderr for w in words), proc.stderr
    assert "torch.distributed.run" not in proc.stderr and not (work / "models").exists()


def test_a_single_class_stops_the_split(tmp_path):
    from vistage.data.split import split_table
    from vistage.errors import VistageError

    import pandas as pd

    samples = pd.DataFrame({"index": range(20), "label": [0] * 20, "split": [""] * 20, "group": [""] * 20})
    with pytest.raises(VistageError, match=r"1 labeled class\(es\) \['cat'\]: a classifier needs at least 2"):
        split_table(samples, ["cat"], 0.15, 0.15, 0)


def _jpeg_folder(root, n_per_class=200, size=512):  # a few seconds of decoding: time to kill it
    """Two classes of noise JPEGs, slow to decode. Each class repeats the bytes of a few encoded
    images (decoding costs the same; encoding 400 of them took longer than the test's point)."""
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        encoded = []
        for _ in range(4):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "JPEG")
            encoded.append(buffer.getvalue())
        for i in range(n_per_class):
            (root / cls / f"{i}.jpg").write_bytes(encoded[i % len(encoded)])


@pytest.mark.slow
def test_kill_9_of_prepare_leaves_no_decoder_running_and_the_rerun_cleans_up(tmp_path):
    """kill -9 of prepare mid-decode: its worker processes die with it, the rerun removes the
    half-written store and writes the same store as an uninterrupted run."""
    import psutil

    _jpeg_folder(tmp_path / "photos")
    params = merged(default_params(), {"data": {"source": "folder", "path": str(tmp_path / "photos"),
                                                "root": str(tmp_path), "workers": 2}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "stages.prepare", "--params", "params.yaml", "--out", "data/prepared",
           "--metrics", "metrics/data.json"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=run_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, workers = time.monotonic() + 60, []
    while proc.poll() is None and time.monotonic() < deadline:
        workers = psutil.Process(proc.pid).children(recursive=True)
        if len(workers) >= 2 and list((tmp_path / "data").glob(".prepared.*.tmp")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "prepare finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"decoder processes left running: {[p.pid for p in alive]}"
    assert list((tmp_path / "data").glob(".prepared.*.tmp")), "the kill left no temporary store to clean"

    rerun = run_stage(cmd, tmp_path, run_env())
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert not list((tmp_path / "data").glob(".prepared.*")), "the rerun left the interrupted store behind"
    fresh = tmp_path / "fresh"
    uninterrupted = run_stage([*cmd[:-4], "--out", str(fresh), "--metrics", str(tmp_path / "fresh.json")], tmp_path,
                              run_env())
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
    for name in ("images.npy", "samples.csv", "classes.json"):
        digest = [hashlib.sha256((d / name).read_bytes()).hexdigest() for d in (tmp_path / "data/prepared", fresh)]
        assert digest[0] == digest[1], name


def test_a_stale_temporary_file_of_a_dead_writer_is_removed(tmp_path):
    from vistage.io import write_text

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.txt.{dead.pid}.abc.tmp"
    stale.write_text("half")
    live = tmp_path / f".out.txt.{os.getpid()}.xyz.tmp"  # a writer still running: left alone
    live.write_text("busy")
    write_text(tmp_path / "out.txt", "done")
    assert (tmp_path / "out.txt").read_text() == "done" and not stale.exists() and live.exists()


@pytest.mark.parametrize("content", ["evil", "text", "truncated"])
def test_a_bad_checkpoint_is_one_line_and_runs_nothing(tmp_path, content):
    import pickle

    from vistage.checkpoint import load_checkpoint
    from vistage.errors import VistageError

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "best.pt"
    if content == "evil":
        path.write_bytes(pickle.dumps({"model": Payload()}))
    elif content == "text":
        path.write_text("not a checkpoint")
    else:
        import torch

        torch.save({"model": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(VistageError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    assert "weights_only" not in str(err.value) and not marker.exists()


@pytest.mark.parametrize("override, words", [
    ({"lr": 1e10}, ["training diverged at epoch 1", "lower lr"]),
    ({"model": "resnet18", "lr": 1e10, "optimizer": "sgd"}, ["training diverged"]),
], ids=["simple_cnn", "resnet18"])
@pytest.mark.slow  # trains a whole epoch first (make test-fast trains only a few steps)
def test_a_failed_train_leaves_the_committed_metrics_and_checkpoints_byte_identical(work, override, words):
    cmd = _train_cmd(work, epochs=1)
    assert run_stage(cmd, work, run_env()).returncode == 0
    kept = [p for p in [*(work / "metrics").rglob("*"), *(work / "models").rglob("*")] if p.is_file()]
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in kept}
    proc = run_stage(_train_cmd(work, epochs=1, **override), work, run_env())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert all(w in proc.stderr for w in words), proc.stderr
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in kept if p.exists()} == before


def test_a_publication_that_cannot_move_one_output_puts_back_the_others(tmp_path, monkeypatch):
    """All or nothing at the last step too: the second of two outputs cannot move into place (an
    I/O error on the rename), so the first is put back as it was and no temporary file is left."""
    import errno

    import vistage.io as io
    from vistage.errors import VistageError

    real_replace = io.os.replace

    def replace(src, dst):
        if str(dst) == str(tmp_path / "b.txt") and ".b.txt." in str(src) and ".old." not in str(src):
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(src, dst)

    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "b.txt").write_text("old b")
    monkeypatch.setattr(io.os, "replace", replace)
    with pytest.raises(VistageError, match=r"cannot write .*b\.txt: Input/output error; the outputs of the last"):
        with io.publishing():
            io.write_text(tmp_path / "a.txt", "new a")
            io.write_text(tmp_path / "b.txt", "new b")
    assert [(tmp_path / n).read_text() for n in ("a.txt", "b.txt")] == ["old a", "old b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_infinite_or_nan_params_are_refused(write_params, value):
    from vistage.errors import VistageError
    from vistage.params import load_params

    path = write_params()
    path.write_text(path.read_text().replace("lr: 0.003", f"lr: {value}"))
    with pytest.raises(VistageError, match="lr: .* is not valid"):
        load_params(path, keywords=())


def test_onecycle_runs_however_few_steps_there_are():
    """No run length divides by zero in the default schedule (1-12 epochs of 1-4 steps, and the
    step counts around 100 where a 1% warm-up is one step), and the lr peaks at `lr`."""
    import torch

    from vistage.optim import SCHEDULERS
    from vistage.params import Params

    cases = [(e, s, w) for e in range(1, 13) for s in range(1, 5) for w in (0.0, 1.0)]
    cases += [(1, s, 0.0) for s in (99, 100, 101)]
    for epochs, steps, warmup in cases:
        model = torch.nn.Linear(2, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        schedule = SCHEDULERS.get("onecycle")(optimizer, Params(epochs=epochs, warmup_epochs=warmup), steps)
        lrs = []
        for _ in range(epochs * steps):
            optimizer.step()
            lrs.append(schedule.lr)
            schedule.step_batch()
        assert max(lrs) <= 0.1 + 1e-9 and lrs[-1] < 0.1, (epochs, steps, warmup, lrs)


@pytest.mark.parametrize("override", [
    {"epochs": 2, "max_steps_per_epoch": 1},
    {"epochs": 2, "batch_size": 512, "accumulate": 8},
    {"epochs": 2, "batch_size": 2048},
], ids=["one-step-epochs", "accumulate-beyond-the-epoch", "one-batch-data-set"])
def test_training_with_very_few_steps_completes(digits_store, tmp_path, override):
    from vistage.training import train

    from .conftest import tiny_params, train_paths

    result = train(tiny_params(**override), train_paths(digits_store, tmp_path))
    assert result["epochs_trained"] == 2 and np.isfinite(result["train/loss"])


def test_a_predefined_test_class_missing_from_train_stops_the_split():
    import pandas as pd

    from vistage.data.split import split_table
    from vistage.errors import VistageError

    labels = [0] * 10 + [1] * 10 + [2] * 3
    predefined = ["train"] * 20 + ["test"] * 3  # 'bird' only in the source's test/ folder
    samples = pd.DataFrame({"index": range(23), "label": labels, "split": predefined, "group": [""] * 23})
    with pytest.raises(VistageError, match="class 'bird' has test images but no train images"):
        split_table(samples, ["cat", "dog", "bird"], 0.2, 0.0, 0)


def test_duplicate_keys_are_refused_as_dvc_refuses_them(tmp_path):
    from vistage.errors import VistageError
    from vistage.params import load_params

    path = tmp_path / "params.yaml"
    path.write_text("lr: 0.1\nepochs: 2\nlr: 0.2\n")
    with pytest.raises(VistageError, match=r"params.yaml: not valid YAML \(line 3\): duplicate key 'lr'"):
        load_params(path, keywords=())


@pytest.mark.parametrize("override, message", [
    ({"freeze": "none", "freeze_epochs": 2}, "freeze_epochs: 2 does nothing with freeze: none"),
    ({"freeze": "backbone", "freeze_epochs": 2, "epochs": 2}, "freeze_epochs: 2 is not below epochs: 2"),
    ({"drop_path_rate": 0.1}, "drop_path_rate: simple_cnn has no stochastic depth"),
], ids=["freeze-epochs-without-freeze", "never-unfreezes", "drop-path-on-simple-cnn"])
def test_contradicting_settings_are_one_line_errors(write_params, override, message):
    from vistage.errors import VistageError
    from vistage.params import load_params

    with pytest.raises(VistageError, match=message):
        load_params(write_params(override))


@pytest.mark.parametrize("override, message", [
    ({"epochs": 1, "warmup_epochs": 1.0}, "onecycle warms up over half the run instead"),
    ({"scheduler": "step", "lr_step_epochs": 10, "epochs": 5}, "never decays the learning rate"),
    ({"early_stopping_patience": 3, "epochs": 3}, "training can never stop early"),
    ({"freeze": "backbone", "backbone_lr_scale": 0.1}, "does nothing in a linear probe"),
], ids=["warmup-as-long-as-the-run", "step-beyond-the-run", "patience-beyond-the-run", "scale-in-linear-probe"])
def test_settings_that_do_nothing_warn_in_one_line(write_params, capsys, override, message):
    from vistage.params import load_params

    load_params(write_params(override))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: ") and message in err


def test_a_solve_only_run_does_not_warn_of_a_schedule_it_never_steps(write_params, capsys):
    """head: solve with freeze_epochs: 0 is one solve and no optimizer step: epochs: 1 with the
    default warm-up of 1 epoch is not a mistake there (pets-transfer warned of it)."""
    from vistage.params import load_params

    load_params(write_params({"epochs": 1, "warmup_epochs": 1.0, "head": "solve", "freeze": "backbone",
                              "augment": []}))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("override, words", [
    ({"model": "vit_tiny_patch16_224"}, ["model 'vit_tiny_patch16_224' does not take 8x8 images", "input_size: 224"]),
    ({"model": "inception_v3"}, ["model 'inception_v3' does not take 8x8 images", "input_size: 299"]),
], ids=["fixed-size-vit", "too-much-downsampling"])
def test_a_model_that_does_not_fit_the_images_says_what_to_set(digits_store, tmp_path, override, words):
    from vistage.errors import VistageError
    from vistage.training import train

    from .conftest import tiny_params, train_paths

    with pytest.raises(VistageError) as err:
        train(tiny_params(epochs=1, **override), train_paths(digits_store, tmp_path))
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value)
    assert not (tmp_path / "models").exists()  # stopped before anything was written
