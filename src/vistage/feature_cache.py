"""Frozen-backbone feature cache: run a frozen backbone once, then train the classifier on its output.

With `freeze: backbone` the backbone is in eval mode and its weights do not change, so without
augmentation every epoch feeds the classifier exactly the same features: computing them once,
before the first frozen epoch, gives the same training at a fraction of the cost (at 224 px on a
2-core CPU the backbone runs at tens of images/s; the classifier on cached features at hundreds
of thousands). Validation reuses them too. A two-stage run (`freeze_epochs`) uses the cache for
its frozen epochs and then fine-tunes through the whole model as usual; the cache lives in
memory for the run only, so it is never stale.

A model splits into backbone and classifier when it is a timm model (`forward_features` +
`forward_head(pre_logits=True)`, then `get_classifier()`) or has `features` and `head` modules
(vistage's own models): `classifier(features(x)) == model(x)` in eval mode (tests check it).
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .batches import Normalizer, iterate_batches
from .models import classifier


def backbone_of(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The function image batch -> the features the classifier takes; None for a layout we do
    not know (the run then trains through the whole model, uncached)."""
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):  # timm
        return lambda x: model.forward_head(model.forward_features(x), pre_logits=True)
    if isinstance(getattr(model, "features", None), nn.Module) and isinstance(getattr(model, "head", None), nn.Module):
        return model.features
    return None


CACHEABLE_AUGMENT = {"flip"}  # an image has two flip views: both are cached, one drawn per image and epoch


def why_not_cached(params, model: nn.Module) -> str | None:
    """Why a frozen epoch of this run cannot train on cached features (None: it can)."""
    if other := [a for a in params.augment if a not in CACHEABLE_AUGMENT]:
        return f"augment: {other} changes the images every epoch"
    if params.devices > 1:
        return "devices > 1 (each process would compute its own)"
    if backbone_of(model) is None:
        return f"model {params.model!r} does not split into backbone and classifier"
    return None


@dataclass
class FeatureCache:
    """The frozen backbone's features of the train and validation rows, in store-row order."""

    rows: np.ndarray  # sorted store rows covered
    features: torch.Tensor  # (len(rows), dim), float32 on the training device
    flipped: torch.Tensor | None = None  # the same of the mirrored images (augment: [flip]), else None
    seconds: float = 0.0  # how long computing them took (the run's time split: features, head, fine-tuning)

    def lookup(self, store_rows: np.ndarray, of: torch.Tensor | None = None) -> torch.Tensor:
        of = self.features if of is None else of
        return of[torch.from_numpy(np.searchsorted(self.rows, store_rows)).to(of.device)]

    def batches(self, labels: np.ndarray, batches: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor,
                                                                                   np.ndarray]]:
        """(features, labels, rows) per batch of store rows: what the training loop feeds the
        classifier. With flipped views, each image's is drawn with probability 1/2, as the batch
        `flip` augmentation draws (same RNG)."""
        for batch in batches:
            x = self.lookup(batch)
            if self.flipped is not None:
                mask = (torch.rand(len(batch)) < 0.5).to(x.device)[:, None]
                x = torch.where(mask, self.lookup(batch, self.flipped), x)
            yield x, torch.from_numpy(labels[batch]), batch

    @torch.no_grad()
    def logits(self, model: nn.Module, store_rows: np.ndarray, batch_size: int,
               tta=()) -> tuple[torch.Tensor, np.ndarray]:
        """The classifier's logits (on the CPU) for `store_rows`, in sorted row order, as
        inference.predict_logits returns them; `tta: [flip]` averages them with the mirrored
        images' (needs the flipped views)."""
        head = classifier(model)
        was_training = head.training
        head.eval()
        rows = np.asarray(store_rows)
        views = [self.features] + ([self.flipped] if "flip" in tta else [])
        out = [sum(head(self.lookup(rows[s:s + batch_size], of)).float() for of in views).cpu() / len(views)
               for s in range(0, len(rows), batch_size)]
        head.train(was_training)
        return (torch.cat(out) if out else torch.zeros(0, 0)), rows

    def serves(self, tta) -> bool:
        """Whether validation with these test-time views can run on the cache."""
        return set(tta) <= ({"flip"} if self.flipped is not None else set())


@torch.no_grad()
def backbone_features(backbone: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray, rows: np.ndarray,
                      normalize: Callable[[torch.Tensor], torch.Tensor], batch_size: int, device: torch.device,
                      autocast=None, progress: Callable[[int], None] = lambda n: None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """backbone(normalize(batch)) over the store rows `rows`, in that order, as `dtype` on `device`:
    [len(rows), D] (or [len(rows), R, D] for region vectors, VQA's image_grid and feature maps, kept
    in float16 to halve their memory). The one place a frozen backbone runs over a store: the
    classifier's cache below and VQA's (vqa/features.py)."""
    parts = []
    dummy = np.zeros(len(images), dtype=np.int64)
    for x, _, _ in iterate_batches(images, dummy, np.asarray(rows), batch_size, shuffle=False):
        with autocast or torch.autocast(device.type, enabled=False):
            parts.append(backbone(normalize(x.to(device, non_blocking=True))).to(dtype))
        progress(len(x))
    return torch.cat(parts) if parts else torch.zeros(0, 0, device=device)


def compute_features(model: nn.Module, images: np.ndarray, rows: np.ndarray, normalize: Normalizer,
                     batch_size: int, device: torch.device, autocast=None,
                     progress: Callable[[int], None] = lambda n: None, flip: bool = False) -> FeatureCache:
    """Run the backbone (in eval mode: BatchNorm's running statistics, no dropout) once over the
    store rows `rows`; with `flip`, once more over the mirrored images."""
    was_training = model.training
    model.eval()
    rows = np.unique(rows)
    backbone = backbone_of(model)
    try:
        features = backbone_features(backbone, images, rows, normalize, batch_size, device, autocast, progress)
        flipped = None if not flip else backbone_features(lambda x: backbone(x.flip(-1)), images, rows, normalize,
                                                          batch_size, device, autocast, progress)
    finally:
        model.train(was_training)
    return FeatureCache(rows, features, flipped)
