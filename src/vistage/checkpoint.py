"""Checkpoints: what they hold, written atomically, read with `weights_only=True` (no arbitrary
code on load).

This module alone knows a checkpoint's fields:

    model, optimizer, schedule, scaler   state dicts of the training components
    ema                                  the EMA model's state dict (None without ema_decay)
    rng, shuffle_rng                     RNG states: a resumed run draws what an uninterrupted one did
    epoch, best_metric, monitor,         where training stands (`Standing`)
      stale_epochs, stopped_early
    params, data                         the training params and the data fingerprint it ran with
    classes, image_size, normalize       what the trained model needs around it (`ModelInfo`)
    task                                 the task keyword it was trained for (classify, vqa)
    (and what the task adds: vqa        VQA's answer vocabulary and question encoding)

`training_state` writes them; `resumable` and `restore_training` read them back to resume;
`load_trained` gives inference its part.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from .errors import VistageError, require_task
from .io import atomic_path
from .runtime import rng_state, set_rng_state
from .safe_load import load_tensors


def save_checkpoint(path: str | Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise VistageError(f"{path}: checkpoint missing; run `vistage train` first")
    return load_tensors(path, "vistage checkpoint", map_location)


@dataclass
class Standing:
    """Where training stands after `epoch` epochs: what a resumed run continues from."""

    monitor: str  # the metric that picks the best epoch: val/acc, or train/acc without a val split
    epoch: int = 0
    best_metric: float = -1.0
    stale_epochs: int = 0  # epochs since the monitored metric last improved
    stopped_early: bool = False
    head: dict = field(default_factory=dict)  # head: solve's record (C, val acc, times, the epoch best.pt holds)


@dataclass
class ModelInfo:
    """What a trained model needs around it: the params that build it, its classes, the image size
    it was trained at and the normalisation of its inputs."""

    params: dict  # Params.training_dict()
    classes: list[str]
    image_size: int
    mean: list[float]
    std: list[float]
    task: str = "classify"


class Trainable(Protocol):
    """The components a checkpoint saves and a resume restores (training.Components is one)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any  # optim.Schedule
    scaler: torch.amp.GradScaler
    ema: Any  # timm's ModelEmaV3 (its .module holds the averaged weights), or None
    shuffle_gen: torch.Generator


def training_state(parts: Trainable, standing: Standing, info: ModelInfo, data: str) -> dict:
    """A checkpoint after an epoch: the components, the RNGs (as they are now), where training
    stands, and what the model is; `data` is the fingerprint of the data it trained on."""
    return {
        "model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
        "schedule": parts.schedule.state_dict(), "scaler": parts.scaler.state_dict(),
        "ema": parts.ema.module.state_dict() if parts.ema is not None else None,
        "epoch": standing.epoch, "best_metric": standing.best_metric, "monitor": standing.monitor,
        "stale_epochs": standing.stale_epochs, "stopped_early": standing.stopped_early, "head": standing.head,
        "params": info.params, "data": data, "classes": info.classes,
        "image_size": info.image_size, "normalize": {"mean": info.mean, "std": info.std}, "task": info.task,
        "rng": rng_state(), "shuffle_rng": parts.shuffle_gen.get_state(),
    }


def resumable(path: Path, params: dict, data: str, epochs: int) -> tuple[dict | None, str]:
    """The checkpoint at `path` when a run of `epochs` epochs with these training params on this
    data can continue from it; else None and why not ("" when there is nothing to tell)."""
    if not path.is_file():
        return None, ""
    state = load_checkpoint(path)
    if state.get("params") != params:
        return None, "trained with other params"
    if state.get("data") != data:
        return None, "trained on other data"
    if state["epoch"] >= epochs or state.get("stopped_early"):
        return None, ""  # finished run: retrain from scratch (reproducible) rather than do nothing
    return state, ""


def restore_training(state: dict, parts: Trainable, monitor: str) -> Standing:
    """Load every component and the RNGs from `state`; where training stood."""
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.schedule.load_state_dict(state["schedule"])
    parts.scaler.load_state_dict(state["scaler"])
    if parts.ema is not None:
        parts.ema.module.load_state_dict(state["ema"])
    parts.shuffle_gen.set_state(state["shuffle_rng"])
    set_rng_state(state["rng"])
    return Standing(monitor, int(state["epoch"]), float(state["best_metric"]), int(state.get("stale_epochs", 0)),
                    head=dict(state.get("head") or {}))


def checkpoint_task(state: dict) -> str:
    """The task a checkpoint was trained for (those written before the field: the task of the
    training params stored in it)."""
    return str(state.get("task") or state.get("params", {}).get("task", "classify"))


@dataclass
class Trained:
    """A checkpoint as inference reads it."""

    info: ModelInfo
    weights: dict  # the model's state dict: the EMA's when the run kept one (those were validated and kept)
    epoch: int  # epochs trained
    temperature: float = 1.0  # calibrate: probabilities are softmax(logits / temperature)


_TRAINED_FIELDS = ("model", "classes", "image_size", "normalize", "params", "epoch")


def load_trained(path: str | Path, task: str = "classify") -> Trained:
    """A checkpoint of `task` as inference reads it; another task's is one line naming both."""
    state = load_checkpoint(path)
    missing = [k for k in _TRAINED_FIELDS if not isinstance(state, dict) or k not in state]
    if missing:  # a bare state dict, or another program's checkpoint
        raise VistageError(f"{path}: not a vistage checkpoint (no {', '.join(missing)} in it); "
                           "predict needs the models/best.pt that train writes")
    require_task(checkpoint_task(state), task, path, "checkpoint")
    norm = state["normalize"]
    info = ModelInfo(state["params"], list(state["classes"]), int(state["image_size"]), norm["mean"], norm["std"],
                     checkpoint_task(state))
    return Trained(info, state.get("ema") or state["model"], int(state["epoch"]), float(state.get("temperature", 1.0)))
