"""The training loop: `train(params, paths) -> metrics`, pure apart from reading the store and
writing checkpoints and DVCLive logs.

The engine knows no task: the task's TaskTraining (tasks/base.py, made by `create_task(params.task)`)
holds the data and supplies the model and loss, the batches, validation and what a checkpoint
adds; everything else (the loop, precision, EMA, schedules, checkpoints, resume, DDP) is here.

Read it top-down. `_train` runs the steps in order: load the data (`_load_data`), build the
components (`_build`), resume (`_resume`), then per epoch: train (`_train_epoch`, one batch at a
time in `_forward_backward` and `_optimizer_step`), validate (`_validate`), count the epoch
(`_count_epoch`: best metric, early stopping) and checkpoint (`_save`).

Resume: `last.pt` holds everything needed to continue (model, optimizer, schedule, RNG states,
epoch, best metric; checkpoint.py defines its fields). It is resumed only when the params and data it was trained with equal the
current ones; otherwise training starts fresh, so a checkpoint from another experiment is never
continued by accident.

All or nothing: while training runs, its checkpoints and curves live in `models/in-progress/`
(what a rerun resumes from). Only a run that ends well publishes them, together, as
`models/best.pt`, `models/last.pt` and the live folder (io.publishing); a run that diverges, is
killed or cannot write leaves the last good run's outputs as they were.
"""

import hashlib
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from . import distributed
from .augment import AugmentPlan, build_augment
from .batches import Normalizer, channel_stats
from .checkpoint import (ModelInfo, Standing, load_checkpoint, resumable, restore_training, save_checkpoint,
                         training_state)
from .errors import VistageError
from .head_solve import HEADS
from .io import atomic_dir, atomic_path, check_writable, immediately, publishing, when_published
from .models import check_input_fits, set_backbone_frozen, train_mode, whiten_first_layer
from .optim import OPTIMIZERS, SCHEDULERS, Schedule
from .params import Params
from .precision import Precision, cpu_bf16_hint, resolve_precision
from .runtime import resolve_device, seed_everything
from .tasks import create_task
from .tasks.base import TaskTraining

console = Console(stderr=True)


@dataclass
class TrainPaths:
    """Where training reads (the prepared store and its split) and writes (checkpoints, DVCLive
    logs): the train stage passes the paths of dvc.yaml, tests their own."""

    store: Path
    split: Path
    models: Path
    live: Path


def train_stage(params: Params, params_file: Path, paths: TrainPaths) -> tuple[int, str]:
    """The train stage: (exit code, summary line; "" on the processes that print none). With
    `devices: N` outside torchrun, the stage run again on N processes (distributed.relaunch)."""
    code = distributed.relaunch(params.devices, params.batch_size, params.device, params_file, paths)
    if code is not None:
        return code, ""
    result = train(params, paths)
    if not distributed.is_main_process():
        return 0, ""
    return 0, ", ".join(f"{k} {v:.4g}" for k, v in result.items()) + _kept_note(result)


# without a val split (data.val_fraction: 0 and no predefined one) best.pt, early stopping and
# plateau follow the training batches' accuracy, and the run says so
NO_VAL_MONITOR = "train/acc"
NO_VAL_NOTE = ("no val split: best.pt, early stopping and scheduler: plateau follow train/acc (the accuracy on the "
               "training batches, as they train) instead of val/acc")
