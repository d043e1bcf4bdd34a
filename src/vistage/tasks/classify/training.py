"""task: classify's training hooks (base.TaskTraining): rows are store images, a batch is their
pixels (or, while the backbone is frozen, its cached features) and their class indices."""

import time
from pathlib import Path

import numpy as np
import torch

from ... import feature_cache
from ...calibration import fit_temperature
from ...batches import (SampleTransformed, epoch_batches, resident_batches, resident_store, store_batches,
                        transformed_batches)
from ...data.split import load_split
from ...data.store import load_store
from ...errors import VistageError
from ...inference import predict_logits
from ...losses import LOSSES
from ...models import build_from_params, classifier
from ..base import TaskTraining


class ClassifyTraining(TaskTraining):
    def __init__(self, params, store_dir: Path, split_path: Path):
        self.store = load_store(store_dir)
        split = load_split(split_path)
        if len(split) != len(self.store.samples):
            raise VistageError(f"{split_path}: {len(split)} rows but the store has {len(self.store.samples)}; "
                               "rerun split")
        self.labels = self.store.samples["label"].to_numpy(dtype=np.int64)
        self.train_rows = split.loc[split["split"] == "train", "index"].to_numpy()
        self.val_rows = split.loc[split["split"] == "val", "index"].to_numpy()
        if len(self.train_rows) == 0:
            raise VistageError(f"{split_path}: no training images")
        if (self.labels[self.train_rows] < 0).any():
            raise VistageError(f"{split_path}: unlabeled images in the train split")
        self.train_images = self.train_rows
        self.num_classes = len(self.store.classes)
        self.per_sample: SampleTransformed | None = None  # the store through the per-sample augmentations
        self.resident: tuple[torch.Tensor, torch.Tensor] | None = None  # data_on_device: images and labels there
        self.features: feature_cache.FeatureCache | None = None  # the frozen backbone's, while it is frozen
        self.temperature: float | None = None  # calibrate: fitted on the last validation's logits

    def build(self, params):
        return build_from_params(params, self.num_classes), LOSSES.get(params.loss, "loss")(params)

    def setup(self, params, c) -> None:
        if c.plan.sample:
            self.per_sample = SampleTransformed(self.store.images, self.labels, c.plan.sample)
        if params.data_on_device and c.device.type == "cpu":  # known only now (device: auto)
            c.say("warning: params.yaml: data_on_device: true on the CPU only copies the store from its file "
                  "into memory, which saves no copies per batch; it is meant for a GPU", soft_wrap=True, markup=False)
        if params.data_on_device:
            self.resident = resident_store(self.store.images, self.labels, c.device)

    def head_on_features(self, params, c, frozen: bool):
        self.features = self._feature_cache(params, c) if frozen else None  # thawed: free it
        return classifier(c.model) if self.features is not None else None

    def _feature_cache(self, params, c) -> "feature_cache.FeatureCache | None":
        """The frozen backbone's features of the train and val images, computed once (feature_cache.py)."""
        if self.features is not None or not params.feature_cache:
            return self.features
        if why_not := feature_cache.why_not_cached(params, c.model):
            c.say(f"[dim]feature cache off: {why_not}[/]", soft_wrap=True)
            return None
        rows = np.concatenate([self.train_rows, self.val_rows])
        started = time.perf_counter()
        cache = feature_cache.compute_features(c.model, self.store.images, rows, c.normalize, params.batch_size * 2,
                                               c.device, c.precision.autocast(), flip="flip" in params.augment)
        mirrored = " and of their mirror images (augment: flip)" if cache.flipped is not None else ""
        cache.seconds = time.perf_counter() - started
        c.say(f"frozen backbone: features of {len(cache.rows)} images{mirrored} computed once in "
              f"{cache.seconds:.1f}s; the classifier trains on them", soft_wrap=True)
        return cache

    def head_data(self, params, with_val: bool = False):
        if self.features is None:
            return None
        from ...head_solve import HeadData

        cache, train, val = self.features, np.sort(self.train_rows), np.sort(self.val_rows)
        if with_val:
            train = np.sort(np.concatenate([train, val]))
        views = [cache.features] + ([cache.flipped] if cache.flipped is not None else [])
        device = cache.features.device
        # the solve trains on every cached view; it scores val on the views validate() averages
        return HeadData(torch.cat([cache.lookup(train, v) for v in views]),
                        torch.from_numpy(self.labels[train]).to(device).repeat(len(views)),
                        [cache.lookup(val, v) for v in (views if "flip" in params.tta else views[:1])],
                        torch.from_numpy(self.labels[val]).to(device), cache.seconds)

    def epoch_batches(self, params, generator, drop_last, rank, world):
        return epoch_batches(self.train_rows, params.batch_size, generator, drop_last, rank, world,
                             params.max_steps_per_epoch)

    def loader(self, batches, params, c, worker_seed, on_features):
        if on_features:
            return self.features.batches(self.labels, batches)
        if self.per_sample is None and self.resident is not None:
            return resident_batches(*self.resident, batches)
        if self.per_sample is None:
            return store_batches(self.store.images, self.labels, batches)
        return transformed_batches(self.per_sample, batches, params.num_workers, worker_seed)

    def validate(self, model, params, c) -> dict[str, float]:
        if self.features is not None and self.features.serves(params.tta):  # frozen backbone: cached features
            logits, rows = self.features.logits(model, self.val_rows, params.batch_size * 2, params.tta)
        else:
            logits, rows = predict_logits(model, self.store.images, self.val_rows, c.normalize, params.batch_size * 2,
                                          c.device, params.tta, c.precision, params.channels_last)
        y_val = torch.from_numpy(self.labels[rows])
        # fitted on every validation, so a checkpoint holds the temperature of the weights it holds
        self.temperature = fit_temperature(logits.numpy(), y_val.numpy()) if params.calibrate else None
        return {"val/loss": torch.nn.functional.cross_entropy(logits, y_val).item(),
                "val/acc": (logits.argmax(1) == y_val).float().mean().item()}

    def checkpoint_extra(self) -> dict:
        return {} if self.temperature is None else {"temperature": self.temperature}
