"""Loss registry."""

from torch import nn

from .registry import Registry

LOSSES = Registry("loss")


@LOSSES.register(help="cross-entropy with label_smoothing")
def cross_entropy(params) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=params.label_smoothing)