NO_VAL_CALIBRATE = ("; calibrate: true fits no temperature (it fits one on the val logits), so predict serves the "
                    "raw softmax")


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
    if dist.is_main:
        for output in (paths.models / "best.pt", paths.models / "last.pt", _in_progress(paths), paths.live):
            check_writable(output)  # now, not after the run
    data, fingerprint = _load_data(params, paths, dist)
    c = _build(params, data, device, dist)
    standing = _resume(_in_progress(paths) / "last.pt", params, len(data.val_rows), fingerprint, c)
    monitor = standing.monitor
    if monitor == NO_VAL_MONITOR:
        fits_nothing = params.calibrate and create_task(params.task).reads("calibrate")
        c.say(f"[yellow]{NO_VAL_NOTE}{NO_VAL_CALIBRATE * fits_nothing}[/]", soft_wrap=True)
    live = _open_live(paths, standing.epoch) if dist.is_main else None
    summary: dict = {}
    wrapped = None
    with _progress_bars(dist) as progress:
        epochs_task = progress.add_task("epochs", total=params.epochs, completed=standing.epoch, info="")
        for epoch in range(standing.epoch, params.epochs):
            wrapped = _wrapped_for(epoch, params, data, c, wrapped)
            solving = bool(solver := HEADS.get(params.head, "head")(params)) and wrapped.frozen
            if solving:
                standing.head, train_metrics, throughput = _solve_head(solver, params, data, c, wrapped)
            else:
                train_metrics, throughput = _train_epoch(epoch, params, data, c, wrapped, progress)
            # the solved head is always validated: its val score is what fine-tuning has to beat
            validated = _validate(params, data, c) if _validates(params, epoch) or solving else {}
            if solving and params.head_refit:  # after validation, which scored the head that chose C, held out
                standing.head.update(_refit_head(params, data, c, wrapped, standing.head))
            _check_finite({**train_metrics, **validated}, epoch, params)
            metrics = {**train_metrics, **validated, "lr": c.schedule.lr, "throughput": throughput}
            c.schedule.step_epoch(metrics.get(monitor))
            improved = _count_epoch(standing, epoch + 1, metrics.get(monitor), params.early_stopping_patience)
            if improved and standing.head:
                standing.head["best_epoch"] = epoch + 1
            if dist.is_main:
                for name, value in metrics.items():
                    live.log_metric(name, float(value))
                live.next_step()
                _save(_in_progress(paths), improved, params, data, fingerprint, c, standing)
            dist.barrier()  # no rank runs ahead of a checkpoint a resume would need
            c.say(_epoch_line(epoch, params.epochs, metrics, improved), soft_wrap=True)
            progress.update(epochs_task, advance=1, info=f"best {monitor} {standing.best_metric:.4f}")
            summary = metrics
            if standing.stopped_early:
                c.say(f"early stop: {monitor} did not improve for {standing.stale_epochs} epochs")
                break
    if dist.is_main:
        live.end()
        _publish(paths)
    result = {**summary, f"best_{monitor.replace('/', '_')}": standing.best_metric}
    result["epochs_trained"] = standing.epoch
    return {**result, **standing.head}


# -- the data ---------------------------------------------------------------------------------

def data_fingerprint(store_dir: Path, split_path: Path) -> str:
    """Of the store's tables (its .csv and .json files: the rows, classes, and a task's own, such
    as VQA's questions) and the split: a checkpoint resumes only on the same data."""
    h = hashlib.sha256()
    for path in [*sorted(store_dir.glob("*.csv")), *sorted(store_dir.glob("*.json")), split_path]:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _load_data(params: Params, paths: TrainPaths, dist: distributed.Dist) -> tuple[TaskTraining, str]:
    """The task's training data and hooks, and the fingerprint of the store and split."""
    task = create_task(params.task)
    errors, _ = task.refusals(params)  # load_params said so already; a run from Python is held to it too
    if errors:
        raise VistageError(f"params.yaml: {errors[0]}")
    data = task.training(params, paths.store, paths.split)
    _check_distributed(params, dist, len(data.train_rows))
    return data, data_fingerprint(paths.store, paths.split)


def _check_distributed(params: Params, dist: distributed.Dist, n_train: int) -> None:
    if not dist.enabled:
        return
    if params.batch_size % dist.world or n_train < params.batch_size:
        raise VistageError(f"params.yaml: batch_size: {params.batch_size} must be a multiple of the {dist.world} "
                           f"processes and at most the {n_train} training images (it is the batch over all devices)")


# -- the components ---------------------------------------------------------------------------

