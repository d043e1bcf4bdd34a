"""Predict once, evaluate from what predict kept.

`predict_splits` runs the best checkpoint once over the test and validation images and returns
`Predictions`: logits, labels, class names and the split of every row, saved by the predict
stage as one .npz. Evaluate and report read that file, so the model runs once per pipeline and
scoring needs no torch. The .npz holds only numeric and string arrays (loaded with
allow_pickle=False).

Scores come from scikit-learn: accuracy, top-5 accuracy (more than 5 classes), macro and
weighted precision/recall/F1 (over the classes present in the split: a class with no image there
has no recall to average, and counting it as 0 would punish a small split for what it lacks),
cross-entropy (`log_loss` of the softmax probabilities, which it
clips to float64's eps: one image adds at most about 36), and the expected calibration error
built on `calibration_curve`:

    ECE = sum over bins b of (n_b / N) * |accuracy_b - confidence_b|

over 15 equal-width bins of the top-1 confidence (the largest softmax probability), where n_b is
the number of images in bin b, accuracy_b the fraction of them predicted correctly and
confidence_b their mean top-1 confidence; empty bins add nothing. Bins are closed on the right,
(lo, hi], as `calibration_curve` bins them (a confidence of 0 falls in the first).

Probabilities are softmax(logits / T), T the temperature fitted on the validation split when the
checkpoint was trained (calibration.py; 1 with `calibrate: false`): what predict serves. Beside
`ece`, each split's scores hold `ece_uncalibrated` (the raw softmax's) and `temperature`.
"""

import dataclasses
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, log_loss, precision_recall_fscore_support, top_k_accuracy_score

from .errors import VistageError
from .io import atomic_path

EVAL_SPLITS = ("test", "val")  # the splits predict keeps, the headline one first
# a run that holds nothing out (data.val_fraction and data.test_fraction 0: the final model on every
# image) is scored on its training images, under that name: every stage still runs, and no file
# calls a fit a test score
FIT_SPLIT = "train"
FIT_NOTE = ("nothing held out (no test split, and no val split or one the model trained on: data.test_fraction 0, "
            "and data.val_fraction 0 or head_refit: true): scored on the training images, so these figures "
            "measure fit, not how the model does on new data")

# head_refit: true solves best.pt's head on the val images too, so they are not scored as held out
REFIT_NOTE = "val not scored: best.pt's head was refit on it (head_refit: true)"

CALIBRATION_BINS = 15
TOP_K = 5
DIGITS = 6  # metrics are rounded to this many decimals
_FIELDS = ("classes", "splits", "index", "ids", "labels", "logits")
_ROW_FIELDS = ("splits", "index", "ids", "labels", "logits")


def fit_note(split_names) -> list[str]:
    """FIT_NOTE, as a line for a stage's summary, when the training images were scored."""
    return [FIT_NOTE] if FIT_SPLIT in split_names else []


def scored_splits(names) -> tuple[str, ...]:
    """The splits predict scores, of the split names present: test and val, or the training
    images when neither is there; () when there are none of those either."""
    present = set(names)
    held_out = tuple(name for name in EVAL_SPLITS if name in present)
    return held_out or ((FIT_SPLIT,) if FIT_SPLIT in present else ())


def predictions_task(path: str | Path) -> str:
    """The task whose predict wrote the .npz at `path` (those written before the field:
    classify); an unreadable file is left to the task's own loader to name."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data["task"]) if "task" in data.files else "classify"
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError, TypeError):
        return "unreadable"


def check_predictions_task(path: Path, task: str) -> None:
    """Predictions of another task are one line naming both (a missing or unreadable file: the
    loader's own error)."""
    from .errors import require_task

    found = predictions_task(path)
    if found != "unreadable":
        require_task(found, task, path, "predictions file")


def write_tables(tables: list, metrics: Path, summary: dict) -> None:
    """Each (path, DataFrame) as a CSV, then the metrics JSON: every file written atomically."""
    from .io import write_json

    for path, table in tables:
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)
    write_json(metrics, summary)


class SplitRows:
    """Rows tagged with their split (`splits`): what classification's and VQA's predictions share."""

    splits: np.ndarray
    noun = "predictions"  # what a row is, for the error message

    @property
    def split_names(self) -> list[str]:
        """The scored splits present, the headline one (test) first."""
        return list(scored_splits(np.unique(self.splits)))

    @property
    def headline(self) -> str:
        """The split the user-facing files describe: test, or val when there is no test split
        (train when neither: FIT_SPLIT)."""
        if not self.split_names:
            raise VistageError(f"no test, val or train {self.noun} to evaluate")
        return self.split_names[0]

    def rows(self, keep: np.ndarray):
        raise NotImplementedError

    def of(self, split: str):
        """The rows of one split."""
        return self.rows(self.splits == split)


