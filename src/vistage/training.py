"""The training loop: `train(params, paths) -> metrics`, pure apart from reading the store and
writing checkpoints and DVCLive logs.

Resume: `last.pt` holds everything needed to continue (model, optimizer, schedule, RNG states,
epoch, best metric). It is resumed only when the params and data it was trained with equal the
current ones; otherwise training starts fresh, so a checkpoint from another experiment is never
continued by accident.
"""

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .augment import build_augment
from .batches import Normalizer, channel_stats, iterate_batches
from .checkpoint import load_checkpoint, save_checkpoint
from .data.split import load_split
from .data.store import load_store
from .errors import VistageError
from .inference import predict_logits
from .losses import LOSSES
from .models import build_model
from .optim import OPTIMIZERS, SCHEDULERS
from .params import Params
from .runtime import resolve_device, rng_state, seed_everything, set_rng_state

console = Console(stderr=True)


@dataclass
class TrainPaths:
    store: Path = Path("data/prepared")
    split: Path = Path("data/split.csv")
    models: Path = Path("models")
    live: Path = Path("metrics/train")


def data_fingerprint(store_dir: Path, split_path: Path) -> str:
    h = hashlib.sha256()
    for path in (store_dir / "samples.csv", store_dir / "classes.json", split_path):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _normalization(params: Params, model, images, train_idx) -> tuple[list[float], list[float]]:
    if params.pretrained:
        # pretrained weights expect the statistics they were trained with
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        if "mean" in cfg and "std" in cfg:
            return list(cfg["mean"]), list(cfg["std"])
    return channel_stats(images, train_idx)


def _try_resume(path: Path, params: Params, fingerprint: str):
    if not path.is_file():
        return None
    ckpt = load_checkpoint(path)
    if ckpt.get("params") != params.training_dict():
        console.print(f"[yellow]{path}: trained with other params; starting fresh[/]")
        return None
    if ckpt.get("data") != fingerprint:
        console.print(f"[yellow]{path}: trained on other data; starting fresh[/]")
        return None
    if ckpt["epoch"] >= params.epochs:
        return None  # finished run: retrain from scratch (reproducible) rather than do nothing
    return ckpt