@dataclass
class Components:
    """Everything a run builds before its first epoch, and where it runs. Its model, optimizer,
    schedule, scaler, ema and shuffle_gen are what a checkpoint saves (checkpoint.Trainable)."""

    device: torch.device
    dist: distributed.Dist
    say: Callable  # console.print on the main process, silent on the others
    precision: Precision
    model: nn.Module
    mean: list[float]  # the normalisation the model is trained (and later fed) with
    std: list[float]
    normalize: Normalizer
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    plan: AugmentPlan
    ema: nn.Module | None  # timm's ModelEmaV3 when ema_decay is set
    shuffle_gen: torch.Generator
    drop_last: bool  # drop the last partial batch (unless it would be the only one)


def _build(params: Params, data: TaskTraining, device: torch.device, dist: distributed.Dist) -> Components:
    """Build the components. The order is part of the result: the model's initial weights are the
    RNG's first draws after seeding."""
    say = console.print if dist.is_main else (lambda *a, **k: None)
    precision = resolve_precision(params.precision, device)
    model, loss_fn = data.build(params)
    image_model = data.image_model(model)
    mean, std = _normalization(params, image_model, data.store.images, data.train_images)
    if params.patch_whitening:  # from the first 5,000 training images: no random draw, same on resume
        sample = torch.from_numpy(data.store.images[np.sort(data.train_images)[:5000]])
        whiten_first_layer(image_model, params.model,
                           Normalizer(mean, std, torch.device("cpu"), params.input_size)(sample))
    model.to(device, memory_format=torch.channels_last if params.channels_last else torch.preserve_format)
    check_input_fits(image_model, params.model, params.input_size or data.store.image_size, device)
    # notes once the model is known to build and fit: a failing run shows its error line alone
    if precision.note:
        say(f"[yellow]{precision.note}[/]", soft_wrap=True)
    elif hint := cpu_bf16_hint(params.precision, device):
        say(f"[dim]{hint}[/]", soft_wrap=True)
    normalize = Normalizer(mean, std, device, size=params.input_size)
    optimizer = OPTIMIZERS.get(params.optimizer, "optimizer")(model, params.lr, params.weight_decay,
                                                              params.momentum, params.backbone_lr_scale)
    drop_last = len(data.train_rows) > params.batch_size  # avoid a 1-image batch upsetting BatchNorm
    schedule = SCHEDULERS.get(params.scheduler, "scheduler")(optimizer, _schedule_span(params),
                                                             _steps_per_epoch(params, len(data.train_rows), drop_last))
    scaler = precision.scaler()
    plan = build_augment(params.augment, data.store.image_size, data.num_classes, params)
    ema = None
    if params.ema_decay:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=params.ema_decay)
    c = Components(device, dist, say, precision, model, mean, std, normalize, optimizer, schedule, scaler,
                   loss_fn, plan, ema, torch.Generator().manual_seed(params.seed), drop_last)
    data.setup(params, c)  # the task's caches and loaders
    return c


def _normalization(params: Params, model, images, train_idx) -> tuple[list[float], list[float]]:
    """The input statistics: a pretrained image model's own (`model`: the part that takes the
    images, e.g. VQA's encoder, not the whole VQA model, which has none), else the train images'."""
    if params.pretrained:
        # pretrained weights expect the statistics they were trained with
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        if "mean" in cfg and "std" in cfg:
            return list(cfg["mean"]), list(cfg["std"])
    return channel_stats(images, train_idx)


def _schedule_span(params: Params) -> Params:
    """The params a schedule is sized by. With head: solve the frozen epochs are solved and take
    no optimisation step, so a per-batch schedule spans the epochs that train: its warm-up starts
    with fine-tuning and its annealing ends with the run (over all epochs it would stop part-way)."""
    if HEADS.get(params.head, "head")(params) is None:
        return params
    solved = sum(_backbone_frozen(params, epoch) for epoch in range(params.epochs))
    return params.model_copy(update={"epochs": max(1, params.epochs - solved)})


