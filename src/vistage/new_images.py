"""Predicting on new, unlabeled images (a competition's hidden test set, this week's photos): a
folder or archive of images at any depth, or a CSV of paths. They are decoded and resized exactly
as prepare did for the store the checkpoint was trained on (its size and resize policy), bad files
follow `on_bad_image`, and the class names come from the checkpoint."""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .data.base import Reader, Sample
from .data.csv_source import csv
from .data.decode import default_workers
from .data.folder import list_entries
from .data.store import bad_image_error, decode_into
from .errors import VistageError
from .params import DataParams


def list_images(path: Path, path_column: str = "path") -> tuple[list[Sample], Reader, list[tuple[str, str]]]:
    """The images to predict: (samples, reader, refused entries). A CSV is read by the csv source
    without a label column: its paths are relative to its folder and may not leave it."""
    if not path.exists():
        raise VistageError(f"--input: {path} does not exist")
    if path.suffix.lower() == ".csv":
        listed = csv(DataParams(source="csv", path=str(path), root=str(path.parent), csv_path_column=path_column,
                                csv_label_column=None))
        return listed.samples, listed.reader, listed.bad
    entries, reader, bad, _ = list_entries(path)
    return [Sample(rel, None, ref) for rel, ref in entries], reader, bad


def predict_images(checkpoint: Path, input_path: Path, device: str, on_bad_image: str, path_column: str = "path",
                   top_k: int = 5) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """One row per image: id, predicted, confidence, then top1..topK and their probabilities."""
    from .inference import TrainedModel
    from .runtime import resolve_device

    trained = TrainedModel(checkpoint, resolve_device(device))
    samples, reader, bad = list_images(input_path, path_column)
    if bad and on_bad_image == "error":
        raise bad_image_error(bad, "predict", listed="")
    if not samples:
        raise VistageError(f"--input: no images found in {input_path}")
    policy = (trained.params.get("data") or {}).get("resize", "crop")
    size = trained.image_size
    with tempfile.TemporaryDirectory(prefix="vistage-predict-") as tmp:  # bounded memory however many images
        images = np.lib.format.open_memmap(Path(tmp) / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(samples), size, size, 3))
        ok, _, decode_bad = decode_into(images, samples, reader, policy, default_workers(), "predict")
        if decode_bad and on_bad_image == "error":
            raise bad_image_error(sorted(decode_bad), "predict", listed="")
        logits, rows = trained.logits(images, np.flatnonzero(ok))
        del images
    probs = logits.softmax(1).numpy()
    k = min(top_k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    classes = np.array(trained.classes)
    table = pd.DataFrame({"id": [samples[r].id for r in rows], "predicted": classes[order[:, 0]],
                          "confidence": probs[np.arange(len(rows)), order[:, 0]].round(5)})
    for j in range(k):
        table[f"top{j + 1}"] = classes[order[:, j]]
        table[f"top{j + 1}_probability"] = probs[np.arange(len(rows)), order[:, j]].round(5)
    return table, bad + decode_bad
