"""Transfer on cached frozen features against a linear probe, on the same images and splits.

Linear probe: scikit-learn's LogisticRegression on the frozen backbone's features (the pooled
pre-logits of tf_efficientnet_lite0 with its packaged ImageNet weights), C chosen on the val
split. vistage: the train stage's loop with recipes/pets-transfer.yaml's params (its data block
aside): `freeze_epochs` epochs of the classifier on cached features (the feature cache: seconds),
then every layer fine-tuned; its best-by-val checkpoint scored on the test split as the predict
stage scores it. By default on 5 stratified folds, each the test split once and the next one
validation, so every image is scored once by a model that never saw it.

    python bench/transfer.py [--data ../shared/datasets/oxford-pets-sample.tar] [--size 224]
        [--folds 5] [-S freeze_epochs=30] [-S epochs=34] ...

Prints test accuracy of both per fold and pooled over every test image, and the time each took.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
PETS = ROOT.parent / "shared" / "datasets" / "oxford-pets-sample.tar"
# the recipe's training params (its data block aside: the bench makes its own splits)
RECIPE = {k: v for k, v in yaml.safe_load((ROOT / "recipes" / "pets-transfer.yaml").read_text()).items() if k != "data"}


def prepare(data: str, size: int, work: Path) -> "Store":
    from vistage.data.sources import load_source
    from vistage.data.store import load_store, write_store
    from vistage.params import DataParams

    write_store(work / "prepared", load_source(DataParams(source="folder", path=data)), size)
    return load_store(work / "prepared")


def fold_tables(store, folds: int, val: float, test: float) -> list:
    """The split tables to score on. folds > 1: stratified folds, each the test split once, the next
    one validation, the rest training, so every image is scored once on a model that never saw it
    (on a 370-image sample one test split of 74 moves 1.4 points per image). folds 1: one
    stratified split of `val` and `test` shares."""
    from sklearn.model_selection import StratifiedKFold

    from vistage.data.split import split_table

    if folds <= 1:
        return [split_table(store.samples, store.classes, val, test, 0)]
    labels = store.samples["label"].to_numpy()
    parts = [test for _, test in StratifiedKFold(folds, shuffle=True, random_state=0).split(labels, labels)]
    tables = []
    for k in range(folds):
        table = store.samples[["index"]].copy()
        table["split"] = "train"
        table.loc[table["index"].isin(parts[k]), "split"] = "test"
        table.loc[table["index"].isin(parts[(k + 1) % folds]), "split"] = "val"
        tables.append(table)
    return tables


def probe_features(store, params):
    """The frozen backbone's features of every image, once for all folds (FeatureCache)."""
    from vistage.batches import Normalizer
    from vistage.feature_cache import compute_features
    from vistage.models import build_from_params
    from vistage.training import _normalization

    model = build_from_params(params, len(store.classes))
    rows = store.samples["index"].to_numpy()
    mean, std = _normalization(params, model, store.images, rows)  # a pretrained model's own
    return compute_features(model, store.images, rows, Normalizer(mean, std, "cpu"), 64, torch.device("cpu"))


def linear_probe(cache, labels: np.ndarray, table) -> dict:
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    rows = {name: np.sort(table.loc[table["split"] == name, "index"].to_numpy()) for name in ("train", "val", "test")}
    feats = {name: cache.lookup(r).numpy() for name, r in rows.items()}
    ys = {name: labels[r] for name, r in rows.items()}
    best = (-1.0, None)
    for c in (0.01, 0.1, 1.0, 10.0):
        clf = LogisticRegression(C=c, max_iter=3000).fit(feats["train"], ys["train"])
        best = max(best, (clf.score(feats["val"], ys["val"]), c), key=lambda t: t[0])
    clf = LogisticRegression(C=best[1], max_iter=3000).fit(feats["train"], ys["train"])
    return {"test_acc": clf.score(feats["test"], ys["test"]), "val_acc": best[0], "C": best[1],
            "seconds": time.perf_counter() - started}


def vistage_transfer(work: Path, store_dir: Path, params) -> dict:
    from vistage.data.store import load_store
    from vistage.evaluation import classification_metrics, predict_splits
    from vistage.inference import TrainedModel
    from vistage.training import TrainPaths, train

    started = time.perf_counter()
    result = train(params, TrainPaths(store_dir, work / "split.csv", work / "models", work / "live"))
    seconds = time.perf_counter() - started
    checkpoint = work / "models" / "best.pt"
    pred = predict_splits(TrainedModel(checkpoint, torch.device("cpu")), load_store(store_dir), work / "split.csv",
                          checkpoint, store_dir)
    return {"test_acc": classification_metrics(pred.of("test"))["accuracy"], "val_acc": result["best_val_acc"],
            "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(PETS))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--folds", type=int, default=5, help="stratified folds, each the test split once (1: one split)")
    ap.add_argument("--val", type=float, default=0.2, help="with --folds 1")
    ap.add_argument("--test", type=float, default=0.2, help="with --folds 1")
    ap.add_argument("-S", dest="overrides", action="append", default=[], help="key=value on top of the recipe")
    args = ap.parse_args()
    from vistage.params import Params

    overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.overrides)}
    params = Params.model_validate({**RECIPE, **overrides, "device": "cpu"})
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        store = prepare(args.data, args.size, Path(tmp))
        started = time.perf_counter()
        cache = probe_features(store, params)
        print(f"  probe features of {len(cache.rows)} images: {time.perf_counter() - started:.0f}s", flush=True)
        labels = store.samples["label"].to_numpy()
        for k, table in enumerate(fold_tables(store, args.folds, args.val, args.test)):
            work = Path(tmp) / f"fold{k}"
            work.mkdir()
            table.to_csv(work / "split.csv", index=False)
            probe = linear_probe(cache, labels, table)
            ours = vistage_transfer(work, Path(tmp) / "prepared", params)
            n_test = int((table["split"] == "test").sum())
            print(f"  fold {k}: {n_test} test images: probe {probe['test_acc']:.4f} (C={probe['C']}), "
                  f"vistage {ours['test_acc']:.4f}", flush=True)
            results.append((n_test, probe, ours))
    n = sum(r[0] for r in results)

    def pooled(i: int, key: str) -> float:  # over every test image once
        return sum(r[0] * r[i][key] for r in results) / n

    print(f"{args.data}: {len(store.samples)} images, {len(store.classes)} classes, {args.size} px, "
          f"{len(results)} fold(s), {n} test images scored")
    print(f"  linear probe (LogisticRegression, C on val)  test {pooled(1, 'test_acc'):.4f}  "
          f"val {pooled(1, 'val_acc'):.4f}  {sum(r[1]['seconds'] for r in results):.0f}s")
    print(f"  vistage two-stage on cached features        test {pooled(2, 'test_acc'):.4f}  "
          f"val {pooled(2, 'val_acc'):.4f}  {sum(r[2]['seconds'] for r in results):.0f}s")
    print("  params: " + " ".join(f"{k}={v}" for k, v in {**RECIPE, **overrides}.items()))


if __name__ == "__main__":
    main()
