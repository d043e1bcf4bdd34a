"""Batches straight from the prepared store.

The store holds decoded uint8 pixels at the training size, so a batch is one fancy-index
into a memory-mapped array, one copy to the device, and a cast: no decoding, no resizing, no
worker processes. Normalisation (and the batched augmentations) then run on the device.
"""

from collections.abc import Iterator

import numpy as np
import torch


class Normalizer:
    """uint8 NHWC batch (on the device) -> normalised float NCHW, resized to `size` if given.

    Resizing here, batched on the device, is how a 32 px store feeds a model pretrained at
    224 px (recipe R3) without a 49x larger store or per-image CPU resizing.
    """

    def __init__(self, mean, std, device: torch.device, size: int | None = None):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.size = size

    def __call__(self, x_uint8_nhwc: torch.Tensor) -> torch.Tensor:
        x = x_uint8_nhwc.permute(0, 3, 1, 2).float().div_(255.0)
        return resize_batch((x - self.mean) / self.std, self.size)


def resize_batch(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """A normalised NCHW batch resized to size x size (bilinear; antialiased when shrinking); as it
    is when `size` is None or already its size. The exported models run this too (export.py)."""
    if size and x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=x.shape[-1] > size)
    return x


def channel_stats(images: np.ndarray, index: np.ndarray, values: int = 1 << 25) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the images at `index`, in [0, 1] units, read in chunks of about
    `values` pixel values (256 MB in float64; 4,096 photos of 480 px at once took 8.6 GB)."""
    chunk = max(1, values // max(1, int(np.prod(images.shape[1:]))))
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
    return store_batches(images, labels, epoch_batches(index, batch_size, generator, drop_last, shuffle=shuffle))


def epoch_batches(index: np.ndarray, batch_size: int, generator: torch.Generator | None, drop_last: bool,
                  rank: int = 0, world: int = 1, max_steps: int = 0, shuffle: bool = True) -> list[np.ndarray]:
    """One epoch's shuffled batches of store rows, as this process's share.

    Every process draws the same global order from the same seeded generator and takes every
    `world`-th row of each global batch, so N processes together see exactly the batches one
    process would: DDP's averaged gradient is the single-process gradient (BatchNorm statistics
    aside), and `batch_size` means the same thing on one device or eight. Rows within a batch are
    sorted: sorted reads are kinder to the page cache, and the labels follow the images.
    """
    order = index[torch.randperm(len(index), generator=generator).numpy()] if shuffle else index
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    batches = [np.sort(order[s:s + batch_size][rank::world]) for s in range(0, stop, batch_size)]
    return batches[:max_steps] if max_steps else batches


def store_batches(images: np.ndarray, labels: np.ndarray,
                  batches: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
    """The worker-free path: one fancy-index read of the memory-mapped store per batch."""
    for batch in batches:
        yield torch.from_numpy(np.ascontiguousarray(images[batch])), torch.from_numpy(labels[batch]), batch


def resident_store(images: np.ndarray, labels: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """data_on_device: the whole store copied to the device once, as uint8 (4x smaller than float)."""
    return torch.from_numpy(np.array(images)).to(device), torch.from_numpy(np.array(labels)).to(device)  # copies: writable


def resident_batches(images: torch.Tensor, labels: torch.Tensor,
                     batches: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
    """Batches indexed on the device from `resident_store`: no host-to-device copy per batch."""
    for batch in batches:
        idx = torch.from_numpy(batch).to(images.device, non_blocking=True)
        yield images[idx], labels[idx], batch


class SampleTransformed(torch.utils.data.Dataset):
    """Store images through per-sample transforms: item i -> (uint8 HWC image, label, i)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        chw = torch.from_numpy(np.array(self.images[i])).permute(2, 0, 1)  # a writable copy of the memmap row
        # back to HWC so a batch looks exactly like one from store_batches
        return self.transform(chw).permute(1, 2, 0).contiguous(), int(self.labels[i]), i


def _seed_worker(worker_id: int) -> None:
    # the DataLoader seeds torch per worker from its generator; python's and numpy's RNGs it does not
    import random

    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def _collate(items):
    images, labels, rows = zip(*items)
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64), np.asarray(rows)


def transformed_batches(dataset: SampleTransformed, batches: list[np.ndarray], num_workers: int,
                        seed: int) -> torch.utils.data.DataLoader:
    """Per-sample augmentations in `num_workers` processes, in the order of `batches`.

    The worker RNGs derive from `seed` only (the caller mixes in epoch and rank), so a resumed
    run draws the same augmentations as an uninterrupted one with the same `num_workers`.
    """
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_sampler=[b.tolist() for b in batches], num_workers=num_workers,
                      collate_fn=_collate, worker_init_fn=_seed_worker,
                      generator=torch.Generator().manual_seed(seed), pin_memory=torch.cuda.is_available(),
                      prefetch_factor=4 if num_workers else None, persistent_workers=False)
