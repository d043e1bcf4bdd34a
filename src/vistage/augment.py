"""Augmentation registry: one `augment` list in params.yaml, each keyword run where it is cheapest.

Every keyword belongs to one of three places, shown by `vistage list augmentations`:

- **sample**: per image, on the CPU, on uint8 pixels, in DataLoader worker processes
  (`num_workers`) while the model trains. These draw their own parameters per image (a crop box, a
  RandAugment policy): random_resized_crop, color_jitter, randaugment, autoaugment, trivialaugment.
- **batch**: on the whole batch at once, on the training device, on normalised float tensors, with
  per-image randomness from vectorised masks and indices: flip, crop, translate, random_erasing.
- **mix**: MixUp / CutMix (torchvision.transforms.v2) on the device after the batched ones; they turn
  labels into soft targets, which nn.CrossEntropyLoss takes directly (label smoothing included).

A list with no sample keyword keeps the worker-free data path (one memmap read per batch), so
the common case costs next to nothing next to the model step. The order within each place is
the order of the list.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .errors import VistageError
from .registry import Registry

AUGMENTATIONS = Registry("augment")
SAMPLE, BATCH, MIX = "sample", "batch", "mix"
_PLACE: dict[str, str] = {}
_WHERE = {SAMPLE: "per sample, CPU workers", BATCH: "batched, on the device", MIX: "batch mix, on the device"}


def _augmentation(place: str, help: str):
    """Register the function as the augmentation keyword of its own name, run at `place`."""
    def decorator(fn: Callable) -> Callable:
        _PLACE[fn.__name__] = place
        return AUGMENTATIONS.register(help=f"{_WHERE[place]}: {help}")(fn)

    return decorator


def place_of(name: str) -> str:
    AUGMENTATIONS.check(name, "augment")
    return _PLACE[name]


# -- per sample, CPU, uint8 CHW tensors (torchvision.transforms.v2) ---------------------------

@_augmentation(SAMPLE, "crop 8-100% of the area at 3/4-4/3 aspect, resize back")
def random_resized_crop(image_size: int, params):
    from torchvision.transforms import v2

    return v2.RandomResizedCrop(image_size, antialias=True)


@_augmentation(SAMPLE, "brightness, contrast, saturation +-0.4, hue +-0.1")
def color_jitter(image_size: int, params):
    from torchvision.transforms import v2

    return v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)


@_augmentation(SAMPLE, "RandAugment: 2 random ops at magnitude 9")
def randaugment(image_size: int, params):
    from torchvision.transforms import v2

    return v2.RandAugment()


@_augmentation(SAMPLE, "AutoAugment, ImageNet policy")
def autoaugment(image_size: int, params):
    from torchvision.transforms import v2

    return v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)


@_augmentation(SAMPLE, "TrivialAugmentWide: one random op at a random magnitude")
def trivialaugment(image_size: int, params):
    from torchvision.transforms import v2

    return v2.TrivialAugmentWide()


# -- batched, on the device, normalised float NCHW -------------------------------------------

@_augmentation(BATCH, "random horizontal flip")
def flip(image_size: int, params):
    def apply(x: torch.Tensor) -> torch.Tensor:
        mask = (torch.rand(x.shape[0]) < 0.5).to(x.device)[:, None, None, None]
        return torch.where(mask, x.flip(-1), x)

    return apply


@_augmentation(BATCH, "pad by 1/8 of the side (reflect) and crop back at a random offset")
def crop(image_size: int, params):
    return lambda x: _translate(x, max(1, x.shape[-2] // 8))


@_augmentation(BATCH, "shift by up to translate_pad pixels each way (reflect padding), as airbench")
def translate(image_size: int, params):
    return lambda x: _translate(x, params.translate_pad)


def _translate(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect-pad every image by `pad` pixels and crop it back at a random offset of its own."""
    n, _, h, w = x.shape
    pad = min(pad, h - 1, w - 1)  # reflect padding needs fewer pixels than the side
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    # one random translation per image, gathered with a single indexing op
    dy = torch.randint(0, 2 * pad + 1, (n,)).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,)).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)[None]  # n, h
    cols = dx[:, None] + torch.arange(w, device=x.device)[None]  # n, w
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # n, h, w, c
    return out.permute(0, 3, 1, 2).contiguous()


