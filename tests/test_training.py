import json

import pytest
import torch

import vistage.training as training
from vistage.checkpoint import load_checkpoint
from vistage.training import train

from .conftest import tiny_params, train_paths


@pytest.mark.slow
def test_train_returns_metrics_and_writes_checkpoints_and_curves(digits_model):
    result, tmp_path = digits_model  # tiny_params(epochs=3), trained once per session
    assert result["val/acc"] > 0.9  # 3 epochs at 8x8 already learn digits (chance: 0.1)
    assert set(result) >= {"train/loss", "train/acc", "val/loss", "val/acc", "lr", "throughput", "best_val_acc"}
    best = load_checkpoint(tmp_path / "models" / "best.pt")
    last = load_checkpoint(tmp_path / "models" / "last.pt")
    assert last["epoch"] == 3 and best["epoch"] <= 3
    assert best["classes"] == [str(i) for i in range(10)]
    assert best["params"] == tiny_params(epochs=3).training_dict()
    logged = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert logged["step"] == 2 and logged["val"]["acc"] == pytest.approx(result["val/acc"])
    curve = (tmp_path / "live" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    assert len(curve) == 1 + 3


def test_same_seed_same_metrics(digits_store, tmp_path):
    params = tiny_params(max_steps_per_epoch=3)  # two epochs of three steps: the second continues the first
    a = train(params, train_paths(digits_store, tmp_path / "a"))
    b = train(params, train_paths(digits_store, tmp_path / "b"))
    a.pop("throughput"), b.pop("throughput")
    assert a == b


@pytest.mark.parametrize("extra", [
    {},
    {"augment": ["crop", "flip", "random_erasing", "mixup_cutmix"], "label_smoothing": 0.1, "ema_decay": 0.9},
    {"augment": ["random_resized_crop", "randaugment", "flip"], "num_workers": 2, "accumulate": 2},
], ids=["plain", "mix-ema", "workers-accumulate"])
def test_interrupted_training_resumes_to_the_same_result(digits_store, tmp_path, monkeypatch, extra):
    params = tiny_params(epochs=3, max_steps_per_epoch=4, **{"augment": ["crop", "flip"], **extra})
    full = train(params, train_paths(digits_store, tmp_path / "full"))

    real_save = training.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        if path.name == "last.pt" and state["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_checkpoint", save_then_die)
    paths = train_paths(digits_store, tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        train(params, paths)
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    resumed = train(params, paths)
    full.pop("throughput"), resumed.pop("throughput")
    assert resumed == full
    logged = (paths.live / "plots" / "metrics" / "val" / "acc.tsv").read_text().splitlines()
    assert len(logged) == 1 + 3  # the curve continues instead of restarting


def test_checkpoint_of_other_params_is_not_resumed(digits_store, tmp_path, capsys, monkeypatch):
    paths = train_paths(digits_store, tmp_path)
    real_save = training.save_checkpoint

    def save_then_die(path, state):  # a run interrupted after its first epoch, its last.pt in progress
        real_save(path, state)
        if path.name == "last.pt":
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_params(epochs=2, max_steps_per_epoch=2), paths)
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    first = load_checkpoint(paths.models / "in-progress" / "last.pt")
    assert not (paths.models / "last.pt").exists()  # nothing published by the interrupted run
    train(tiny_params(epochs=2, lr=0.01, max_steps_per_epoch=2), paths)
    out = capsys.readouterr().err
    assert "in-progress/last.pt: trained with other params; starting fresh" in out
    assert load_checkpoint(paths.models / "last.pt")["params"]["lr"] == 0.01
    assert first["params"]["lr"] != 0.01


@pytest.mark.slow
def test_timm_model_learns_digits(digits_store, tmp_path):
    paths = train_paths(digits_store, tmp_path)
    result = train(tiny_params(model="resnet18", epochs=2), paths)
    assert result["val/acc"] > 0.6  # chance: 0.1
    losses = [float(row.split("\t")[-1]) for row in
              (paths.live / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()[1:]]
    assert len(losses) == 2 and losses[1] < 0.75 * losses[0]


def test_frozen_backbone_trains_only_the_classifier(digits_store, tmp_path):
    from vistage.models import build_model
    from vistage.runtime import seed_everything

    params = tiny_params(epochs=1, freeze="backbone", max_steps_per_epoch=3)
    train(params, train_paths(digits_store, tmp_path))
    trained = load_checkpoint(tmp_path / "models" / "last.pt")["model"]
    seed_everything(params.seed, params.deterministic)  # the same initial weights as train() drew
    initial = build_model(params.model, 10)
    for name, p in initial.named_parameters():
        assert torch.equal(trained[name], p.detach()) != name.startswith("head."), name


def test_two_stage_unfreezes_after_freeze_epochs(digits_store, tmp_path):
    short = {"freeze": "backbone", "max_steps_per_epoch": 3}
    train(tiny_params(epochs=1, **short), train_paths(digits_store, tmp_path / "a"))
    frozen = load_checkpoint(tmp_path / "a" / "models" / "last.pt")["model"]
    train(tiny_params(epochs=2, freeze_epochs=1, **short), train_paths(digits_store, tmp_path / "b"))
    thawed = load_checkpoint(tmp_path / "b" / "models" / "last.pt")["model"]
    conv = "features.0.0.weight"
    assert not torch.equal(frozen[conv], thawed[conv])  # the second epoch trained the backbone too
