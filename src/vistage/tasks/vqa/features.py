"""Image features computed once: with a frozen image encoder, every epoch would recompute the same
vectors, so compute them once per image (many questions share one image) and train only the rest.

`backbone_features` is generic (any module from images to vectors, the classification linear probe
could use it too); `cacheable` says when a VQA run may use it: a frozen backbone that never thaws
(freeze: backbone, freeze_epochs: 0), and no augmentation, which would change the images (and so
the features) from epoch to epoch. The VqaModel takes the cached vectors in place of the images:
model(features[image_rows], **encoded_questions) gives the same logits as model(images, ...).
"""

import ctypes
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ...feature_cache import backbone_features as _run_backbone
from .model import FeatureMap

# a chunk's pixels: 8 photos at 480 px. tf_efficientnet_lite0 holds about 80 MB of activations per
# such photo; measured on DAQUAR, peak memory 1.6 GB with 8 a chunk, 2.2 GB with 16 (with glibc's
# default heap), about 0.9 GB of it torch, timm and the model before any image
IMAGE_PIXELS = 8 * 480 * 480
MAX_IMAGE_CHUNK = 256  # small images: the chunk is bounded by count too
# glibc's mallopt parameters and their defaults
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, GLIBC_DEFAULT_THRESHOLD = -1, -3, 128 * 1024


def image_chunk_size(side: int) -> int:
    """How many images of `side` x `side` pixels the encoder takes at once."""
    return max(1, min(MAX_IMAGE_CHUNK, IMAGE_PIXELS // (side * side)))


@contextmanager
def heap_kept_between_chunks():
    """Inside, freed memory stays on the heap for the next chunk instead of going back to the system.

    Why: glibc gives every allocation over 32 MB a fresh mapping and unmaps it when freed, so each
    chunk's activations (tens of MB a tensor at 480 px) were faulted in page by page anew:
    measured on DAQUAR, as much CPU time in the kernel as in the model (1.7 s against 3.3 s for 16
    photos); kept on the heap, none (0.0 s), at about 250 MB more peak memory. The defaults come
    back after, the heap is trimmed; without glibc (macOS, musl) nothing changes."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        yield
        return
    mallopt(M_MMAP_THRESHOLD, 1 << 30)
    mallopt(M_TRIM_THRESHOLD, 1 << 30)
    try:
        yield
    finally:
        mallopt(M_MMAP_THRESHOLD, GLIBC_DEFAULT_THRESHOLD)
        mallopt(M_TRIM_THRESHOLD, GLIBC_DEFAULT_THRESHOLD)
        trim(0)


def backbone_features(backbone: nn.Module, images_uint8, normalize, batch_size: int = 64,
                      device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                      autocast=None) -> torch.Tensor:
    """backbone(normalize(batch)) for every image, in order: [N, D] (or [N, R, D]) of `dtype` on the CPU.

    `images_uint8`: (N, H, W, 3) uint8, numpy (a memory-mapped store works: read a batch at a time)
    or torch; `normalize`: uint8 NHWC batch on the device -> the float NCHW the backbone takes
    (batches.Normalizer). The backbone runs in eval mode (BatchNorm's running statistics, no
    dropout) and is left in the mode it was in, under `autocast` (the run's precision) if given.
    The loop is feature_cache's, shared with the classifier's cache."""
    images = images_uint8.numpy() if isinstance(images_uint8, torch.Tensor) else images_uint8
    was_training = backbone.training
    backbone.eval()
    try:
        return _run_backbone(backbone, images, np.arange(len(images)), normalize, batch_size,
                             torch.device(device), autocast, dtype=dtype).cpu()
    finally:
        backbone.train(was_training)


def cacheable(params) -> bool:
    """Whether a run's image features never change during training, so they may be computed once:
    the backbone frozen for the whole run and the images fed as stored (no augmentation)."""
    return params.freeze == "backbone" and params.freeze_epochs == 0 and not params.augment


def image_features(model: nn.Module, images_uint8, normalize, batch_size: int = 64,
                   device: torch.device | str = "cpu", autocast=None) -> torch.Tensor:
    """The VQA model's own image vectors for every stored image (its `.backbone`): float32
    [N_images, D] pooled (or [N_images, R, D] regions), or float16 [N_images, cells, D] for a feature map (the
    15 x 15 x 1280 map of tf_efficientnet_lite0 at 480 px: 576,000 bytes an image, 458 MB for
    DAQUAR's 795; float32 would double it). Batches turn them back to float32. `autocast`: the
    run's precision, so that the vectors the head trains on are the ones predict computes."""
    return backbone_features(model.backbone, images_uint8, normalize, batch_size, device,
                             torch.float16 if isinstance(model.backbone, FeatureMap) else torch.float32, autocast)
