"""Transfer on cached frozen features against a linear probe, on the same images and splits.

Linear probe: scikit-learn's LogisticRegression on the frozen backbone's features (the pooled
pre-logits of tf_efficientnet_lite0 with its packaged ImageNet weights) of the photos stored at
224 px, as issue 18's probe saw them (`--probe-size`; 0: at `--size`, the features the recipe
reads), C chosen on the val split from the same grid as `head: solve` (head_solve.C_GRID).
vistage: the train stage's loop with recipes/pets-transfer.yaml's params (its data block aside),
each `--setup` a variant of them; its best-by-val checkpoint scored on the test split as the
predict stage scores it. By default on 5 stratified folds, each the test split once and the next
one validation, so every image is scored once by a model that never saw it.

Data (`--data`): `pets` (../shared/datasets/oxford-pets-sample.tar, 370 photos of 37 breeds),
`tiny` (../shared/datasets/tiny-imagenet-200-train.tar: `--classes` of its 200 classes, spread
over its sorted WordNet ids, all 50 images of each, 64x64; read through a CSV as
recipes/tiny_imagenet_csv.py writes it), or the path of any folder or archive of <class>/<image>.

    python bench/transfer.py [--data pets|tiny|PATH] [--size 224] [--probe-size 224|0]
        [--resize crop|pad|squash] [--folds 5] [--max-folds 3 | --fold 1 --fold 2] [-S key=value ...]
        [--setup "key=value key=value" ...] [--probe-only] [--json results.json]

Prints, per fold and pooled over every test image: test accuracy and expected calibration error
(15 bins, evaluate's) of the probe (and the test accuracy of the probe refit on train + val at
its C, the counterpart of head_refit: true) and of each setup, the C each chose, which checkpoint
each run kept, and its time split into feature extraction, head solve and the rest of the run
(fine-tuning with its validation, plus building the model and writing checkpoints).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
PETS = DATASETS / "oxford-pets-sample.tar"
TINY = DATASETS / "tiny-imagenet-200-train.tar"
# the recipe's training params (its data block aside: the bench makes its own splits)
RECIPE = {k: v for k, v in yaml.safe_load((ROOT / "recipes" / "pets-transfer.yaml").read_text()).items() if k != "data"}


def prepare(data: str, size: int, resize: str, classes: int, work: Path) -> "Store":
    from vistage.data.sources import load_source
    from vistage.data.store import load_store, write_store
    from vistage.params import DataParams

    if data == "tiny":
        source = DataParams(source="csv", path=str(tiny_csv(classes, work)), root=str(work / "tiny"))
    else:
        source = DataParams(source="folder", path=str(PETS) if data == "pets" else data)
    write_store(work / "prepared", load_source(source), size, resize)
    return load_store(work / "prepared")


def tiny_csv(classes: int, work: Path) -> Path:
    """Tiny ImageNet's train archive extracted under `work`, and a CSV of `classes` of its classes
    (every 200/classes-th of the sorted WordNet ids: spread over the ids, not the first few)."""
    import pandas as pd

    sys.path.insert(0, str(ROOT / "recipes"))
    from tiny_imagenet_csv import build_csv

    csv_path, _, _ = build_csv(TINY, work / "tiny")
    table = pd.read_csv(csv_path)
    wnids = sorted(table["label"].unique())
    kept = wnids[::max(1, len(wnids) // classes)][:classes]
    subset = work / "tiny" / "subset.csv"
    table[table["label"].isin(kept)].to_csv(subset, index=False)
    return subset


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


def linear_probe(cache, labels: np.ndarray, table, classes: list[str]) -> dict:
    from sklearn.linear_model import LogisticRegression

    from vistage.head_solve import C_GRID

    started = time.perf_counter()
    rows = {name: np.sort(table.loc[table["split"] == name, "index"].to_numpy()) for name in ("train", "val", "test")}
    feats = {name: cache.lookup(r).numpy() for name, r in rows.items()}
    ys = {name: labels[r] for name, r in rows.items()}
    best = (-1.0, None, None)
    for c in C_GRID:  # ascending; ties keep the first (the stronger L2)
        clf = LogisticRegression(C=c, max_iter=3000).fit(feats["train"], ys["train"])
        best = max(best, (clf.score(feats["val"], ys["val"]), c, clf), key=lambda t: t[0])
    clf = best[2]
    logits = np.log(np.clip(clf.predict_proba(feats["test"]), 1e-300, None))
    # the same C refit on train + val (LogisticRegressionCV's refit), beside head_refit: true
    refit = LogisticRegression(C=best[1], max_iter=3000).fit(np.concatenate([feats["train"], feats["val"]]),
                                                             np.concatenate([ys["train"], ys["val"]]))
    return {"test_acc": clf.score(feats["test"], ys["test"]), "val_acc": best[0], "C": best[1],
            "ece": ece(logits, ys["test"], rows["test"], classes), "seconds": time.perf_counter() - started,
            "refit_test_acc": refit.score(feats["test"], ys["test"])}


def ece(logits: np.ndarray, labels: np.ndarray, rows: np.ndarray, classes: list[str]) -> float:
    """evaluate's expected calibration error (metrics/eval.json's `ece`)."""
    from vistage.evaluation import Predictions, expected_calibration_error

    pred = Predictions(np.array(classes), np.array(["test"] * len(rows)), rows, rows.astype(str), labels,
                       logits.astype(np.float32))
    return expected_calibration_error(pred)


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
    scores = classification_metrics(pred.of("test"))
    features, solve = result.get("features_s", 0.0), result.get("head_solve_s", 0.0)
    return {"test_acc": scores["accuracy"], "ece": scores["ece"], "val_acc": result["best_val_acc"],
            "seconds": seconds, "features_s": features, "solve_s": solve, "rest_s": seconds - features - solve,
            "C": result.get("head_C"), "head_val_acc": result.get("head_val_acc"),
            "best_epoch": result.get("best_epoch"), "epochs": result["epochs_trained"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="pets", help="pets, tiny, or a folder or archive of <class>/<image>")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--probe-size", type=int, default=224,
                    help="the probe's store side: 224, the issue's probe (lite0's training size), whatever --size "
                         "the recipe is scored at (the same images and folds); 0: at --size, the same features")
    ap.add_argument("--resize", default="crop", choices=("crop", "pad", "squash"), help="data.resize of the store")
    ap.add_argument("--classes", type=int, default=50, help="tiny: how many of its 200 classes")
    ap.add_argument("--folds", type=int, default=5, help="stratified folds, each the test split once (1: one split)")
    ap.add_argument("--max-folds", type=int, default=0, help="score only the first N folds (0: all)")
    ap.add_argument("--fold", dest="only", type=int, action="append", default=[],
                    help="score only this fold (repeatable; e.g. to spread folds over runs)")
    ap.add_argument("--val", type=float, default=0.2, help="with --folds 1")
    ap.add_argument("--test", type=float, default=0.2, help="with --folds 1")
    ap.add_argument("-S", dest="overrides", action="append", default=[], help="key=value on top of the recipe")
    ap.add_argument("--setup", dest="setups", action="append", default=[],
                    help='a variant scored too: "key=value key=value" on top of the recipe and -S')
    ap.add_argument("--probe-only", action="store_true", help="the probe alone (e.g. to compare --resize)")
    ap.add_argument("--json", type=Path, help="write every fold's figures here")
    args = ap.parse_args()
    from vistage.params import Params

    def parsed(pairs: list[str]) -> dict:
        return {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in pairs)}

    overrides = parsed(args.overrides)
    setups = [] if args.probe_only else [{}] + [parsed(s.split()) for s in args.setups]
    params = [Params.model_validate({**RECIPE, **overrides, **setup, "device": "cpu"}) for setup in setups]
    folds = []
    with tempfile.TemporaryDirectory() as tmp:
        store = prepare(args.data, args.size, args.resize, args.classes, Path(tmp))
        probe_store = store
        if args.probe_size and args.probe_size != args.size:  # the same images in the same order: the same folds
            probe_store = prepare(args.data, args.probe_size, args.resize, args.classes, Path(tmp) / "probe")
            if not probe_store.samples["label"].equals(store.samples["label"]):
                sys.exit(f"the {args.probe_size} px store holds other images than the {args.size} px one")
        started = time.perf_counter()
        cache = probe_features(probe_store, Params.model_validate({**RECIPE, **overrides, "device": "cpu"}))
        print(f"  probe features of {len(cache.rows)} images at {probe_store.images.shape[1]} px: "
              f"{time.perf_counter() - started:.0f}s", flush=True)
        labels = store.samples["label"].to_numpy()
        tables = fold_tables(store, args.folds, args.val, args.test)
        for k, table in enumerate(tables[:args.max_folds or None]):
            if args.only and k not in args.only:
                continue
            n_test = int((table["split"] == "test").sum())
            probe = linear_probe(cache, labels, table, store.classes)
            print(f"  fold {k}: {n_test} test images: probe {probe['test_acc']:.4f} (C={probe['C']:.3g}, "
                  f"ECE {probe['ece']:.3f}; refit on train + val {probe['refit_test_acc']:.4f})", flush=True)
            runs = []
            for i, p in enumerate(params):
                work = Path(tmp) / f"fold{k}-setup{i}"
                work.mkdir()
                table.to_csv(work / "split.csv", index=False)
                runs.append(vistage_transfer(work, Path(tmp) / "prepared", p))
                print(f"    setup {i}: {line(runs[-1])}", flush=True)
            folds.append({"test_images": n_test, "probe": probe, "setups": runs})
    summary(args, store, folds, overrides, setups)
    if args.json:
        args.json.write_text(json.dumps({"data": args.data, "size": args.size, "resize": args.resize,
                                         "probe_size": args.probe_size or args.size, "overrides": overrides,
                                         "setups": setups, "folds": folds}, indent=1))


def line(run: dict) -> str:
    kept = "" if run["C"] is None else (
        f", head C={run['C']:.3g} val {run['head_val_acc']:.4f}, kept "
        + ("the solved head" if run["best_epoch"] == 1 else f"fine-tuned epoch {run['best_epoch']}"))
    return (f"test {run['test_acc']:.4f} ECE {run['ece']:.3f} val {run['val_acc']:.4f}{kept}; "
            f"{run['seconds']:.0f}s = features {run['features_s']:.0f}s + solve {run['solve_s']:.1f}s "
            f"+ rest {run['rest_s']:.0f}s")


def summary(args, store, folds: list, overrides: dict, setups: list) -> None:
    n = sum(f["test_images"] for f in folds)

    def pooled(get) -> float:  # over every test image once
        return sum(f["test_images"] * get(f) for f in folds) / n

    print(f"{args.data}: {len(store.samples)} images, {len(store.classes)} classes, {args.size} px, "
          f"resize {args.resize}, {len(folds)} fold(s), {n} test images scored")
    print(f"  linear probe (LogisticRegression, C on val; {args.probe_size or args.size} px)  "
          f"test {pooled(lambda f: f['probe']['test_acc']):.4f}  "
          f"ECE {pooled(lambda f: f['probe']['ece']):.3f}  {sum(f['probe']['seconds'] for f in folds):.0f}s fits")
    print(f"  the probe refit on train + val at its C  test {pooled(lambda f: f['probe']['refit_test_acc']):.4f}")
    for i, setup in enumerate(setups):
        runs = [f["setups"][i] for f in folds]
        # evaluate rounds its scores to 6 digits
        at_least = sum(r["test_acc"] >= f["probe"]["test_acc"] - 1e-6 for r, f in zip(runs, folds))
        at_least_refit = sum(r["test_acc"] >= f["probe"]["refit_test_acc"] - 1e-6 for r, f in zip(runs, folds))
        print(f"  setup {i} {setup or '(the recipe)'}: test {pooled(lambda f: f['setups'][i]['test_acc']):.4f}  "
              f"ECE {pooled(lambda f: f['setups'][i]['ece']):.3f}  at least the probe's on {at_least}/{len(folds)} "
              f"folds ({at_least_refit} the refit probe's); features {sum(r['features_s'] for r in runs):.0f}s, "
              f"solve {sum(r['solve_s'] for r in runs):.1f}s, rest {sum(r['rest_s'] for r in runs):.0f}s")
    print("  params: " + " ".join(f"{k}={v}" for k, v in {**RECIPE, **overrides}.items()))


if __name__ == "__main__":
    main()
