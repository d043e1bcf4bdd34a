"""The training loop: `train(params, paths) -> metrics`, pure apart from reading the store and
writing checkpoints and DVCLive logs.

Resume: `last.pt` holds everything needed to continue (model, optimizer, schedule, RNG states,
epoch, best metric). It is resumed only when the params and data it was trained with equal the
current ones; otherwise training starts fresh, so a checkpoint from another experiment is never
continued by accident.
"""

import hashlib
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from . import distributed
from .augment import build_augment
from .batches import Normalizer, SampleTransformed, channel_stats, epoch_batches, store_batches, transformed_batches
from .checkpoint import load_checkpoint, save_checkpoint
from .data.split import load_split
from .data.store import load_store
from .errors import VistageError
from .inference import predict_logits
from .losses import LOSSES
from .models import build_from_params, set_backbone_frozen, train_mode
from .optim import OPTIMIZERS, SCHEDULERS
from .params import Params
from .precision import cpu_bf16_hint, resolve_precision
from .runtime import resolve_device, rng_state, seed_everything, set_rng_state

console = Console(stderr=True)


@dataclass
class TrainPaths:
    """Where training reads (the prepared store and its split) and writes (checkpoints, DVCLive
    logs): the train stage passes the paths of dvc.yaml, tests their own."""

    store: Path
    split: Path
    models: Path
    live: Path


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
    if ckpt["epoch"] >= params.epochs or ckpt.get("stopped_early"):
        return None  # finished run: retrain from scratch (reproducible) rather than do nothing
    return ckpt



def _open_live(live_dir: Path, start_epoch: int):
    """DVCLive logger continuing at `start_epoch`: curve rows of epochs after the checkpoint (logged
    before a kill, then lost with it) are dropped, so a resumed run's curves equal an
    uninterrupted run's. (DVCLive's own resume counts from the last row and misses step 0.)"""
    from dvclive import Live

    if start_epoch:
        for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
            rows = tsv.read_text().splitlines()
            kept = rows[:1] + [r for r in rows[1:] if int(r.split("\t")[0]) < start_epoch]
            tsv.write_text("\n".join(kept) + "\n")
    live = Live(str(live_dir), resume=bool(start_epoch), dvcyaml=False, save_dvc_exp=False, report=None)
    live.step = start_epoch
    return live


def _backbone_frozen(params: Params, epoch: int) -> bool:
    """Linear probe (freeze_epochs 0: frozen throughout) or the first stage of a two-stage run."""
    return params.freeze == "backbone" and (params.freeze_epochs == 0 or epoch < params.freeze_epochs)


def _wrap(model: torch.nn.Module, params: Params, dist: distributed.Dist, device: torch.device):
    """The module the training step calls: DDP around the model (when distributed), compiled if
    asked. DDP registers only the parameters that require grad when it is built, so it is built
    again when a two-stage run thaws the backbone."""
    wrapped = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if params.compile:
        wrapped = torch.compile(wrapped)
    return wrapped


def _check_distributed(params: Params, dist: distributed.Dist, n_train: int) -> None:
    if not dist.enabled:
        return
    if params.batch_size % dist.world or n_train < params.batch_size:
        raise VistageError(f"params.yaml: batch_size: {params.batch_size} must be a multiple of the {dist.world} "
                           f"processes and at most the {n_train} training images (it is the batch over all devices)")


