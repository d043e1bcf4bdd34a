"""Evaluate and predict: run the best checkpoint over a split and summarise."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from .data.split import load_split
from .data.store import Store, load_store
from .errors import VistageError
from .inference import TrainedModel
from .runtime import resolve_device


@dataclass
class Predictions:
    table: pd.DataFrame  # index, id, label, predicted, confidence, correct
    split: str
    loss: float


def pick_split(split: pd.DataFrame, split_path: Path) -> tuple[str, np.ndarray]:
    """The test split, or validation when the data has no test split."""
    for name in ("test", "val"):
        idx = split.loc[split["split"] == name, "index"].to_numpy()
        if len(idx):
            return name, idx
    raise VistageError(f"{split_path}: no test or val images to evaluate on")


def predict_split(checkpoint: Path, store_dir: Path, split_path: Path, device: str = "auto",
                  batch_size: int = 256) -> tuple[Predictions, Store, list[str]]:
    store = load_store(store_dir)
    trained = TrainedModel(checkpoint, resolve_device(device))
    if trained.classes != store.classes:
        raise VistageError(f"{checkpoint}: trained on classes {trained.classes[:5]}... but {store_dir} has "
                           f"{store.classes[:5]}...; retrain")
    split_name, idx = pick_split(load_split(split_path), split_path)
    logits, rows = trained.logits(store.images, idx, batch_size)
    probs = logits.softmax(1)
    conf, pred = probs.max(1)
    labels = store.samples["label"].to_numpy()[rows]
    labeled = labels >= 0
    loss = float("nan")
    if labeled.any():
        loss = torch.nn.functional.cross_entropy(logits[labeled], torch.from_numpy(labels[labeled])).item()
    classes = np.array(store.classes)
    table = pd.DataFrame({
        "index": rows,
        "id": store.samples["id"].to_numpy()[rows],
        "label": np.where(labeled, classes[np.clip(labels, 0, None)], ""),
        "predicted": classes[pred.numpy()],
        "confidence": conf.numpy().round(5),
    })
    table["correct"] = np.where(labeled, table["label"] == table["predicted"], False)
    return Predictions(table, split_name, loss), store, store.classes


def classification_metrics(pred: Predictions, classes: list[str]) -> dict:
    labeled = pred.table[pred.table["label"] != ""]
    if labeled.empty:
        raise VistageError(f"the {pred.split} split has no labels to evaluate against")
    y, p = labeled["label"], labeled["predicted"]
    precision, recall, f1, _ = precision_recall_fscore_support(y, p, labels=classes, average="macro", zero_division=0)
    return {
        "split": pred.split,
        "images": int(len(labeled)),
        "accuracy": round(float(accuracy_score(y, p)), 6),
        "precision_macro": round(float(precision), 6),
        "recall_macro": round(float(recall), 6),
        "f1_macro": round(float(f1), 6),
        "loss": round(pred.loss, 6),
    }


def per_class_table(pred: Predictions, classes: list[str]) -> pd.DataFrame:
    labeled = pred.table[pred.table["label"] != ""]
    precision, recall, f1, support = precision_recall_fscore_support(
        labeled["label"], labeled["predicted"], labels=classes, zero_division=0)
    return pd.DataFrame({"class": classes, "precision": precision.round(4), "recall": recall.round(4),
                         "f1": f1.round(4), "support": support})


def confusion_rows(pred: Predictions) -> pd.DataFrame:
    """One row per image (actual, predicted): the data DVC's confusion template expects."""
    labeled = pred.table[pred.table["label"] != ""]
    return pd.DataFrame({"actual": labeled["label"].to_numpy(), "predicted": labeled["predicted"].to_numpy()})
