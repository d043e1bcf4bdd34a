"""The prepared store: every image decoded once, at the store's size, in a few files.

    images.npy    uint8 array (N, H, W, 3), read memory-mapped
    samples.csv   one row per image: index, id, label (class index, -1 if unlabeled), split, group
    classes.json  class names in label order, image size and source description

A handful of files rather than one per image keeps DVC hashing fast and training free of
decoding.
"""

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

from ..errors import VistageError
from ..io import atomic_dir
from .images import to_store_array
from .sources import SourceData

IMAGES, SAMPLES, CLASSES = "images.npy", "samples.csv", "classes.json"


@dataclass
class Store:
    images: np.ndarray  # (N, H, W, 3) uint8, memory-mapped
    samples: pd.DataFrame
    classes: list[str]

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])


def write_store(out_dir: str | Path, source: SourceData, image_size: int, policy: str = "crop") -> dict:
    """Decode every sample of `source` into a new store at `out_dir`; return data statistics."""
    class_index = {c: i for i, c in enumerate(source.classes)}
    n = len(source.samples)
    rows, sizes = [], Counter()
    with atomic_dir(out_dir) as tmp:
        images = np.lib.format.open_memmap(tmp / IMAGES, mode="w+", dtype=np.uint8,
                                           shape=(n, image_size, image_size, 3))
        with Progress(transient=True) as progress:
            task = progress.add_task("prepare: decoding", total=n)
            for i, sample in enumerate(source.samples):
                img = sample.load()
                sizes[f"{img.width}x{img.height}"] += 1
                images[i] = to_store_array(img, image_size, policy)
                label = -1 if sample.label is None else class_index[sample.label]
                rows.append((i, sample.id, label, sample.split or "", sample.group or ""))
                progress.advance(task)
        images.flush()
        del images
        table = pd.DataFrame(rows, columns=["index", "id", "label", "split", "group"])
        table.to_csv(tmp / SAMPLES, index=False)
        (tmp / CLASSES).write_text(json.dumps({"classes": source.classes, "image_size": image_size,
                                               "source": source.description}, indent=2) + "\n")
    counts = Counter(table["label"].tolist())
    return {
        "images": n,
        "classes": len(source.classes),
        "image_size": image_size,
        "per_class": {c: counts.get(i, 0) for c, i in class_index.items()},
        "sizes_seen": dict(sizes.most_common(10)),
        "skipped": [],
    }


def load_store(store_dir: str | Path) -> Store:
    store_dir = Path(store_dir)
    for name in (IMAGES, SAMPLES, CLASSES):
        if not (store_dir / name).is_file():
            raise VistageError(f"{store_dir / name}: missing; run `vistage prepare` first")
    images = np.load(store_dir / IMAGES, mmap_mode="r")
    samples = pd.read_csv(store_dir / SAMPLES, keep_default_na=False, dtype={"id": str, "split": str, "group": str})
    meta = json.loads((store_dir / CLASSES).read_text())
    if len(samples) != len(images):
        raise VistageError(f"{store_dir}: {len(images)} images but {len(samples)} rows in {SAMPLES}; rerun prepare")
    return Store(images, samples, meta["classes"])