@dataclass
class Predictions(SplitRows):
    classes: np.ndarray  # class names, in label order
    splits: np.ndarray  # split name per row: test or val (train: FIT_SPLIT)
    index: np.ndarray  # store rows, in the order of the logits
    ids: np.ndarray  # sample ids (file names) of those rows
    labels: np.ndarray  # class index per row, -1 for unlabeled images
    logits: np.ndarray  # (rows, classes) float32
    temperature: float = 1.0  # the checkpoint's calibration: probabilities are softmax(logits / temperature)

    def rows(self, keep: np.ndarray) -> "Predictions":
        """The rows where `keep` is true."""
        return Predictions(self.classes, *(getattr(self, name)[keep] for name in _ROW_FIELDS), self.temperature)

    def uncalibrated(self) -> "Predictions":
        """The same rows with the raw softmax (temperature 1): what calibration is measured against."""
        return dataclasses.replace(self, temperature=1.0)

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax of logits / temperature, in float64."""
        scaled = self.logits.astype(np.float64) / self.temperature
        shifted = scaled - scaled.max(axis=1, keepdims=True)
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
                np.savez(f, task=np.array("classify"), temperature=np.array(self.temperature),
                         **{name: np.asarray(getattr(self, name)) for name in _FIELDS})

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
                # files written before calibration: the raw softmax
                temperature = float(data["temperature"]) if "temperature" in data.files else 1.0
            except unreadable:
                raise not_npz from None
        if not (np.isfinite(temperature) and temperature > 0):
            raise VistageError(f"{path}: temperature {temperature} is not a positive number; rerun the predict stage")
        pred = cls(**arrays, temperature=temperature)
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
    """The store rows of the test and of the validation images (an empty split left out), or of
    the training images when neither is there (scored_splits)."""
    names = scored_splits(split["split"])
    if not names:
        raise VistageError(f"{split_path}: no test, val or train images to evaluate on")
    return {name: split.loc[split["split"] == name, "index"].to_numpy() for name in names}


def held_out(split: pd.DataFrame, params: dict) -> pd.DataFrame:
    """The split as the checkpoint trained with `params` holds it out: with head_refit its head was
    solved on the val images too, so they count as training images (REFIT_NOTE)."""
    if params.get("head_refit"):
        return split.assign(split=split["split"].replace("val", FIT_SPLIT))
    return split


def check_classes(checkpoint: Path, trained: list[str], store_dir: Path, data: list[str]) -> None:
    """A checkpoint predicts its own classes: on data with other classes its numbers would mean
    other things. One line naming the first difference."""
    if trained == data:
        return
    first = next((k for k, (a, b) in enumerate(zip(trained, data)) if a != b), min(len(trained), len(data)))

    def at(names: list[str]) -> str:
        return repr(names[first]) if first < len(names) else "nothing"

    raise VistageError(f"{checkpoint}: trained on {len(trained)} classes, but {store_dir} has {len(data)}; class "
                       f"{first} is {at(trained)} in the checkpoint and {at(data)} in the data; retrain on this "
                       "data (dvc repro) or predict with the checkpoint trained on it")


def predict_splits(trained, store, split_path: Path, checkpoint: Path, store_dir: Path) -> Predictions:
    """Run a TrainedModel once over every test and validation image of a loaded store (test only,
    when its head was refit on val: head_refit)."""
    from .data.split import load_split
    from .new_images import logits_with_progress

    check_classes(checkpoint, trained.classes, store_dir, store.classes)
    logits, rows, splits = [], [], []
    for name, idx in eval_rows(held_out(load_split(split_path), trained.params), split_path).items():
        split_logits, split_rows = logits_with_progress(trained, store.images, idx, f"{len(idx)} {name} images")
        logits.append(split_logits.numpy().astype(np.float32))
        rows.append(split_rows)
        splits += [name] * len(split_rows)
    rows = np.concatenate(rows)
    return Predictions(np.array(store.classes), np.array(splits), rows, store.samples["id"].to_numpy(str)[rows],
                       store.samples["label"].to_numpy(np.int64)[rows], np.concatenate(logits), trained.temperature)


def _labeled(pred: Predictions) -> Predictions:
    """The rows with a label; an error when there are none."""
    keep = pred.labeled
    if not keep.any():
        raise VistageError(f"the {'/'.join(pred.split_names) or 'predicted'} split has no labels to evaluate against")
    return pred.rows(keep)


def _reliability(pred: Predictions, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bin edges, images per bin, and the accuracy and mean confidence of each non-empty bin) of
    the labeled rows' top-1 confidence."""
    confidence = np.clip(pred.probabilities.max(axis=1), 0.0, 1.0)
    correct = (pred.predicted == pred.labels).astype(int)
    accuracy, mean_confidence = calibration_curve(correct, confidence, pos_label=1, n_bins=n_bins,
                                                  strategy="uniform")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], confidence), minlength=n_bins)  # calibration_curve's bins
    if np.count_nonzero(counts) != len(accuracy):
        raise RuntimeError("calibration_curve binned otherwise than (lo, hi] bins")
    return edges, counts, accuracy, mean_confidence


