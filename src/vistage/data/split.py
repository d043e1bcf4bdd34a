"""Stratified, seeded train/val/test split of the prepared store."""

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from ..errors import VistageError

SPLITS = ("train", "val", "test")


def _carve(idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int, what: str, classes: list[str]):
    """Split `idx` into (rest, held_out) with `fraction` held out, stratified by label."""
    if fraction == 0 or len(idx) == 0:
        return idx, idx[:0]
    n_out = int(round(fraction * len(idx)))
    counts = Counter(labels.tolist())
    n_classes = len(counts)
    if n_out < n_classes or len(idx) - n_out < n_classes:
        raise VistageError(f"split: {what} fraction {fraction} of {len(idx)} images gives {n_out} images, "
                           f"fewer than the {n_classes} classes; raise the fraction or add data")
    small = [classes[c] for c, k in counts.items() if k < 2]
    if small:
        raise VistageError(f"split: class {small[0]!r} has fewer than 2 images, too few to stratify "
                           f"({len(small)} such class(es)); add images or remove the class")
    rest, held = train_test_split(idx, test_size=n_out, stratify=labels, random_state=seed)
    return np.sort(rest), np.sort(held)


def split_table(samples: pd.DataFrame, classes: list[str], val_fraction: float, test_fraction: float,
                seed: int) -> pd.DataFrame:
    """Return a table (index, split). Same inputs and seed -> same table."""
    labels = samples["label"].to_numpy()
    idx = samples["index"].to_numpy()
    train_val, test = _carve(idx, labels, test_fraction, seed, "test", classes)
    # val as a share of the whole data set, taken from what is left after test
    val_share = val_fraction / (1.0 - test_fraction) if val_fraction else 0.0
    lookup = dict(zip(idx, labels))
    tv_labels = np.array([lookup[i] for i in train_val])
    train, val = _carve(train_val, tv_labels, val_share, seed + 1, "val", classes)
    split = pd.Series("", index=idx)
    split[train], split[val], split[test] = "train", "val", "test"
    return pd.DataFrame({"index": idx, "split": split.to_numpy()})


def load_split(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise VistageError(f"{path}: missing; run `vistage split` first")
    return pd.read_csv(path)