def _steps_per_epoch(params: Params, n_train: int, drop_last: bool) -> int:
    """Optimisation steps in one epoch, as the schedule counts them."""
    batches = n_train // params.batch_size if drop_last else 1
    if params.max_steps_per_epoch:
        batches = min(batches, params.max_steps_per_epoch)
    return math.ceil(batches / params.accumulate)


# -- resume -----------------------------------------------------------------------------------

def _resume(path: Path, params: Params, n_val: int, fingerprint: str, c: Components) -> Standing:
    """Continue from `path` when it is an unfinished run of these params on this data: every
    component and the RNGs as they were after its last epoch. Else a fresh start."""
    monitor = "val/acc" if n_val else NO_VAL_MONITOR
    state, why_not = resumable(path, params.training_dict(), fingerprint, params.epochs)
    if why_not:
        console.print(f"[yellow]{path}: {why_not}; starting fresh[/]", soft_wrap=True)
    if state is None:
        return Standing(monitor)
    standing = restore_training(state, c, monitor)
    c.say(f"resuming from {path} at epoch {standing.epoch + 1}/{params.epochs}")
    return standing


def _in_progress(paths: TrainPaths) -> Path:
    """The run under way: its checkpoints and, in live/, its curves (what a rerun resumes from)."""
    return paths.models / "in-progress"


def _staging(paths: TrainPaths) -> Path:
    """Where DVCLive writes while training runs: beside the checkpoints it belongs to, so the
    committed curves in `paths.live` change only when a run ends (a failed or killed one leaves
    them as they were) and a resumed run continues its own."""
    return _in_progress(paths) / "live"


def _open_live(paths: TrainPaths, start_epoch: int):
    """DVCLive logger continuing at `start_epoch`: curve rows of epochs after the checkpoint (logged
    before a kill, then lost with it) are dropped, so a resumed run's curves equal an
    uninterrupted run's. (DVCLive's own resume counts from the last row and misses step 0.)"""
    from dvclive import Live

    staging = _staging(paths)
    if start_epoch:
        for tsv in (staging / "plots" / "metrics").rglob("*.tsv"):
            rows = tsv.read_text().splitlines()
            kept = rows[:1] + [r for r in rows[1:] if int(r.split("\t")[0]) < start_epoch]
            tsv.write_text("\n".join(kept) + "\n")
    live = Live(str(staging), resume=bool(start_epoch), dvcyaml=False, save_dvc_exp=False, report=None)
    live.step = start_epoch
    return live


def _publish(paths: TrainPaths) -> None:
    """The finished run's checkpoints and curves replace the published ones, together (with the
    stage's other outputs when it runs as a command); the run in progress is then done with."""
    import shutil

    in_progress = _in_progress(paths)
    if not (in_progress / "best.pt").exists():  # resumed run whose best came before the interruption and was lost
        with immediately():
            save_checkpoint(in_progress / "best.pt", load_checkpoint(in_progress / "last.pt"))
    with publishing():  # joins the command's; from Python, one of its own
        for name in ("best.pt", "last.pt"):
            with atomic_path(paths.models / name) as tmp:
                shutil.copyfile(in_progress / name, tmp)  # a copy: the run stays resumable until published
        with atomic_dir(paths.live) as tmp:
            shutil.copytree(_staging(paths), tmp, dirs_exist_ok=True)
        when_published(lambda: shutil.rmtree(in_progress, ignore_errors=True))


# -- one epoch --------------------------------------------------------------------------------

@dataclass
class _Wrapped:
    module: nn.Module  # what the training step calls
    frozen: bool  # whether the backbone was frozen when it was built
    trainable: list[torch.Tensor]  # the parameters that require grad: what grad_clip clips
    on_features: bool = False  # the task's head alone, fed the frozen backbone's cached features


def _backbone_frozen(params: Params, epoch: int) -> bool:
    """Linear probe (freeze_epochs 0: frozen throughout) or the first stage of a two-stage run."""
    return params.freeze == "backbone" and (params.freeze_epochs == 0 or epoch < params.freeze_epochs)


