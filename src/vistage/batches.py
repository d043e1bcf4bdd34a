"""Batches straight from the prepared store.

The store holds decoded uint8 pixels at the training size, so a batch is one fancy-index
into a memory-mapped array, one copy to the device, and a cast: no decoding, no resizing, no
worker processes. Normalisation (and the batched augmentations) then run on the device.
"""

from collections.abc import Iterator

import numpy as np
import torch


class Normalizer:
    def __init__(self, mean, std, device: torch.device):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def __call__(self, x_uint8_nhwc: torch.Tensor) -> torch.Tensor:
        x = x_uint8_nhwc.permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self.mean) / self.std


def channel_stats(images: np.ndarray, index: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the images at `index`, in [0, 1] units, read in chunks."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for start in range(0, len(index), chunk):
        x = images[np.sort(index[start:start + chunk])].astype(np.float64) / 255.0
        total += x.sum(axis=(0, 1, 2))
        total_sq += (x ** 2).sum(axis=(0, 1, 2))
        count += x.shape[0] * x.shape[1] * x.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 1e-12))
    return mean.round(6).tolist(), np.maximum(std, 1e-3).round(6).tolist()


def iterate_batches(images: np.ndarray, labels: np.ndarray, index: np.ndarray, batch_size: int,
                    shuffle: bool, generator: torch.Generator | None = None,
                    drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
    """Yield (uint8 NHWC images, int64 labels, store indices) on the CPU."""
    order = index[torch.randperm(len(index), generator=generator).numpy()] if shuffle else index
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        batch = order[start:start + batch_size]
        # sorted reads are kinder to the page cache; the label order follows the images
        batch = np.sort(batch)
        yield torch.from_numpy(np.ascontiguousarray(images[batch])), torch.from_numpy(labels[batch]), batch
