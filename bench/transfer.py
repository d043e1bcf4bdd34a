"""Transfer on cached frozen features against a linear probe, on the same images and split.

Linear probe: scikit-learn's LogisticRegression on the frozen backbone's features (the pooled
pre-logits of tf_efficientnet_lite0 with its packaged ImageNet weights), C chosen on the val
split. vistage: the train stage's loop, two-stage: `freeze_epochs` epochs of the classifier on
cached features (the feature cache: seconds), then every layer fine-tuned; its best-by-val
checkpoint scored on the test split as the predict stage scores it.

    python bench/transfer.py [--data ../shared/datasets/oxford-pets-sample.tar] [--size 224]
        [-S freeze_epochs=30] [-S epochs=34] ...

Prints test accuracy of both and the time each took.
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
RECIPE = dict(model="tf_efficientnet_lite0", pretrained=True, freeze="backbone", freeze_epochs=30, epochs=34,
              backbone_lr_scale=0.1, optimizer="adamw", lr=0.003, weight_decay=0.01, scheduler="cosine",
              warmup_epochs=0, batch_size=32, augment=[], label_smoothing=0.1)


def prepare(data: str, size: int, work: Path, val: float, test: float):
    from vistage.data.sources import load_source
    from vistage.data.split import split_table
    from vistage.data.store import load_store, write_store
    from vistage.params import DataParams

    write_store(work / "prepared", load_source(DataParams(source="folder", path=data)), size)
    store = load_store(work / "prepared")
    table = split_table(store.samples, store.classes, val, test, 0)
    table.to_csv(work / "split.csv", index=False)
    return store, table


def linear_probe(store, table, params) -> dict:
    from sklearn.linear_model import LogisticRegression

    from vistage.batches import Normalizer
    from vistage.feature_cache import compute_features
    from vistage.models import build_from_params
    from vistage.training import _normalization

    started = time.perf_counter()
    model = build_from_params(params, len(store.classes))
    rows = {name: table.loc[table["split"] == name, "index"].to_numpy() for name in ("train", "val", "test")}
    mean, std = _normalization(params, model, store.images, rows["train"])
    cache = compute_features(model, store.images, np.concatenate(list(rows.values())), Normalizer(mean, std, "cpu"),
                             64, torch.device("cpu"))
    labels = store.samples["label"].to_numpy()
    feats = {name: cache.lookup(np.sort(r)).numpy() for name, r in rows.items()}
    ys = {name: labels[np.sort(r)] for name, r in rows.items()}
    features_s = time.perf_counter() - started
    best = (-1.0, None)
    for c in (0.01, 0.1, 1.0, 10.0):
        clf = LogisticRegression(C=c, max_iter=3000).fit(feats["train"], ys["train"])
        best = max(best, (clf.score(feats["val"], ys["val"]), c), key=lambda t: t[0])
    clf = LogisticRegression(C=best[1], max_iter=3000).fit(feats["train"], ys["train"])
    return {"test_acc": clf.score(feats["test"], ys["test"]), "val_acc": best[0], "C": best[1],
            "features_s": features_s, "seconds": time.perf_counter() - started}


def vistage_transfer(work: Path, params) -> dict:
    from vistage.evaluation import classification_metrics, predict_splits
    from vistage.training import TrainPaths, train

    started = time.perf_counter()
    result = train(params, TrainPaths(work / "prepared", work / "split.csv", work / "models", work / "live"))
    seconds = time.perf_counter() - started
    pred = predict_splits(work / "models" / "best.pt", work / "prepared", work / "split.csv", "cpu")
    return {"test_acc": classification_metrics(pred.of("test"))["accuracy"], "val_acc": result["best_val_acc"],
            "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(PETS))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--val", type=float, default=0.2)
    ap.add_argument("--test", type=float, default=0.2)
    ap.add_argument("-S", dest="overrides", action="append", default=[], help="key=value on top of the recipe")
    args = ap.parse_args()
    from vistage.params import Params

    overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.overrides)}
    params = Params.model_validate({**RECIPE, **overrides, "device": "cpu"})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store, table = prepare(args.data, args.size, work, args.val, args.test)
        probe = linear_probe(store, table, params)
        ours = vistage_transfer(work, params)
    n = table["split"].value_counts().to_dict()
    print(f"{args.data}: {n.get('train', 0)} train / {n.get('val', 0)} val / {n.get('test', 0)} test images, "
          f"{len(store.classes)} classes, {args.size} px")
    print(f"  linear probe (LogisticRegression, C={probe['C']})  test {probe['test_acc']:.4f}  "
          f"val {probe['val_acc']:.4f}  {probe['seconds']:.0f}s ({probe['features_s']:.0f}s of features)")
    print(f"  vistage two-stage on cached features        test {ours['test_acc']:.4f}  "
          f"val {ours['val_acc']:.4f}  {ours['seconds']:.0f}s")
    print("  params: " + " ".join(f"{k}={v}" for k, v in {**RECIPE, **overrides}.items()))


if __name__ == "__main__":
    main()