def calibration_bins(pred: Predictions, n_bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Reliability diagram data, one row per non-empty bin of top-1 confidence: bin edges, mean
    confidence, accuracy and image count (the binning is in the module docstring)."""
    edges, counts, accuracy, confidence = _reliability(_labeled(pred), n_bins)
    used = np.flatnonzero(counts)
    return pd.DataFrame({"bin_lower": edges[used].round(DIGITS), "bin_upper": edges[used + 1].round(DIGITS),
                         "confidence": confidence.round(DIGITS), "accuracy": accuracy.round(DIGITS),
                         "count": counts[used]})


def expected_calibration_error(pred: Predictions, n_bins: int = CALIBRATION_BINS) -> float:
    """sum over bins of (images in the bin / images) * |accuracy - mean confidence| (module docstring)."""
    _, counts, accuracy, confidence = _reliability(_labeled(pred), n_bins)
    n = counts[counts > 0]
    return float((n * np.abs(accuracy - confidence)).sum() / n.sum())


def classification_metrics(pred: Predictions) -> dict[str, int | float]:
    """Headline scores of one split's labeled rows (numbers only, rounded to DIGITS)."""
    pred = _labeled(pred)
    y, p, probs = pred.labels, pred.predicted, pred.probabilities
    labels = np.arange(len(pred.classes))
    present = np.unique(y)  # macro averages: the classes of the split (module docstring)
    scores: dict[str, float] = {"accuracy": accuracy_score(y, p)}
    if len(labels) > TOP_K:
        scores[f"top{TOP_K}_accuracy"] = top_k_accuracy_score(y, probs, k=TOP_K, labels=labels)
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(y, p, labels=present, average=average,
                                                                   zero_division=0)
        scores |= {f"precision_{average}": precision, f"recall_{average}": recall, f"f1_{average}": f1}
    scores["loss"] = log_loss(y, probs, labels=labels)
    scores["ece"] = expected_calibration_error(pred)
    # calibrate: the same scores of the raw softmax, and the temperature between them
    scores["ece_uncalibrated"] = expected_calibration_error(pred.uncalibrated())
    scores["temperature"] = pred.temperature
    return {"images": int(len(y)), **{name: round(float(v), DIGITS) for name, v in scores.items()}}


def split_metrics(pred: Predictions) -> dict[str, dict[str, int | float]]:
    """What metrics/eval.json holds: the headline scores of each split predicted, test first."""
    return {name: classification_metrics(pred.of(name)) for name in pred.split_names}


def per_class_table(pred: Predictions) -> pd.DataFrame:
    pred = _labeled(pred)
    precision, recall, f1, support = precision_recall_fscore_support(
        pred.labels, pred.predicted, labels=np.arange(len(pred.classes)), zero_division=0)
    return pd.DataFrame({"class": pred.classes, "precision": precision.round(4), "recall": recall.round(4),
                         "f1": f1.round(4), "support": support})


def confusion_rows(pred: Predictions) -> pd.DataFrame:
    """One row per image (actual, predicted): the data DVC's confusion template expects."""
    pred = _labeled(pred)
    return pd.DataFrame({"actual": pred.classes[pred.labels], "predicted": pred.classes[pred.predicted]})


def confusion_pairs(pred: Predictions) -> pd.DataFrame:
    """The confusion matrix as one row per (actual, predicted) pair that occurs, in class order:
    count, and rate = count / images of the actual class (the row-normalised matrix). At most
    min(images, classes^2) rows, so 200 classes plot where one row per image would not."""
    pred = _labeled(pred)
    k = len(pred.classes)
    counts = np.bincount(pred.labels * k + pred.predicted, minlength=k * k).reshape(k, k)
    actual, predicted = np.nonzero(counts)
    count = counts[actual, predicted]
    return pd.DataFrame({"actual": pred.classes[actual], "predicted": pred.classes[predicted], "count": count,
                         "rate": (count / counts.sum(axis=1)[actual]).round(DIGITS)})