@_augmentation(BATCH, "erase one random box (2-33% of the area) in half the images, to the mean colour")
def random_erasing(image_size: int, params, p: float = 0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3)):
    def apply(x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        area = torch.empty(n).uniform_(*scale) * h * w
        aspect = torch.exp(torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1])))
        eh = torch.sqrt(area * aspect).round().clamp(1, h).long()
        ew = torch.sqrt(area / aspect).round().clamp(1, w).long()
        top = (torch.rand(n) * (h - eh + 1).float()).long()
        left = (torch.rand(n) * (w - ew + 1).float()).long()
        on = torch.rand(n) < p
        ys, xs = torch.arange(h)[None], torch.arange(w)[None]
        rows = (ys >= top[:, None]) & (ys < (top + eh)[:, None])  # n, h
        cols = (xs >= left[:, None]) & (xs < (left + ew)[:, None])  # n, w
        mask = (rows[:, :, None] & cols[:, None, :] & on[:, None, None]).to(x.device)[:, None]
        # 0 in normalised units is the data set's mean colour, as torchvision's default value=0
        return x.masked_fill(mask, 0.0)

    return apply


# -- mixing, on the device, after the batched ones (soft targets) ----------------------------

@_augmentation(MIX, "MixUp, lambda ~ Beta(mix_alpha, mix_alpha); soft targets")
def mixup(num_classes: int, params):
    from torchvision.transforms import v2

    return v2.MixUp(alpha=params.mix_alpha, num_classes=num_classes)


@_augmentation(MIX, "CutMix, box area ~ Beta(mix_alpha, mix_alpha); soft targets")
def cutmix(num_classes: int, params):
    from torchvision.transforms import v2

    return v2.CutMix(alpha=params.mix_alpha, num_classes=num_classes)


@_augmentation(MIX, "MixUp or CutMix, one chosen at random per batch (as recipe R5)")
def mixup_cutmix(num_classes: int, params):
    from torchvision.transforms import v2

    return v2.RandomChoice([mixup(num_classes, params), cutmix(num_classes, params)])


@dataclass
class AugmentPlan:
    """The `augment` list split by where each keyword runs."""

    sample: Callable | None = None  # uint8 CHW -> uint8 CHW, in workers
    batch: list[Callable] = field(default_factory=list)
    mix: Callable | None = None  # (x, y) -> (x, soft y)

    def apply_batch(self, x: torch.Tensor) -> torch.Tensor:
        for fn in self.batch:
            x = fn(x)
        return x


def check_augment(names: list[str], where: str = "params.yaml") -> None:
    """Keywords known (one-line error otherwise) and at most one batch mix."""
    mixes = [n for n in names if place_of(n) == MIX]
    if len(mixes) > 1:
        raise VistageError(f"{where}: augment: {', '.join(mixes)} are all batch mixes; keep one "
                           "(mixup_cutmix picks MixUp or CutMix per batch)")


def build_augment(names: list[str], image_size: int, num_classes: int, params) -> AugmentPlan:
    check_augment(names)
    plan = AugmentPlan()
    sample = []
    for name in names:
        build = AUGMENTATIONS.get(name, "augment")
        place = _PLACE[name]
        if place == SAMPLE:
            sample.append(build(image_size, params))
        elif place == BATCH:
            plan.batch.append(build(image_size, params))
        else:
            plan.mix = build(num_classes, params)
    if sample:
        from torchvision.transforms import v2

        plan.sample = v2.Compose(sample)
    return plan
