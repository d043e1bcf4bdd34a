"""Faults injected into a stage command (tests/stage_runner.py runs one by name before the stage
starts): disks that fill up, runs that diverge late. No product code changes; each patches the
library the way the fault would show itself in a real run."""

import errno
import math


def disk_full_publishing_curves():
    """The disk fills up while train copies its curves into place at the end of the run."""
    import shutil

    def copytree(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    shutil.copytree = copytree


def weights_blow_up_in_epoch_2():
    """A run that trains one good epoch, then diverges (the weights overflow to inf)."""
    import torch

    import vistage.training as training

    real = training._train_epoch

    def train_epoch(epoch, params, data, c, wrapped, *rest):
        if epoch == 1:
            with torch.no_grad():
                for parameter in c.model.parameters():
                    parameter.mul_(1e38).mul_(1e38)
        return real(epoch, params, data, c, wrapped, *rest)

    training._train_epoch = train_epoch


def nan_validation_loss_in_epoch_2():
    """Validation whose loss is NaN while its accuracy looks like the best yet (argmax of NaN
    logits can pick the right class): the NaN epoch must not become best.pt."""
    import vistage.training as training

    real, calls = training._validate, []

    def validate(*args):
        calls.append(1)
        metrics = real(*args)
        return {**metrics, "val/loss": math.nan, "val/acc": 1.0} if len(calls) == 2 else metrics

    training._validate = validate


def kill_at(point: str):
    """SIGKILL at `point`, as `kill -9` or the OOM killer would (the kill -9 trials):
    `step:N` before optimisation step N of the run; `validate:N` during the validation of epoch N;
    `after:NAME@E` right after checkpoint NAME is written for epoch E or later; `during:NAME@E`
    half-way through writing NAME for epoch E (half its bytes on disk)."""
    import io
    import os
    import signal
    import sys

    import torch

    import vistage.training as training

    kind, _, arg = point.partition(":")
    calls: dict[str, int] = {}

    def die():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def die_on_call(attr: str, n: int):
        real = getattr(training, attr)

        def patched(*a, **k):
            calls[attr] = calls.get(attr, 0) + 1
            if calls[attr] == n:
                die()
            return real(*a, **k)
        setattr(training, attr, patched)

    if kind == "step":
        die_on_call("_optimizer_step", int(arg))
    elif kind == "validate":
        die_on_call("_validate", int(arg))
    elif kind == "after":
        name, epoch = arg.split("@")
        real_save = training.save_checkpoint

        def save_checkpoint(path, state):
            real_save(path, state)
            if os.path.basename(path) == name and state["epoch"] >= int(epoch):
                die()
        training.save_checkpoint = save_checkpoint
    elif kind == "during":
        name, epoch = arg.split("@")
        real_torch_save = torch.save

        def save(obj, f, *a, **k):
            if isinstance(obj, dict) and obj.get("epoch") == int(epoch) and \
                    os.path.basename(str(f)).startswith("." + name + "."):
                buf = io.BytesIO()
                real_torch_save(obj, buf, *a, **k)
                with open(f, "wb") as out:
                    out.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                    out.flush()
                    os.fsync(out.fileno())
                die()
            return real_torch_save(obj, f, *a, **k)
        torch.save = save
    else:
        raise SystemExit(f"unknown point {point}")
