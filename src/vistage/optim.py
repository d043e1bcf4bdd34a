"""Optimizers (timm's factory, every name it knows) and learning-rate schedules.

Every schedule is wrapped in the same small interface so the training loop does not care
which one it runs: `step_batch()` after each optimisation step, `step_epoch(val_metric)` after
each validation.
"""

from functools import lru_cache

import torch
from torch import nn

from .registry import Provider, Registry


class TimmOptimizers(Provider):
    help = "any optimizer of timm.optim.create_optimizer_v2 (timm.optim.list_optimizers())"
    # bitsandbytes and apex variants need packages we do not install
    _needs_extras = ("bnb", "fused")

    @lru_cache(maxsize=1)
    def names(self) -> tuple[str, ...]:
        from timm.optim import list_optimizers

        return tuple(n for n in list_optimizers() if not n.startswith(self._needs_extras))

    def builder(self, name: str):
        def build(model: nn.Module, lr: float, weight_decay: float, momentum: float,
                  backbone_lr_scale: float = 1.0) -> torch.optim.Optimizer:
            from timm.optim import create_optimizer_v2

            kwargs = {"momentum": momentum} if name in ("sgd", "momentum", "nesterov", "sgdw", "sgdp", "rmsprop",
                                                         "rmsproptf", "lars", "larc", "nlars", "nlarc") else {}
            groups = param_groups(model, lr, weight_decay, backbone_lr_scale)
            # timm's sgd is Nesterov, which torch refuses without momentum: momentum 0 means plain SGD
            opt = "momentum" if name in ("sgd", "nesterov") and momentum == 0 else name
            return create_optimizer_v2(groups, opt=opt, lr=lr, weight_decay=weight_decay, **kwargs)

        return build


def param_groups(model: nn.Module, lr: float, weight_decay: float, backbone_lr_scale: float = 1.0) -> list[dict]:
    """Parameter groups: the classifier at `lr` and the backbone at `lr * backbone_lr_scale`
    (discriminative fine-tuning), each split so that biases and normalisation weights (1-D)
    get no weight decay, as timm does. Every parameter is included, frozen ones too: they get
    no gradient while frozen (the optimizer skips them) and train once thawed, without
    rebuilding the optimizer or its schedule."""
    from .models import classifier

    head = {id(p) for p in classifier(model).parameters()}
    groups = []
    for part, scale in (("backbone", backbone_lr_scale), ("classifier", 1.0)):
        params = [(n, p) for n, p in model.named_parameters() if (id(p) in head) == (part == "classifier")]
        decay = [p for n, p in params if p.ndim > 1]
        no_decay = [p for n, p in params if p.ndim <= 1]
        for tensors, wd in ((decay, weight_decay), (no_decay, 0.0)):
            if tensors:
                groups.append({"params": tensors, "lr": lr * scale, "weight_decay": wd, "name": part})
    return groups


OPTIMIZERS = Registry("optimizer", provider=TimmOptimizers())


class Schedule:
    """Constant learning rate; the base of every schedule."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer

    def step_batch(self) -> None:
        pass

    def step_epoch(self, val_metric: float | None) -> None:
        pass

    @property
    def lr(self) -> float:
        """The classifier's learning rate (the `lr` of params.yaml, as scheduled)."""
        return self.optimizer.param_groups[-1]["lr"]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class _TorchSchedule(Schedule):
    def __init__(self, optimizer, scheduler, per_batch: bool):
        super().__init__(optimizer)
        self.scheduler, self.per_batch = scheduler, per_batch

    def step_batch(self) -> None:
        if self.per_batch:
            self.scheduler.step()

    def step_epoch(self, val_metric: float | None) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if val_metric is not None:  # plateau counts validations (val_every)
                self.scheduler.step(val_metric)
        elif not self.per_batch:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


class _TimmSchedule(_TorchSchedule):
    """timm schedulers count updates themselves: feed them the running step number."""

    def __init__(self, optimizer, scheduler):
        super().__init__(optimizer, scheduler, per_batch=True)
        self.updates = 0

    def step_batch(self) -> None:
        self.updates += 1
        self.scheduler.step_update(self.updates)

    def step_epoch(self, val_metric: float | None) -> None:
        pass

    def state_dict(self) -> dict:
        return {"updates": self.updates, **self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        self.updates = state.pop("updates")
        self.scheduler.load_state_dict(state)


SCHEDULERS = Registry("scheduler")


@SCHEDULERS.register(help="constant learning rate")
def none(optimizer, params, steps_per_epoch: int) -> Schedule:
    return Schedule(optimizer)


@SCHEDULERS.register(help="OneCycleLR: warm up to lr, anneal to ~0 (per batch)")
def onecycle(optimizer, params, steps_per_epoch: int) -> Schedule:
    total = params.epochs * steps_per_epoch
    pct = min(0.5, max(0.01, params.warmup_epochs / params.epochs)) if params.warmup_epochs else 0.01
    if abs(pct * total - 1) < 1e-6:
        # OneCycleLR divides by (warm-up steps - 1): a warm-up of exactly one step (2 epochs of 1
        # step, 100 steps without warm-up, ...) is a division by zero. Warm up over two steps when
        # the run has room for it, else start at the peak.
        pct = 2 / total if total >= 4 else 0.5 / total
    # one peak per group, so a lower backbone lr stays lower
    max_lr = [group["lr"] for group in optimizer.param_groups]
    sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, pct_start=pct)
    return _TorchSchedule(optimizer, sched, per_batch=True)


@SCHEDULERS.register(help="triangular: linear from 0.2 x lr up to lr over warmup_epochs, then linear down to "
                     "0.07 x lr at the end (per batch; airbench's schedule)")
def triangular(optimizer, params, steps_per_epoch: int) -> Schedule:
    total = max(1, params.epochs * steps_per_epoch)
    peak = min(total - 1, round(params.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < peak:
            return 0.2 + 0.8 * step / peak
        return 1.0 - 0.93 * min(1.0, (step - peak) / max(1, total - peak))

    return _TorchSchedule(optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor), per_batch=True)


@SCHEDULERS.register(help="cosine decay with linear warm-up (timm, per batch)")
def cosine(optimizer, params, steps_per_epoch: int) -> Schedule:
    from timm.scheduler import CosineLRScheduler

    total = params.epochs * steps_per_epoch
    warmup = int(params.warmup_epochs * steps_per_epoch)
    sched = CosineLRScheduler(optimizer, t_initial=total, lr_min=params.lr * 1e-3, warmup_t=warmup,
                              warmup_lr_init=params.lr * 0.01, t_in_epochs=False)
    return _TimmSchedule(optimizer, sched)


@SCHEDULERS.register(help="multiply lr by lr_factor every lr_step_epochs epochs")
def step(optimizer, params, steps_per_epoch: int) -> Schedule:
    sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=params.lr_step_epochs, gamma=params.lr_factor)
    return _TorchSchedule(optimizer, sched, per_batch=False)


@SCHEDULERS.register(help="multiply lr by lr_factor when validation accuracy stalls lr_patience epochs")
def plateau(optimizer, params, steps_per_epoch: int) -> Schedule:
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=params.lr_factor,
                                                       patience=params.lr_patience)
    return _TorchSchedule(optimizer, sched, per_batch=False)
