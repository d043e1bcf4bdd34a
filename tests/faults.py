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