def train(params: Params, paths: TrainPaths) -> dict:
    """Train as params.yaml says; return the last epoch's metrics and the best monitored value.

    Run alone, or as one of the processes torchrun started (see distributed.py): then rank 0
    alone writes checkpoints and logs, and every rank returns the same metrics."""
    device = resolve_device(params.device)
    dist = distributed.init(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    try:
        return _train(params, paths, device, dist)
    finally:
        distributed.shutdown(dist)


def _train(params: Params, paths: TrainPaths, device: torch.device, dist: distributed.Dist) -> dict:
    # rank 0 seeds as a single process does; DDP copies rank 0's initial weights to the others
    seed_everything(params.seed + dist.rank, params.deterministic)
    say = console.print if dist.is_main else (lambda *a, **k: None)
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
    _check_distributed(params, dist, len(train_idx))
    num_classes = len(store.classes)

    precision = resolve_precision(params.precision, device)
    if precision.note:
        say(f"[yellow]{precision.note}[/]")
    elif hint := cpu_bf16_hint(params.precision, device):
        say(f"[dim]{hint}[/]")
    model = build_from_params(params, num_classes)
    mean, std = _normalization(params, model, store.images, train_idx)
    memory_format = torch.channels_last if params.channels_last else torch.preserve_format
    model.to(device, memory_format=memory_format)
    normalize = Normalizer(mean, std, device, size=params.input_size)
    optimizer = OPTIMIZERS.get(params.optimizer, "optimizer")(model, params.lr, params.weight_decay,
                                                              params.momentum, params.backbone_lr_scale)
    drop_last = len(train_idx) > params.batch_size  # avoid a 1-image batch upsetting BatchNorm
    batches_per_epoch = len(train_idx) // params.batch_size if drop_last else 1
    if params.max_steps_per_epoch:
        batches_per_epoch = min(batches_per_epoch, params.max_steps_per_epoch)
    steps_per_epoch = math.ceil(batches_per_epoch / params.accumulate)
    schedule = SCHEDULERS.get(params.scheduler, "scheduler")(optimizer, params, steps_per_epoch)
    scaler = precision.scaler()
    loss_fn = LOSSES.get(params.loss, "loss")(params)
    plan = build_augment(params.augment, store.image_size, num_classes, params)
    per_sample = SampleTransformed(store.images, labels, plan.sample) if plan.sample else None
    ema = None
    if params.ema_decay:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=params.ema_decay)
    shuffle_gen = torch.Generator().manual_seed(params.seed)

    fingerprint = data_fingerprint(paths.store, paths.split)
    last_path, best_path = paths.models / "last.pt", paths.models / "best.pt"
    start_epoch, best_metric, stale_epochs = 0, -1.0, 0
    resumed = _try_resume(last_path, params, fingerprint)
    if resumed:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        schedule.load_state_dict(resumed["schedule"])
        scaler.load_state_dict(resumed["scaler"])
        if ema is not None:
            ema.module.load_state_dict(resumed["ema"])
        shuffle_gen.set_state(resumed["shuffle_rng"])
        set_rng_state(resumed["rng"])
        start_epoch, best_metric = int(resumed["epoch"]), float(resumed["best_metric"])
        stale_epochs = int(resumed.get("stale_epochs", 0))
        say(f"resuming from {last_path} at epoch {start_epoch + 1}/{params.epochs}")

    live = _open_live(paths.live, start_epoch) if dist.is_main else None
    monitor = "val/acc" if len(val_idx) else "train/acc"
    summary: dict = {}
    wrapped, wrapped_frozen = None, None
    stopped_early, epochs_done = False, start_epoch
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=console, transient=True, disable=not dist.is_main) as progress:
        epochs_task = progress.add_task("epochs", total=params.epochs, completed=start_epoch, info="")
        for epoch in range(start_epoch, params.epochs):
            frozen = _backbone_frozen(params, epoch)
            if wrapped is None or frozen != wrapped_frozen:
                if params.freeze == "backbone":
                    set_backbone_frozen(model, frozen)
                    if epoch and not frozen:
                        say(f"epoch {epoch + 1}: backbone unfrozen")
                wrapped, wrapped_frozen = _wrap(model, params, dist, device), frozen
                trainable = [p for p in model.parameters() if p.requires_grad]  # what grad_clip clips
            train_mode(model, frozen)
            batches = epoch_batches(train_idx, params.batch_size, shuffle_gen, drop_last, dist.rank, dist.world,
                                    params.max_steps_per_epoch)
            if per_sample is None:
                loader = store_batches(store.images, labels, batches)
            else:  # worker RNGs from (seed, epoch, rank): a resumed epoch draws what it drew before
                loader = transformed_batches(per_sample, batches, params.num_workers,
                                             params.seed * 100_003 + epoch * 1_009 + dist.rank)
            batch_task = progress.add_task(f"epoch {epoch + 1}", total=len(batches), info="")
            seen, loss_sum, correct = 0, 0.0, 0
            started = time.perf_counter()
            for i, (x, y, _) in enumerate(loader):
                x = plan.apply_batch(normalize(x.to(device, non_blocking=True)))
                y = y.to(device, non_blocking=True)
                # soft targets from MixUp/CutMix feed the loss; accuracy counts the original labels
                x, target = plan.mix(x, y) if plan.mix else (x, y)
                if params.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                step_now = (i + 1) % params.accumulate == 0 or i + 1 == len(batches)
                # DDP: all-reduce gradients only on the micro-batch that completes a step
                sync = nullcontext() if step_now or not dist.enabled else wrapped.no_sync()
                with sync:
                    with precision.autocast():
                        logits = wrapped(x)
                    loss = loss_fn(logits.float(), target)
                    if not torch.isfinite(loss):
                        raise VistageError(f"training diverged at epoch {epoch + 1} (loss {loss.item()}); "
                                           f"lower lr (now {params.lr})")
                    scaler.scale(loss / params.accumulate).backward()
                if step_now:
                    if params.grad_clip:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(trainable, params.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    if ema is not None:
                        ema.update(model)
                    schedule.step_batch()
                seen += len(y)
                loss_sum += loss.item() * len(y)
                correct += (logits.argmax(1) == y).sum().item()
                progress.update(batch_task, advance=1, info=f"loss {loss_sum / seen:.4f}")
            elapsed = time.perf_counter() - started
            progress.remove_task(batch_task)
            loss_sum, correct, seen = dist.sum(loss_sum, correct, seen)

            metrics = {"train/loss": loss_sum / seen, "train/acc": correct / seen}
            if len(val_idx) and dist.is_main:
                evaluated = ema.module if ema is not None else model
                logits, rows = predict_logits(evaluated, store.images, val_idx, normalize, params.batch_size * 2,
                                              device)
                y_val = torch.from_numpy(labels[rows])
                metrics["val/loss"] = torch.nn.functional.cross_entropy(logits, y_val).item()
                metrics["val/acc"] = (logits.argmax(1) == y_val).float().mean().item()
            if len(val_idx) and dist.enabled:  # every rank needs it for plateau and early stopping
                for key in ("val/loss", "val/acc"):
                    metrics[key] = dist.broadcast(metrics.get(key, 0.0))
            metrics["lr"] = schedule.lr
            metrics["throughput"] = seen / elapsed
            schedule.step_epoch(metrics[monitor])

            improved = metrics[monitor] > best_metric
            best_metric = max(best_metric, metrics[monitor])
            stale_epochs = 0 if improved else stale_epochs + 1
            stopped_early = bool(params.early_stopping_patience) and stale_epochs >= params.early_stopping_patience
            if dist.is_main:
                for name, value in metrics.items():
                    live.log_metric(name, float(value))
                live.next_step()
                state = {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "scaler": scaler.state_dict(),
                    "ema": ema.module.state_dict() if ema is not None else None,
                    "epoch": epoch + 1, "best_metric": best_metric, "monitor": monitor,
                    "stale_epochs": stale_epochs, "stopped_early": stopped_early,
                    "params": params.training_dict(), "data": fingerprint, "classes": store.classes,
                    "image_size": store.image_size, "normalize": {"mean": mean, "std": std},
                    "rng": rng_state(), "shuffle_rng": shuffle_gen.get_state(),
                }
                if improved:
                    save_checkpoint(best_path, state)
                save_checkpoint(last_path, state)
            dist.barrier()  # no rank runs ahead of a checkpoint a resume would need
            line = "  ".join(f"{k} {v:.3g}" if k == "lr" else f"{k} {v:.4f}" if abs(v) < 10 else f"{k} {v:.0f}"
                             for k, v in metrics.items())
            say(f"epoch {epoch + 1}/{params.epochs}  {line}{'  *best' if improved else ''}", soft_wrap=True)
            progress.update(epochs_task, advance=1, info=f"best {monitor} {best_metric:.4f}")
            summary, epochs_done = metrics, epoch + 1
            if stopped_early:
                say(f"early stop: {monitor} did not improve for {stale_epochs} epochs")
                break
    if dist.is_main:
        live.end()
        if not best_path.exists():  # resumed run whose best came before the interruption and was lost
            save_checkpoint(best_path, load_checkpoint(last_path))
    result = {**summary, f"best_{monitor.replace('/', '_')}": best_metric}
    result["epochs_trained"] = epochs_done
    return result
