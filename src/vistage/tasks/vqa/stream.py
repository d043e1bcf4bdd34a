"""Answering questions in bounded memory, however many there are: each image encoded once.

The question rows are ordered by image; the images are taken a chunk at a time (at most
features.IMAGE_PIXELS pixels a chunk: 8 photos at 480 px), the image encoder runs once over a
chunk (once per test-time view), and the chunk's questions are then answered in batches of
`batch_size` from those features. What is held at any time: the model, one chunk of images with
their features, one batch of questions, and per question only its top answer and confidence.

Why not the training's validation loop (VqaTraining.logits), which predict used before: its
batches are of questions, and every image of a batch goes through the encoder together, so a
batch of 256 questions could put 256 photos of 480 px through it at once (gigabytes of
activations: predict of 5,673 DAQUAR questions peaked at 16.5 GB, most of its time in the kernel
mapping and unmapping that memory), and an image whose questions fell into two batches was
encoded twice.
"""

from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from .features import heap_kept_between_chunks, image_chunk_size


def read_images(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """images[rows], copied. From a memory-mapped store through a mapping of its own, dropped at
    once: the pages read leave this process's resident memory with it (a test set of 8,000 photos
    at 480 px is 5.5 GB of pixels; read through one long-lived mapping it would all stay resident)."""
    if isinstance(images, np.memmap) and images.filename:
        mapped = np.memmap(images.filename, images.dtype, "r", images.offset, images.shape)
        try:
            return np.ascontiguousarray(mapped[rows])
        finally:
            del mapped
    return np.ascontiguousarray(images[rows])


@torch.no_grad()
def answer_questions(model: nn.Module, task, rows: np.ndarray, batch_size: int, device: torch.device, normalize,
                     precision=None, tta=(), channels_last: bool = False, image_chunk: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(answer index, its softmax probability) for each question row of `rows`, in that order.

    `task`: a VqaTraining (its store's images, `image_of`, encoded questions and `forward`); the
    model runs in eval mode, in `precision` and `channels_last` as it was validated, its logits
    averaged over the test-time views `tta` (training.tta_views) as validation does."""
    rows = np.asarray(rows, dtype=np.int64)
    model.eval()
    image_of = task.image_of[rows]
    order = np.argsort(image_of, kind="stable")  # positions in `rows`, grouped by image
    images, first = np.unique(image_of[order], return_index=True)  # each image and its first position
    bounds = np.append(first, len(rows))
    chunk = image_chunk or image_chunk_size(int(task.store.images.shape[1]))
    top, confidence = np.zeros(len(rows), np.int64), np.zeros(len(rows), np.float32)
    with heap_kept_between_chunks():
        for start in range(0, len(images), chunk):
            chunk_images = images[start:start + chunk]
            views = encode_images(model, read_images(task.store.images, chunk_images), normalize, device, precision,
                                  tta, channels_last)
            positions = order[bounds[start]:bounds[min(start + chunk, len(images))]]
            for b in range(0, len(positions), batch_size):
                at = positions[b:b + batch_size]
                local = torch.from_numpy(np.searchsorted(chunk_images, image_of[at]))  # which chunk image is whose
                logits = answer_logits(model, task, views, rows[at], local, device, precision)
                conf, ids = logits.softmax(1).max(1)
                top[at], confidence[at] = ids.numpy(), conf.numpy()
    return top, confidence


def encode_images(model: nn.Module, pixels: np.ndarray, normalize, device: torch.device, precision=None, tta=(),
                  channels_last: bool = False) -> list[tuple[float, torch.Tensor]]:
    """(weight, the image encoder's output) of each test-time view of uint8 NHWC `pixels`."""
    from .training import tta_views

    x = normalize(torch.from_numpy(pixels).to(device))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with precision.autocast() if precision is not None else nullcontext():
        return [(weight, model.image_features(view(x))) for weight, view in tta_views(tta)]


def answer_logits(model: nn.Module, task, views: list[tuple[float, torch.Tensor]], rows: np.ndarray,
                  image_index: torch.Tensor, device: torch.device, precision=None) -> torch.Tensor:
    """Float32 logits on the CPU of the question rows `rows`, each about the chunk image
    `image_index` says, averaged over the views' features with their weights."""
    inputs = {**task.inputs(rows), "image_index": image_index}
    with precision.autocast() if precision is not None else nullcontext():
        out = sum(weight * task.forward(model, features, inputs, device).float() for weight, features in views)
    return out.cpu()
