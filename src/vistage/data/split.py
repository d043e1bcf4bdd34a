"""Stratified, seeded train/val/test split of the prepared store.

- Predefined splits from the source are kept: images in a source's `test/` stay test. What the
  source does not define is carved from its train part (or from everything when it defines
  nothing), with `test_fraction` and `val_fraction` as shares of that pool.
- Groups (e.g. every question about one image) never straddle two splits.
- Every class lands in every carved split; a class with fewer than 2 images cannot, and is an
  error naming the class.
- Unlabeled images (label -1) get the split `unlabeled`: they are only predicted.
"""

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from ..errors import VistageError

SPLITS = ("train", "val", "test")


def _carve(idx: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int,
           what: str, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Split `idx` into (rest, held_out) with `fraction` held out, stratified by label."""
    if fraction == 0 or len(idx) == 0:
        return idx, idx[:0]
    n_out = int(round(fraction * len(idx)))
    counts = Counter(labels.tolist())
    if n_out < len(counts) or len(idx) - n_out < len(counts):
        raise VistageError(f"split: {what} fraction {fraction} of {len(idx)} images gives {n_out} images, "
                           f"fewer than the {len(counts)} classes; raise the fraction or add data")
    small = sorted(classes[c] for c, k in counts.items() if k < 2)
    if small:
        raise VistageError(f"split: class {small[0]!r} has fewer than 2 images, too few to stratify "
                           f"({len(small)} such class(es)); add images or remove the class")
    if groups is not None:
        # one fold of k holds out about 1/k of the groups, stratified as well as groups allow
        k = max(2, int(round(1 / fraction)))
        folds = StratifiedGroupKFold(n_splits=min(k, len(set(groups.tolist()))), shuffle=True, random_state=seed)
        rest_pos, held_pos = next(folds.split(idx, labels, groups))
        return np.sort(idx[rest_pos]), np.sort(idx[held_pos])
    rest, held = train_test_split(idx, test_size=n_out, stratify=labels, random_state=seed)
    return np.sort(rest), np.sort(held)


def split_table(samples: pd.DataFrame, classes: list[str], val_fraction: float, test_fraction: float,
                seed: int, min_classes: int = 2) -> pd.DataFrame:
    """Return a table (index, split). Same inputs and seed -> same table. `min_classes`: 1 for
    rows that are not classified (the questions of task: vqa, grouped by image)."""
    idx = samples["index"].to_numpy()
    labels = samples["label"].to_numpy()
    present = [classes[c] for c in np.unique(labels[labels >= 0])]
    if len(present) == 1 and min_classes > 1:  # none at all is an unlabeled set, to predict only
        raise VistageError(f"split: the data has 1 labeled class(es) {present}: a classifier needs at least 2 "
                           "(check data.path and the class folders or label column)")
    predefined = samples["split"].to_numpy() if "split" in samples else np.full(len(idx), "")
    grouped = "group" in samples and (samples["group"] != "").any()
    group_of = samples["group"].to_numpy() if grouped else None
    split = np.full(len(idx), "", dtype=object)
    split[labels < 0] = "unlabeled"
    for name in SPLITS:
        split[(predefined == name) & (labels >= 0)] = name
    # the pool to carve from: the source's train part, or everything it left unassigned
    pool_mask = (labels >= 0) & ((predefined == "") | (predefined == "train"))
    split[pool_mask] = ""
    pool = np.flatnonzero(pool_mask)

    def carve(positions, fraction, seed_, what):
        groups = group_of[positions] if grouped else None
        rest, held = _carve(positions, labels[positions], groups, fraction, seed_, what, classes)
        return rest, held

    if not (predefined == "test").any():
        pool, test = carve(pool, test_fraction, seed, "test")
        split[test] = "test"
    if not (predefined == "val").any():
        share = val_fraction / (1.0 - test_fraction) if val_fraction and not (predefined == "test").any() \
            else val_fraction
        pool, val = carve(pool, share, seed + 1, "val")
        split[val] = "val"
    split[pool] = "train"
    _check_classes_trained(split, labels, classes)
    return pd.DataFrame({"index": idx, "split": split})


def _check_classes_trained(split: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
    """A class with validation or test images but none to train on (predefined splits that do not
    match) could only ever be predicted wrong: stop and name it."""
    trained = labels[split == "train"]
    for name in ("val", "test"):
        untrained = sorted(classes[c] for c in np.setdiff1d(labels[split == name], trained))
        if untrained:
            raise VistageError(f"split: class {untrained[0]!r} has {name} images but no train images "
                               f"({len(untrained)} such class(es)); the source's predefined splits do not match")


def load_split(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise VistageError(f"{path}: missing; run `vistage split` first")
    try:
        table = pd.read_csv(path, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise VistageError(f"{path}: not a readable split table ({str(exc).splitlines()[0]}); rerun split") from None
    missing = [c for c in ("index", "split") if c not in table.columns]
    if missing:
        raise VistageError(f"{path}: not a split table (no column {', '.join(map(repr, missing))}); rerun split")
    return table


def split_counts(table: pd.DataFrame, samples: pd.DataFrame, classes: list[str]) -> dict:
    """Images per split and per class within each split (unlabeled images counted apart)."""
    joined = table.merge(samples[["index", "label"]], on="index")
    counts = {}
    for name in (*SPLITS, "unlabeled"):
        part = joined.loc[joined["split"] == name, "label"]
        if len(part) or name in SPLITS:
            per_class = part[part >= 0].value_counts().sort_index()
            counts[name] = {"images": int(len(part)), "per_class": {classes[c]: int(n) for c, n in per_class.items()}}
    return counts