def train(params: Params, paths: TrainPaths = TrainPaths()) -> dict:
    from dvclive import Live

    seed_everything(params.seed, params.deterministic)
    device = resolve_device(params.device)
    store = load_store(paths.store)
    split = load_split(paths.split)
    if len(split) != len(store.samples):
        raise VistageError(f"{paths.split}: {len(split)} rows but the store has {len(store.samples)}; rerun split")
    labels = store.samples["label"].to_numpy(dtype=np.int64)
    train_idx = split.loc[split["split"] == "train", "index"].to_numpy()
    val_idx = split.loc[split["split"] == "val", "index"].to_numpy()
    if len(train_idx) == 0:
        raise VistageError(f"{paths.split}: no training images")
    if (labels[train_idx] < 0).any():
        raise VistageError(f"{paths.split}: unlabeled images in the train split")

    model = build_model(params.model, len(store.classes), params.pretrained, params.drop_rate)
    mean, std = _normalization(params, model, store.images, train_idx)
    model.to(device)
    normalize = Normalizer(mean, std, device)
    optimizer = OPTIMIZERS.get(params.optimizer, "optimizer")(model, params.lr, params.weight_decay, params.momentum)
    drop_last = len(train_idx) > params.batch_size  # avoid a 1-image batch upsetting BatchNorm
    steps_per_epoch = len(train_idx) // params.batch_size if drop_last else 1
    schedule = SCHEDULERS.get(params.scheduler, "scheduler")(optimizer, params, steps_per_epoch)
    loss_fn = LOSSES.get(params.loss, "loss")(params)
    augment = build_augment(params.augment, store.image_size)
    shuffle_gen = torch.Generator().manual_seed(params.seed)

    fingerprint = data_fingerprint(paths.store, paths.split)
    last_path, best_path = paths.models / "last.pt", paths.models / "best.pt"
    start_epoch, best_metric = 0, -1.0
    resumed = _try_resume(last_path, params, fingerprint)
    if resumed:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        schedule.load_state_dict(resumed["schedule"])
        shuffle_gen.set_state(resumed["shuffle_rng"])
        set_rng_state(resumed["rng"])
        start_epoch, best_metric = int(resumed["epoch"]), float(resumed["best_metric"])
        console.print(f"resuming from {last_path} at epoch {start_epoch + 1}/{params.epochs}")

    live = Live(str(paths.live), resume=bool(resumed), dvcyaml=False, save_dvc_exp=False, report=None)
    monitor = "val/acc" if len(val_idx) else "train/acc"
    summary: dict = {}
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=console, transient=True) as progress:
        epochs_task = progress.add_task("epochs", total=params.epochs, completed=start_epoch, info="")
        for epoch in range(start_epoch, params.epochs):
            model.train()
            batch_task = progress.add_task(f"epoch {epoch + 1}", total=steps_per_epoch, info="")
            seen, loss_sum, correct = 0, 0.0, 0
            started = time.perf_counter()
            for x, y, _ in iterate_batches(store.images, labels, train_idx, params.batch_size, True,
                                           shuffle_gen, drop_last):
                x = augment(normalize(x.to(device, non_blocking=True)))
                y = y.to(device, non_blocking=True)
                logits = model(x)
                loss = loss_fn(logits, y)
                if not torch.isfinite(loss):
                    raise VistageError(f"training diverged at epoch {epoch + 1} (loss {loss.item()}); "
                                       f"lower lr (now {params.lr})")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step_batch()
                seen += len(y)
                loss_sum += loss.item() * len(y)
                correct += (logits.argmax(1) == y).sum().item()
                progress.update(batch_task, advance=1, info=f"loss {loss_sum / seen:.4f}")
            elapsed = time.perf_counter() - started
            progress.remove_task(batch_task)

            metrics = {"train/loss": loss_sum / seen, "train/acc": correct / seen}
            if len(val_idx):
                logits, rows = predict_logits(model, store.images, val_idx, normalize, params.batch_size * 2, device)
                y_val = torch.from_numpy(labels[rows])
                metrics["val/loss"] = torch.nn.functional.cross_entropy(logits, y_val).item()
                metrics["val/acc"] = (logits.argmax(1) == y_val).float().mean().item()
            metrics["lr"] = schedule.lr
            metrics["throughput"] = seen / elapsed
            schedule.step_epoch(metrics[monitor])
            for name, value in metrics.items():
                live.log_metric(name, float(value))
            live.next_step()

            improved = metrics[monitor] > best_metric
            best_metric = max(best_metric, metrics[monitor])
            state = {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "epoch": epoch + 1, "best_metric": best_metric, "monitor": monitor, "params": params.training_dict(),
                "data": fingerprint, "classes": store.classes, "image_size": store.image_size,
                "normalize": {"mean": mean, "std": std}, "rng": rng_state(), "shuffle_rng": shuffle_gen.get_state(),
            }
            if improved:
                save_checkpoint(best_path, state)
            save_checkpoint(last_path, state)
            line = "  ".join(f"{k} {v:.3g}" if k == "lr" else f"{k} {v:.4f}" if abs(v) < 10 else f"{k} {v:.0f}" for k, v in metrics.items())
            console.print(f"epoch {epoch + 1}/{params.epochs}  {line}{'  *best' if improved else ''}", soft_wrap=True)
            progress.update(epochs_task, advance=1, info=f"best {monitor} {best_metric:.4f}")
            summary = metrics
    live.end()
    if not best_path.exists():  # resumed run whose best came before the interruption and was lost
        save_checkpoint(best_path, load_checkpoint(last_path))
    return {**summary, f"best_{monitor.replace('/', '_')}": best_metric}
