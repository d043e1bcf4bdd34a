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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import VistageError
from ..io import atomic_dir
from .decode import decode_all, default_workers
from .sources import SourceData

IMAGES, SAMPLES, CLASSES = "images.npy", "samples.csv", "classes.json"
SHOWN_BAD = 3  # bad files named in the error line


@dataclass
class Store:
    images: np.ndarray  # (N, H, W, 3) uint8, memory-mapped
    samples: pd.DataFrame
    classes: list[str]

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])


def bad_image_error(bad: list[tuple[str, str]], stage: str = "prepare",
                    listed: str = "; prepare lists them in its data statistics", kind: str = "image") -> VistageError:
    """`prepare: 2 bad image(s): a.png (why); ...` (kind: what the entries are, e.g. question)."""
    first = "; ".join(f"{name} ({why})" for name, why in bad[:SHOWN_BAD])
    return VistageError(f"{stage}: {len(bad)} bad {kind}(s): {first}{' ...' if len(bad) > SHOWN_BAD else ''} "
                        f"(set data.on_bad_image: skip to leave them out{listed})")


def decode_into(images: np.ndarray, samples: list, reader, policy: str, workers: int, stage: str = "prepare"
                ) -> tuple[np.ndarray, Counter, list[tuple[str, str]]]:
    """Decode every sample into `images` (a memory-mapped N x size x size x 3 array), with a
    progress bar: (which rows decoded, image sizes seen, bad files with the reason)."""
    ok, sizes, bad = np.zeros(len(samples), dtype=bool), Counter(), []
    columns = [TextColumn(f"{stage}: decoding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("decode", total=len(samples))
        # a memory-mapped file: the decoding workers write their rows into it themselves
        into = (str(images.filename), images.offset, images[0].nbytes) if isinstance(images, np.memmap) and len(
            images) else None
        for i, arr, seen, error in decode_all(reader.payloads(samples), images.shape[1], policy, workers,
                                              lambda k: progress.advance(task, k), into):
            if error:
                bad.append((samples[i].id, error))
                continue
            if arr is not None:
                images[i] = arr
            ok[i] = True
            sizes[seen] += 1
    return ok, sizes, bad


def write_store(out_dir: str | Path, source: SourceData, image_size: int, policy: str = "crop",
                on_bad_image: str = "error", workers: int | None = None, extra=None) -> dict:
    """Decode every sample of `source` into a new store at `out_dir`; return data statistics.

    The old store is replaced only when the new one is complete (and not at all on error).
    `extra(folder, samples_table)`, if given, writes more files into the new store before it
    replaces the old one (the questions of task: vqa)."""
    samples = source.samples
    n = len(samples)
    bad = list(source.bad)
    if bad and on_bad_image == "error":
        raise bad_image_error(bad)  # refused while listing: stop before decoding anything
    with atomic_dir(out_dir) as tmp:
        images = np.lib.format.open_memmap(tmp / "decoded.npy", mode="w+", dtype=np.uint8,
                                           shape=(n, image_size, image_size, 3))
        ok, sizes, decode_bad = decode_into(images, samples, source.reader, policy, workers or default_workers())
        bad += decode_bad
        if bad and on_bad_image == "error":
            bad.sort(key=lambda b: b[0])
            raise bad_image_error(bad)
        keep = np.flatnonzero(ok)
        if len(keep) == 0:
            raise VistageError(f"prepare: no usable images in {source.description}")
        if len(keep) < n:  # skipped files: compact the array, chunk by chunk
            final = np.lib.format.open_memmap(tmp / IMAGES, mode="w+", dtype=np.uint8,
                                              shape=(len(keep), image_size, image_size, 3))
            for start in range(0, len(keep), 4096):
                final[start:start + 4096] = images[keep[start:start + 4096]]
            final.flush()
            del final, images
            (tmp / "decoded.npy").unlink()
        else:
            images.flush()
            del images
            (tmp / "decoded.npy").rename(tmp / IMAGES)
        class_index = {c: i for i, c in enumerate(source.classes)}
        kept = [samples[i] for i in keep]
        table = pd.DataFrame({
            "index": np.arange(len(kept)),
            "id": [s.id for s in kept],
            "label": [-1 if s.label is None else class_index[s.label] for s in kept],
            "split": [s.split or "" for s in kept],
            "group": [s.group or "" for s in kept],
        })
        table.to_csv(tmp / SAMPLES, index=False)
        if extra is not None:
            extra(tmp, table)
        (tmp / CLASSES).write_text(json.dumps({"classes": source.classes, "image_size": image_size,
                                               "source": source.description}, indent=2) + "\n")
    return data_stats(table, source.classes, image_size, sizes, bad)


def data_stats(table: pd.DataFrame, classes: list[str], image_size: int, sizes: Counter,
               bad: list[tuple[str, str]]) -> dict:
    by_split = {}
    for split, part in table.groupby("split"):
        counts = Counter(part["label"].tolist())
        by_split[split or "unassigned"] = {c: counts.get(i, 0) for i, c in enumerate(classes)}
    counts = Counter(table["label"].tolist())
    return {
        "images": int(len(table)),
        "classes": len(classes),
        "unlabeled": int(counts.get(-1, 0)),
        "image_size": image_size,
        "per_class": {c: counts.get(i, 0) for i, c in enumerate(classes)},
        "per_predefined_split": by_split,
        "sizes_seen": dict(sizes.most_common(20)),
        "distinct_sizes": len(sizes),
        "skipped": [{"file": name, "reason": why} for name, why in sorted(bad)],
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
