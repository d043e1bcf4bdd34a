"""Running a trained model over part of the store, and rebuilding a model from a checkpoint."""

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .batches import Normalizer, epoch_batches
from .checkpoint import load_trained
from .models import build_from_params
from .precision import Precision, resolve_precision


@torch.no_grad()
def tta_logits(model: nn.Module, x: torch.Tensor, tta=()) -> torch.Tensor:
    """The model's logits of normalised batch `x`, averaged over the test-time views `tta` asks for
    (as airbench94): the image and, with `flip`, its mirror; with `translate`, also the image shifted
    one pixel down-right and one up-left (reflect-padded), each mirrored too with `flip`. The
    untranslated views weigh half, the translated ones the other half."""
    def views(batch: torch.Tensor) -> torch.Tensor:
        out = model(batch).float()
        return (out + model(batch.flip(-1)).float()) / 2 if "flip" in tta else out

    logits = views(x)
    if "translate" in tta:
        h, w = x.shape[-2:]
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = (views(padded[..., :h, :w]) + views(padded[..., 2:, 2:])) / 2
        logits = (logits + shifted) / 2
    return logits


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, index: np.ndarray, normalize: Normalizer,
                   batch_size: int, device: torch.device, tta=(), precision: Precision | None = None,
                   channels_last: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """Logits (float32, on the CPU) for the store rows `index`, and those rows in the order of the
    logits; averaged over the test-time augmentations `tta` (flip, translate) when asked. The model
    runs in the precision and memory format it trained in (measured: validating a bf16 +
    channels_last net in fp32 took a third of each CIFAR-10 epoch of the cifar10-cpu recipe).
    Per call it does no more than per batch (batch-1 latency is what a server pays)."""
    model.eval()
    autocast = precision.autocast if precision is not None else nullcontext
    outs, order = [], []
    for batch in epoch_batches(np.asarray(index), batch_size, None, False, shuffle=False):
        x = normalize(torch.from_numpy(np.ascontiguousarray(images[batch])).to(device, non_blocking=True))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            outs.append(tta_logits(model, x, tta).cpu())
        order.append(batch)
    if len(outs) == 1:
        return outs[0], order[0]
    if not outs:
        return torch.zeros(0, 0), np.zeros(0, dtype=np.int64)
    return torch.cat(outs), np.concatenate(order)


class TrainedModel:
    """A checkpoint made usable: model in eval mode, its normaliser, classes and params."""

    def __init__(self, checkpoint_path: str | Path, device: torch.device):
        trained = load_trained(checkpoint_path)
        self.params = trained.info.params
        self.classes: list[str] = trained.info.classes
        self.image_size = trained.info.image_size
        # the checkpoint holds the weights: never fetch pretrained ones again
        self.model = build_from_params(self.params, len(self.classes), pretrained=False)
        self.model.load_state_dict(trained.weights)
        self.channels_last = bool(self.params.get("channels_last", False))
        self.model.to(device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        self.model.eval()
        self.precision = resolve_precision(self.params.get("precision", "fp32"), device)
        self.normalize = Normalizer(trained.info.mean, trained.info.std, device, size=self.params.get("input_size"))
        self.device = device
        self.epoch = trained.epoch
        self.temperature = trained.temperature  # fitted on the validation split (1.0: calibrate false)

    def logits(self, images: np.ndarray, index: np.ndarray, batch_size: int = 256):
        # the test-time augmentation it was validated with during training
        return predict_logits(self.model, images, index, self.normalize, batch_size, self.device,
                              self.params.get("tta", ()), self.precision, self.channels_last)
