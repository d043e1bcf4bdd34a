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


def list_images(path: Path, path_column: str = "path", option: str = "--input"
                ) -> tuple[list[Sample], Reader, list[tuple[str, str]]]:
    """The images to predict: (samples, reader, refused entries). A CSV is read by the csv source
    without a label column: its paths are relative to its folder and may not leave it."""
    if not path.exists():
        raise VistageError(f"{option}: {path} does not exist")
    if path.suffix.lower() == ".csv":
        listed = csv(DataParams(source="csv", path=str(path), root=str(path.parent), csv_path_column=path_column,
                                csv_label_column=None))
        return listed.samples, listed.reader, listed.bad
    entries, reader, bad, _ = list_entries(path)
    return [Sample(rel, None, ref) for rel, ref in entries], reader, bad


def logits_with_progress(trained, images: np.ndarray, index: np.ndarray, what: str, chunk: int = 2048):
    """trained.logits over the rows `index`, a chunk at a time, with a progress bar when there is
    more than one chunk: (logits, rows)."""
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    outs, rows = [], []
    columns = [TextColumn(f"predict: {what}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, transient=True, disable=len(index) <= chunk) as progress:
        task = progress.add_task(what, total=len(index))
        for start in range(0, len(index), chunk):
            logits, part = trained.logits(images, index[start:start + chunk])
            outs.append(logits)
            rows.append(part)
            progress.advance(task, len(part))
    if not outs:
        return torch.zeros(0, len(trained.classes)), np.zeros(0, dtype=np.int64)
    return torch.cat(outs), np.concatenate(rows)


def top_k_table(ids: list[str], logits, classes: list[str], top_k: int, temperature: float = 1.0) -> pd.DataFrame:
    """One row per image: id, predicted, confidence, then top1..topK and their probabilities
    (softmax of logits / temperature: the checkpoint's calibration)."""
    probs = (logits.double() / temperature).softmax(1).numpy()
    k = min(top_k, len(classes))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    names, at = np.array(classes), np.arange(len(ids))
    table = pd.DataFrame({"id": pd.Series(ids, dtype=str), "predicted": names[order[:, 0]],
                          "confidence": probs[at, order[:, 0]].round(5)})
    for j in range(k):
        table[f"top{j + 1}"] = names[order[:, j]]
        table[f"top{j + 1}_probability"] = probs[at, order[:, j]].round(5)
    return table


def predict_new(trained, input_path: Path, on_bad_image: str, path_column: str = "path", top_k: int = 5,
                option: str = "--input", empty_ok: bool = False) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """`top_k_table` of the images at `input_path` for a TrainedModel, and the bad files skipped.
    No image there is an error unless `empty_ok` (the pipeline's default, empty data/new)."""
    import torch

    samples, reader, bad = list_images(input_path, path_column, option)
    if bad and on_bad_image == "error":
        raise bad_image_error(bad, "predict", listed="")
    if not samples:
        if not empty_ok:
            raise VistageError(f"{option}: no images found in {input_path}")
        return top_k_table([], torch.zeros(0, len(trained.classes)), trained.classes, top_k, trained.temperature), bad
    size = trained.image_size
    policy = (trained.params.get("data") or {}).get("resize", "crop")
    with tempfile.TemporaryDirectory(prefix="vistage-predict-") as tmp:  # bounded memory however many images
        images = np.lib.format.open_memmap(Path(tmp) / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(samples), size, size, 3))
        ok, _, decode_bad = decode_into(images, samples, reader, policy, default_workers(), "predict")
        if decode_bad and on_bad_image == "error":
            raise bad_image_error(sorted(decode_bad), "predict", listed="")
        logits, rows = logits_with_progress(trained, images, np.flatnonzero(ok), f"{len(samples)} new images")
        del images
    return (top_k_table([samples[r].id for r in rows], logits, trained.classes, top_k, trained.temperature),
            bad + decode_bad)


def predict_images(checkpoint: Path, input_path: Path, device: str, on_bad_image: str, path_column: str = "path",
                   top_k: int = 5) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """`predict_new` with the checkpoint at `checkpoint` on `device` (a params device keyword)."""
    from .inference import TrainedModel
    from .runtime import resolve_device

    return predict_new(TrainedModel(checkpoint, resolve_device(device)), input_path, on_bad_image, path_column,
                       top_k)
