"""Augmentation registry.

The augmentations here run batched on the training device, on float tensors (N, C, H, W)
already normalised: the images sit in memory as uint8, so nothing is decoded or resized per
sample and the data path costs next to nothing next to the model step.
"""

import torch
import torch.nn.functional as F

from .registry import Registry

AUGMENTATIONS = Registry("augment")


@AUGMENTATIONS.register("flip", help="random horizontal flip (batched, on device)")
def flip(image_size: int):
    def apply(x: torch.Tensor) -> torch.Tensor:
        mask = (torch.rand(x.shape[0]) < 0.5).to(x.device)[:, None, None, None]
        return torch.where(mask, x.flip(-1), x)

    return apply


@AUGMENTATIONS.register("crop", help="pad by 1/8 of the side (reflect) and crop back at random (batched)")
def crop(image_size: int):
    pad = max(1, image_size // 8)

    def apply(x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        # one random translation per image, gathered with a single indexing op
        dy = torch.randint(0, 2 * pad + 1, (n,)).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,)).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None])  # n, h
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None])  # n, w
        idx_n = torch.arange(n, device=x.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # n, h, w, c
        return out.permute(0, 3, 1, 2).contiguous()

    return apply


def build_augment(names: list[str], image_size: int):
    fns = [AUGMENTATIONS.get(name, "augment")(image_size) for name in names]

    def apply(x: torch.Tensor) -> torch.Tensor:
        for fn in fns:
            x = fn(x)
        return x

    return apply
