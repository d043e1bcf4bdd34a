"""Predict once, evaluate from what predict kept.

`predict_split` runs the best checkpoint over the test split (validation when there is no test
split) and returns `Predictions`: logits, labels and class names, saved by the predict stage as
one .npz. Evaluate and report read that file, so the model runs once per pipeline and scoring
needs no torch. The .npz holds only numeric and string arrays (loaded with allow_pickle=False).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from .errors import VistageError
from .io import atomic_path

_FIELDS = ("split", "classes", "index", "ids", "labels", "logits")


@dataclass
class Predictions:
    split: str  # which split was predicted: test, or val when there is no test split
    classes: np.ndarray  # class names, in label order
    index: np.ndarray  # store rows, in the order of the logits
    ids: np.ndarray  # sample ids (file names) of those rows
    labels: np.ndarray  # class index per row, -1 for unlabeled images
    logits: np.ndarray  # (rows, classes) float32

    @property
    def probabilities(self) -> np.ndarray:
        shifted = self.logits - self.logits.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)

    @property
    def labeled(self) -> np.ndarray:
        return self.labels >= 0

    def table(self) -> pd.DataFrame:
        """One row per image: index, id, label, predicted, confidence, correct."""
        probs = self.probabilities
        predicted = probs.argmax(axis=1)
        label_names = np.where(self.labeled, self.classes[np.clip(self.labels, 0, None)], "")
        return pd.DataFrame({
            "index": self.index, "id": self.ids, "label": label_names,
            "predicted": self.classes[predicted], "confidence": probs.max(axis=1).round(5),
            "correct": self.labeled & (predicted == self.labels),
        })

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **{name: np.asarray(getattr(self, name)) for name in _FIELDS})

    @classmethod
    def load(cls, path: str | Path) -> "Predictions":
        path = Path(path)
        if not path.is_file():
            raise VistageError(f"{path}: missing; run the predict stage first")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in _FIELDS}
        except (OSError, ValueError, KeyError) as exc:
            raise VistageError(f"{path}: not a predictions file written by predict ({exc})") from None
        return cls(split=str(arrays.pop("split")), **arrays)


def pick_split(split: pd.DataFrame, split_path: Path) -> tuple[str, np.ndarray]:
    """The test split, or validation when the data has no test split."""
    for name in ("test", "val"):
        idx = split.loc[split["split"] == name, "index"].to_numpy()
        if len(idx):
            return name, idx
    raise VistageError(f"{split_path}: no test or val images to evaluate on")


def predict_split(checkpoint: Path, store_dir: Path, split_path: Path, device: str = "auto",
                  batch_size: int = 256) -> Predictions:
    from .data.split import load_split
    from .data.store import load_store
    from .inference import TrainedModel
    from .runtime import resolve_device

    store = load_store(store_dir)
    trained = TrainedModel(checkpoint, resolve_device(device))
    if trained.classes != store.classes:
        raise VistageError(f"{checkpoint}: trained on classes {trained.classes[:5]}... but {store_dir} has "
                           f"{store.classes[:5]}...; retrain")
    split_name, idx = pick_split(load_split(split_path), split_path)
    logits, rows = trained.logits(store.images, idx, batch_size)
    return Predictions(split_name, np.array(store.classes), rows, store.samples["id"].to_numpy(str)[rows],
                       store.samples["label"].to_numpy(np.int64)[rows], logits.numpy().astype(np.float32))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of integer labels, computed stably in float64."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def _labeled_names(pred: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """(actual, predicted) class names of the labeled rows."""
    keep = pred.labeled
    if not keep.any():
        raise VistageError(f"the {pred.split} split has no labels to evaluate against")
    return pred.classes[pred.labels[keep]], pred.classes[pred.logits[keep].argmax(axis=1)]


def classification_metrics(pred: Predictions) -> dict:
    y, p = _labeled_names(pred)
    precision, recall, f1, _ = precision_recall_fscore_support(y, p, labels=pred.classes, average="macro",
                                                               zero_division=0)
    return {
        "split": pred.split,
        "images": int(len(y)),
        "accuracy": round(float(accuracy_score(y, p)), 6),
        "precision_macro": round(float(precision), 6),
        "recall_macro": round(float(recall), 6),
        "f1_macro": round(float(f1), 6),
        "loss": round(cross_entropy(pred.logits[pred.labeled], pred.labels[pred.labeled]), 6),
    }


def per_class_table(pred: Predictions) -> pd.DataFrame:
    y, p = _labeled_names(pred)
    precision, recall, f1, support = precision_recall_fscore_support(y, p, labels=pred.classes, zero_division=0)
    return pd.DataFrame({"class": pred.classes, "precision": precision.round(4), "recall": recall.round(4),
                         "f1": f1.round(4), "support": support})


def confusion_rows(pred: Predictions) -> pd.DataFrame:
    """One row per image (actual, predicted): the data DVC's confusion template expects."""
    y, p = _labeled_names(pred)
    return pd.DataFrame({"actual": y, "predicted": p})