def _wrapped_for(epoch: int, params: Params, data: TaskTraining, c: Components, current: _Wrapped | None
                 ) -> _Wrapped:
    """The module the training step calls in `epoch`: the task's head on cached features while
    the backbone is frozen (when the task caches them), else DDP around the model (when
    distributed), compiled if asked. DDP registers only the parameters that require grad when it
    is built, so it is built again when a two-stage run thaws the backbone."""
    frozen = _backbone_frozen(params, epoch)
    if current is not None and current.frozen == frozen:
        return current
    if params.freeze == "backbone":
        set_backbone_frozen(c.model, frozen)
        if epoch and not frozen:
            c.say(f"epoch {epoch + 1}: backbone unfrozen")
    head = data.head_on_features(params, c, frozen)
    if head is not None:
        return _Wrapped(head, frozen, [p for p in c.model.parameters() if p.requires_grad], True)
    module = c.model
    if c.dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        module = DistributedDataParallel(c.model, device_ids=[c.device.index] if c.device.type == "cuda" else None)
    if params.compile:
        module = torch.compile(module)
    return _Wrapped(module, frozen, [p for p in c.model.parameters() if p.requires_grad])


def _train_epoch(epoch: int, params: Params, data: TaskTraining, c: Components, wrapped: _Wrapped,
                 progress: Progress) -> tuple[dict, float]:
    """One pass over this process's share of the epoch's batches: the training loss and accuracy
    (summed over all processes) and the images per second."""
    train_mode(c.model, wrapped.frozen, params.freeze_norm)
    batches = data.epoch_batches(params, c.shuffle_gen, c.drop_last, c.dist.rank, c.dist.world)
    # worker RNGs from (seed, epoch, rank): a resumed epoch draws what it drew before
    worker_seed = params.seed * 100_003 + epoch * 1_009 + c.dist.rank
    loader = data.loader(batches, params, c, worker_seed, wrapped.on_features)
    batch_task = progress.add_task(f"epoch {epoch + 1}", total=len(batches), info="")
    # running sums stay on the device: the host waits for the device once per CHECK_EVERY steps,
    # not three times a step (on a GPU each wait drains the queue of launched kernels)
    seen, loss_sum, correct = 0, torch.zeros((), device=c.device), torch.zeros((), device=c.device)
    started = time.perf_counter()
    for i, (x, y, _, *inputs) in enumerate(loader):
        step_now = (i + 1) % params.accumulate == 0 or i + 1 == len(batches)
        logits, y, loss = _forward_backward(x, y, step_now, params, data, c, wrapped, tuple(inputs))
        if step_now:
            _optimizer_step(params, c, wrapped)
        seen += len(y)
        loss_sum += loss.detach() * len(y)
        correct += data.hits(logits.detach(), y)
        if (i + 1) % CHECK_EVERY == 0 or i + 1 == len(batches):
            mean_loss = _finite_mean(loss_sum, seen, epoch, params)
            progress.update(batch_task, info=f"loss {mean_loss:.4f}")
        progress.update(batch_task, advance=1)
    elapsed = time.perf_counter() - started
    progress.remove_task(batch_task)
    loss_sum, correct, seen = c.dist.sum(loss_sum.item(), correct.item(), seen)
    return {"train/loss": loss_sum / seen, "train/acc": correct / seen}, seen / elapsed


