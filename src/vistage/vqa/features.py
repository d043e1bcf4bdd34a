"""Image features computed once: with a frozen image encoder, every epoch would recompute the same
vectors, so compute them once per image (many questions share one image) and train only the rest.

`backbone_features` is generic (any module from images to vectors, the classification linear probe
could use it too); `cacheable` says when a VQA run may use it: a frozen backbone that never thaws
(freeze: backbone, freeze_epochs: 0), and no augmentation, which would change the images (and so
the features) from epoch to epoch. The VqaModel takes the cached vectors in place of the images:
model(features[image_rows], **encoded_questions) gives the same logits as model(images, ...).
"""

import numpy as np
import torch
from torch import nn


@torch.inference_mode()
def backbone_features(backbone: nn.Module, images_uint8, normalize, batch_size: int = 64,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """backbone(normalize(batch)) for every image, in order: float32 [N, D] (or [N, R, D]) on the CPU.

    `images_uint8`: (N, H, W, 3) uint8, numpy (a memory-mapped store works: read a batch at a time)
    or torch; `normalize`: uint8 NHWC batch on the device -> the float NCHW the backbone takes
    (batches.Normalizer). The backbone runs in eval mode (BatchNorm's running statistics, no
    dropout) and is left in the mode it was in."""
    device = torch.device(device)
    was_training = backbone.training
    backbone.eval()
    try:
        chunks = []
        for start in range(0, len(images_uint8), batch_size):
            batch = images_uint8[start:start + batch_size]
            # a copy: a store's memory map is read-only, which torch.from_numpy warns about
            batch = torch.from_numpy(np.array(batch)) if isinstance(batch, np.ndarray) else batch
            out = backbone(normalize(batch.to(device, non_blocking=True)))
            chunks.append(out.float().cpu())  # [B, D], or [B, R, D] region vectors (vqa.image_grid)
        if not chunks:
            return torch.zeros(0, 0)
        return torch.cat(chunks)
    finally:
        backbone.train(was_training)


def cacheable(params) -> bool:
    """Whether a run's image features never change during training, so they may be computed once:
    the backbone frozen for the whole run and the images fed as stored (no augmentation)."""
    return params.freeze == "backbone" and params.freeze_epochs == 0 and not params.augment


def image_features(model: nn.Module, images_uint8, normalize, batch_size: int = 64,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """The VQA model's own image vectors for every stored image (its `.backbone`), [N_images, D]."""
    return backbone_features(model.backbone, images_uint8, normalize, batch_size, device)
