"""Predict once, evaluate from what predict kept.

`predict_splits` runs the best checkpoint once over the test and validation images and returns
`Predictions`: logits, labels, class names and the split of every row, saved by the predict
stage as one .npz. Evaluate and report read that file, so the model runs once per pipeline and
scoring needs no torch. The .npz holds only numeric and string arrays (loaded with
allow_pickle=False).
"""

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from .errors import VistageError
from .io import atomic_path

EVAL_SPLITS = ("test", "val")  # the splits predict keeps, the headline one first
_FIELDS = ("classes", "splits", "index", "ids", "labels", "logits")
_ROW_FIELDS = ("splits", "index", "ids", "labels", "logits")


@dataclass
class Predictions:
    classes: np.ndarray  # class names, in label order
    splits: np.ndarray  # split name per row: test or val
    index: np.ndarray  # store rows, in the order of the logits
    ids: np.ndarray  # sample ids (file names) of those rows
    labels: np.ndarray  # class index per row, -1 for unlabeled images
    logits: np.ndarray  # (rows, classes) float32

    @property
    def split_names(self) -> list[str]:
        """The splits present, the headline one (test) first."""
        return [name for name in EVAL_SPLITS if (self.splits == name).any()]

    @property
    def headline(self) -> str:
        """The split the user-facing files describe: test, or val when there is no test split."""
        if not self.split_names:
            raise VistageError("no test or val predictions to evaluate")
        return self.split_names[0]

    def rows(self, keep: np.ndarray) -> "Predictions":
        """The rows where `keep` is true."""
        return Predictions(self.classes, *(getattr(self, name)[keep] for name in _ROW_FIELDS))

    def of(self, split: str) -> "Predictions":
        """The rows of one split."""
        return self.rows(self.splits == split)

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax of the logits, in float64."""
        shifted = self.logits.astype(np.float64) - self.logits.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)

    @property
    def predicted(self) -> np.ndarray:
        """The top-1 class index per row."""
        return self.logits.argmax(axis=1)

    @property
    def labeled(self) -> np.ndarray:
        return self.labels >= 0

    def table(self) -> pd.DataFrame:
        """One row per image: index, id, label, predicted, confidence, correct."""
        probs, predicted = self.probabilities, self.predicted
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
        not_npz = VistageError(f"{path}: not a predictions file written by predict (not an .npz archive of "
                               "numeric and string arrays); rerun the predict stage")
        unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile)  # object arrays: ValueError
        try:
            data = np.load(path, allow_pickle=False)
        except unreadable:
            raise not_npz from None
        if not isinstance(data, np.lib.npyio.NpzFile):  # a lone .npy array
            raise not_npz
        with data:
            missing = [name for name in _FIELDS if name not in data.files]
            if missing:
                raise VistageError(f"{path}: not a predictions file written by predict (no {', '.join(missing)} "
                                   "in it); rerun the predict stage")
            try:
                arrays = {name: data[name] for name in _FIELDS}
            except unreadable:
                raise not_npz from None
        pred = cls(**arrays)
        pred._check(path)
        return pred

    def _check(self, path: Path) -> None:
        rows, n_classes = len(self.index), len(self.classes)
        shapes = {name: getattr(self, name).shape for name in _ROW_FIELDS}
        if self.logits.ndim != 2 or self.logits.shape[1] != n_classes or \
                any(shape[:1] != (rows,) for shape in shapes.values()):
            described = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
            raise VistageError(f"{path}: malformed predictions ({n_classes} classes; {described}); "
                               "rerun the predict stage")


def eval_rows(split: pd.DataFrame, split_path: Path) -> dict[str, np.ndarray]:
    """The store rows of the test and of the validation images; an empty split is left out."""
    rows = {name: split.loc[split["split"] == name, "index"].to_numpy() for name in EVAL_SPLITS}
    rows = {name: idx for name, idx in rows.items() if len(idx)}
    if not rows:
        raise VistageError(f"{split_path}: no test or val images to evaluate on")
    return rows


def predict_splits(checkpoint: Path, store_dir: Path, split_path: Path, device: str = "auto",
                   batch_size: int = 256) -> Predictions:
    """Run the checkpoint once over every test and validation image."""
    from .data.split import load_split
    from .data.store import load_store
    from .inference import TrainedModel
    from .runtime import resolve_device

    store = load_store(store_dir)
    trained = TrainedModel(checkpoint, resolve_device(device))
    if trained.classes != store.classes:
        raise VistageError(f"{checkpoint}: trained on classes {trained.classes[:5]}... but {store_dir} has "
                           f"{store.classes[:5]}...; retrain")
    logits, rows, splits = [], [], []
    for name, idx in eval_rows(load_split(split_path), split_path).items():
        split_logits, split_rows = trained.logits(store.images, idx, batch_size)
        logits.append(split_logits.numpy().astype(np.float32))
        rows.append(split_rows)
        splits += [name] * len(split_rows)
    rows = np.concatenate(rows)
    return Predictions(np.array(store.classes), np.array(splits), rows, store.samples["id"].to_numpy(str)[rows],
                       store.samples["label"].to_numpy(np.int64)[rows], np.concatenate(logits))


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
        raise VistageError(f"the {'/'.join(pred.split_names) or 'predicted'} split has no labels to evaluate against")
    return pred.classes[pred.labels[keep]], pred.classes[pred.predicted[keep]]


def classification_metrics(pred: Predictions) -> dict:
    y, p = _labeled_names(pred)
    precision, recall, f1, _ = precision_recall_fscore_support(y, p, labels=pred.classes, average="macro",
                                                               zero_division=0)
    return {
        "split": pred.headline,
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
