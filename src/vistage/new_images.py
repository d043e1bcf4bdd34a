"""Predicting on new, unlabeled images (a competition's hidden test set, this week's photos): a
folder or archive of images at any depth, or a CSV of paths. They are decoded and resized exactly
as prepare did for the store the checkpoint was trained on (its size and resize policy), bad files
follow `on_bad_image`, and the class names come from the checkpoint."""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .data.base import FileReader, Reader, Sample
from .data.decode import decode_all, default_workers
from .data.folder import list_entries
from .errors import VistageError


def list_images(path: Path, path_column: str = "path") -> tuple[list[Sample], Reader, list[tuple[str, str]]]:
    """The images to predict: (samples, reader, refused entries). A CSV's paths are relative to
    its folder and may not leave it."""
    if not path.exists():
        raise VistageError(f"--input: {path} does not exist")
    if path.suffix.lower() != ".csv":
        entries, reader, bad, _ = list_entries(path)
        return [Sample(rel, None, ref) for rel, ref in entries], reader, bad
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise VistageError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    if path_column not in table.columns:
        raise VistageError(f"{path}: no column {path_column!r} (data.csv_path_column); columns: "
                           f"{', '.join(table.columns)}")
    root, samples, bad = path.parent.resolve(), [], []
    for row, rel in enumerate(table[path_column].str.strip(), start=2):
        full = (root / rel).resolve()
        if not rel or not full.is_relative_to(root) or not full.is_file():
            bad.append((f"{path} row {row}: {rel}", "file not found, or outside the CSV's folder"))
            continue
        samples.append(Sample(rel, None, str(full)))
    return samples, FileReader(), bad


def _decode(samples, reader, size: int, policy: str, on_bad_image: str, workdir: Path):
    """Decode into a memory-mapped array (bounded memory however many images); (array, kept rows, bad)."""
    images = np.lib.format.open_memmap(workdir / "images.npy", mode="w+", dtype=np.uint8,
                                       shape=(len(samples), size, size, 3))
    ok, bad = np.zeros(len(samples), dtype=bool), []
    columns = [TextColumn("predict: decoding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("decode", total=len(samples))
        for i, arr, _, error in decode_all(reader.payloads(samples), size, policy, default_workers(),
                                           lambda k: progress.advance(task, k)):
            if error:
                bad.append((samples[i].id, error))
            else:
                images[i], ok[i] = arr, True
    if bad and on_bad_image == "error":
        bad.sort()
        raise VistageError(f"predict: {len(bad)} bad image(s): {bad[0][0]} ({bad[0][1]}) (set data.on_bad_image: "
                           "skip to leave them out)")
    return images, np.flatnonzero(ok), bad


def predict_images(checkpoint: Path, input_path: Path, device: str, on_bad_image: str, path_column: str = "path",
                   top_k: int = 5) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """One row per image: id, predicted, confidence, then top1..topK and their probabilities."""
    from .inference import TrainedModel
    from .runtime import resolve_device

    trained = TrainedModel(checkpoint, resolve_device(device))
    samples, reader, bad = list_images(input_path, path_column)
    if bad and on_bad_image == "error":
        raise VistageError(f"predict: {len(bad)} bad entries: {bad[0][0]} ({bad[0][1]}) (set data.on_bad_image: "
                           "skip to leave them out)")
    if not samples:
        raise VistageError(f"--input: no images found in {input_path}")
    policy = (trained.params.get("data") or {}).get("resize", "crop")
    with tempfile.TemporaryDirectory(prefix="vistage-predict-") as tmp:
        images, kept, decode_bad = _decode(samples, reader, trained.image_size, policy, on_bad_image, Path(tmp))
        logits, rows = trained.logits(images, kept)
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
