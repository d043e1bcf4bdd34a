"""Real data sets from ../shared/datasets, read straight from their archives (skipped when absent)."""

import tarfile

import numpy as np
import pandas as pd
import pytest

from vistage.data.sources import load_source
from vistage.data.split import split_table
from vistage.data.store import load_store, write_store
from vistage.params import DataParams

from .conftest import SHARED_DATASETS

pytestmark = [pytest.mark.shared, pytest.mark.slow,
              pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason="../shared/datasets is not here")]


def test_cifar10_all_50000_from_the_archive(tmp_path):
    source = load_source(DataParams(source="folder", path=str(SHARED_DATASETS / "cifar10-train.tar")))
    stats = write_store(tmp_path / "store", source, 32)
    store = load_store(tmp_path / "store")
    assert stats["images"] == 50_000 and stats["sizes_seen"] == {"32x32": 50_000}
    assert stats["per_class"] == {c: 5000 for c in store.classes} and len(store.classes) == 10
    assert set(store.samples["split"]) == {"train"}  # the archive's train/ part
    split = split_table(store.samples, store.classes, 0.1, 0.1, 0)
    assert split["split"].value_counts().to_dict() == {"train": 40_000, "val": 5_000, "test": 5_000}
    # a JPEG of CIFAR decoded at its own size keeps its pixels: compare one with PIL directly
    from PIL import Image

    with tarfile.open(SHARED_DATASETS / "cifar10-train.tar") as tar:
        member = tar.getmember(store.samples["id"].iloc[123])
        direct = np.asarray(Image.open(tar.extractfile(member)).convert("RGB"))
    assert np.array_equal(store.images[123], direct)


def test_tiny_imagenet_through_a_csv(tmp_path):
    """Build a CSV from the Tiny ImageNet folder, as a user with a label file would have."""
    with tarfile.open(SHARED_DATASETS / "tiny-imagenet-200-train.tar") as tar:
        tar.extractall(tmp_path, filter="data")
    images = sorted(tmp_path.rglob("*.JPEG"))
    root = next(tmp_path.rglob("train")).parent
    rows = [{"file": p.relative_to(root).as_posix(), "wnid": p.parent.parent.name} for p in images]
    csv = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    dp = DataParams(source="csv", path=str(csv), root=str(root), csv_path_column="file",
                    csv_label_column="wnid", image_size=64)
    stats = write_store(tmp_path / "store", load_source(dp), 64)
    assert stats["images"] == 10_000 and stats["classes"] == 200 and stats["skipped"] == []
    assert set(stats["per_class"].values()) == {50}
    store = load_store(tmp_path / "store")
    grey = store.images[:, :, :, 0].astype(int) - store.images[:, :, :, 1]
    # the subset holds 194 grayscale (mode L) JPEGs: they become RGB with three equal channels
    assert (np.abs(grey).reshape(len(grey), -1).max(1) == 0).sum() >= 194
    split = split_table(store.samples, store.classes, 0.2, 0.0, 0)
    counts = split.merge(store.samples[["index", "label"]], on="index").groupby(["split", "label"]).size()
    assert set(counts["val"].tolist()) == {10} and set(counts["train"].tolist()) == {40}


@pytest.mark.parametrize("policy", ["crop", "pad"])
def test_oxford_pets_large_jpegs_resized(tmp_path, policy):
    dp = DataParams(source="folder", path=str(SHARED_DATASETS / "oxford-pets-sample.tar"), image_size=96,
                    resize=policy)
    stats = write_store(tmp_path / "store", load_source(dp), 96, policy)
    assert stats["images"] == 370 and stats["classes"] == 37
    assert set(stats["per_class"].values()) == {10}
    assert stats["distinct_sizes"] > 20 and "500x375" in stats["sizes_seen"]
    store = load_store(tmp_path / "store")
    assert store.images.shape == (370, 96, 96, 3) and store.images.mean() > 20