def _forward_backward(x: torch.Tensor, y: torch.Tensor, step_now: bool, params: Params, data: TaskTraining,
                      c: Components, wrapped: _Wrapped, inputs: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augment one batch, run the model, backpropagate the loss: (logits, labels on the device, loss).
    `inputs`: the model's other inputs, as the task's loader gave them (VQA: the encoded questions)."""
    x = x.to(c.device, non_blocking=True)
    # stored images are uint8; cached features (of a frozen backbone or image encoder) are vectors
    if x.dtype == torch.uint8 and not wrapped.on_features:
        x = c.plan.apply_batch(c.normalize(x))
    y = y.to(c.device, non_blocking=True)
    # soft targets from MixUp/CutMix feed the loss; accuracy counts the original labels
    x, target = c.plan.mix(x, y) if c.plan.mix else (x, y)
    if params.channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    # DDP: all-reduce gradients only on the micro-batch that completes a step
    sync = nullcontext() if step_now or not c.dist.enabled else wrapped.module.no_sync()
    with sync:
        with c.precision.autocast():
            logits = data.forward(wrapped.module, x, inputs, c.device)
        loss = c.loss_fn(logits.float(), target)
        c.scaler.scale(loss / params.accumulate).backward()
    return logits, y, loss


CHECK_EVERY = 8  # training steps between looks at the running loss (divergence, progress bar)


def _finite_mean(loss_sum: torch.Tensor, seen: int, epoch: int, params: Params) -> float:
    """The epoch's mean training loss so far; a non-finite one stops the run (a NaN or inf loss
    in any step makes the running sum non-finite for good, so no step escapes the check)."""
    mean = loss_sum.item() / seen
    if not math.isfinite(mean):
        raise _diverged(epoch, f"loss {mean}", params)
    return mean


def _solve_head(solver: Callable, params: Params, data: TaskTraining, c: Components, wrapped: _Wrapped
                ) -> tuple[dict, dict, float]:
    """head: solve's epoch: the classifier solved on the cached features (head_solve.py) instead of
    trained by batches; (its record, the epoch's train metrics, images per second)."""
    head_data = data.head_data(params) if wrapped.on_features else None
    if head_data is None:
        raise VistageError("params.yaml: head: solve needs the frozen backbone's cached features, and this run has "
                           "none (see the `feature cache off` line above); set head: train")
    if not len(head_data.val_y):
        raise VistageError("params.yaml: head: solve chooses its L2 strength on the validation split, and this split "
                           "has none: set data.val_fraction above 0")
    solved = solver(wrapped.module, head_data)
    if c.ema is not None:  # the averaged weights start from the solved head, not from its random start
        c.ema.module.load_state_dict(c.model.state_dict())
    c.say(solved.line(), soft_wrap=True)
    record = {"head_C": solved.c, "head_val_acc": solved.val_acc, "head_solve_s": solved.seconds,
              "features_s": head_data.features_s}
    metrics = {"train/loss": solved.train_loss, "train/acc": solved.train_acc}
    return record, metrics, len(head_data.train_y) / solved.seconds


def _refit_head(params: Params, data: TaskTraining, c: Components, wrapped: _Wrapped, solved: dict) -> dict:
    """head_refit: the solved head solved again at its C on the train and val images' features;
    the additions to its record (`solved`)."""
    from .head_solve import refit_head

    refit = refit_head(wrapped.module, data.head_data(params, with_val=True), solved["head_C"])
    if c.ema is not None:
        c.ema.module.load_state_dict(c.model.state_dict())
    c.say(refit.line(), soft_wrap=True)
    return {"head_refit_vectors": refit.vectors, "head_solve_s": solved["head_solve_s"] + refit.seconds}


def _kept_note(result: dict) -> str:
    """head: solve: which model best.pt holds, the solved head or a fine-tuned epoch, and why."""
    if "head_C" not in result:
        return ""
    solved = f"the solved head's val acc {result['head_val_acc']:.4f} (C={result['head_C']:.3g})"
    if result.get("best_epoch", 1) != 1:
        return (f"; best.pt: fine-tuned epoch {result['best_epoch']}, val acc {result['best_val_acc']:.4f} "
                f"above {solved}")
    if result["epochs_trained"] > 1:
        return f"; best.pt: the solved head: fine-tuning did not beat {solved}"
    if "head_refit_vectors" in result:
        return f"; best.pt: the solved head refit on train + val (head_refit), {solved} before the refit"
    return f"; best.pt: the solved head, {solved}"


def _optimizer_step(params: Params, c: Components, wrapped: _Wrapped) -> None:
    """Step on the gradients accumulated since the last step (clipped if asked), then the EMA and
    the schedule."""
    if params.grad_clip:
        c.scaler.unscale_(c.optimizer)
        torch.nn.utils.clip_grad_norm_(wrapped.trainable, params.grad_clip)
    c.scaler.step(c.optimizer)
    c.scaler.update()
    c.optimizer.zero_grad(set_to_none=True)
    if c.ema is not None:
        c.ema.update(c.model)
    c.schedule.step_batch()


def _validate(params: Params, data: TaskTraining, c: Components) -> dict:
    """val/loss and val/acc of the weights kept (the EMA's when on), computed on the main process
    and sent to every rank (plateau and early stopping need them); {} without a val split."""
    if not len(data.val_rows):
        return {}
    metrics = {}
    if c.dist.is_main:
        metrics = data.validate(c.ema.module if c.ema is not None else c.model, params, c)
    return _broadcast(c, metrics)


def _check_finite(metrics: dict, epoch: int, params: Params) -> None:
    """A NaN or infinite epoch metric (train or validation) is divergence, never a "best" epoch
    (NaN's accuracy from argmax can look fine)."""
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        raise _diverged(epoch, ", ".join(f"{k.replace('/', ' ')} {v}" for k, v in bad.items()), params)


def _diverged(epoch: int, what: str, params: Params) -> VistageError:
    return VistageError(f"training diverged at epoch {epoch + 1} ({what}); lower lr (now {params.lr})")


def _broadcast(c: Components, metrics: dict) -> dict:
    """Rank 0's validation metrics on every rank."""
    if c.dist.enabled:
        for key in ("val/loss", "val/acc"):
            metrics[key] = c.dist.broadcast(metrics.get(key, 0.0))
    return metrics


# -- after each epoch -------------------------------------------------------------------------

def _validates(params: Params, epoch: int) -> bool:
    """Whether `epoch` ends with validation: every `val_every` epochs, and always after the last."""
    return (epoch + 1) % params.val_every == 0 or epoch + 1 == params.epochs


def _count_epoch(standing: Standing, epochs_done: int, value: float | None, patience: int) -> bool:
    """Record a finished epoch whose monitored metric is `value` (None: not validated, which
    neither improves nor counts against patience); True when it is the best yet."""
    standing.epoch = epochs_done
    if value is None:
        return False
    improved = value > standing.best_metric
    standing.best_metric = max(standing.best_metric, value)
    standing.stale_epochs = 0 if improved else standing.stale_epochs + 1
    standing.stopped_early = bool(patience) and standing.stale_epochs >= patience
    standing.epoch = epochs_done
    return improved


def _save(models: Path, improved: bool, params: Params, data: TaskTraining, fingerprint: str, c: Components,
          standing: Standing) -> None:
    """last.pt after every epoch, best.pt when the epoch improved the monitored metric."""
    info = ModelInfo(params.training_dict(), data.store.classes, data.store.image_size, c.mean, c.std, params.task)
    state = {**training_state(c, standing, info, fingerprint), **data.checkpoint_extra()}
    with immediately():  # what a rerun resumes from, whatever becomes of the run
        if improved:
            save_checkpoint(models / "best.pt", state)
        save_checkpoint(models / "last.pt", state)


def _epoch_line(epoch: int, epochs: int, metrics: dict, improved: bool) -> str:
    line = "  ".join(f"{k} {v:.3g}" if k == "lr" else f"{k} {v:.4f}" if abs(v) < 10 else f"{k} {v:.0f}"
                     for k, v in metrics.items())
    return f"epoch {epoch + 1}/{epochs}  {line}{'  *best' if improved else ''}"


def _progress_bars(dist: distributed.Dist) -> Progress:
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[info]}")]
    return Progress(*columns, console=console, transient=True, disable=not dist.is_main)
