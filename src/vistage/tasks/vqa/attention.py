"""Where the model looked for each question: the last attention hop of `vqa.fusion: san` laid over
the image, for the report's gallery (the VQA counterpart of classification's Grad-CAM).

No gradients are needed: the fusion's own weights over the image's cells are the map (one weight
per cell of the frozen feature map, 15 x 15 for tf_efficientnet_lite0 at 480 px; with
vqa.image_grid the grid's regions, the whole-image region left out). The questions are picked as
Grad-CAM's images are (gradcam.pick_examples): the `gradcam_examples` most confident wrong answers
of the headline split, then a few confident right ones, one per answer. The PNGs and index.csv
share Grad-CAM's layout, so the predict stage's `--gradcam` folder (a DVC output for both tasks)
holds them; `id` is the question.
"""

from math import isqrt
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ...gradcam import INDEX, INDEX_COLUMNS, beside, pick_examples
from .metrics import VqaPredictions, score_rows

DISPLAY_SIDE = 240  # px of each half (image, overlay): 480 px photos side by side make a heavy report
CHUNK = 16  # questions (and their images) through the model at a time


def has_attention(model: torch.nn.Module) -> bool:
    """Whether the model's fusion keeps attention weights over the image (vqa.fusion: san)."""
    return hasattr(model.fusion, "attention")


def attention_examples(pred: VqaPredictions, n: int, list_answers: str = "text") -> pd.DataFrame:
    """The headline split's questions to show (pick_examples over them): columns id (the
    question), label (the expected answer), predicted, confidence, correct, kind, `at` (the
    position in `pred`) and image (its store row); a question asked twice of one image, once."""
    part = np.flatnonzero(pred.splits == pred.headline)
    expected, score = score_rows(pred, list_answers)
    table = pd.DataFrame({"id": pred.questions[part], "label": np.asarray(expected, dtype=object)[part],
                          "predicted": pred.answers[part], "confidence": pred.confidence[part],
                          "correct": np.asarray(score)[part] >= 1, "at": part, "image": pred.image_rows[part]})
    # DAQUAR asks some questions twice about the same image: one card each
    return pick_examples(table.drop_duplicates(["id", "image"]), n)


@torch.no_grad()
def attention_maps(model, task, rows: np.ndarray, images: np.ndarray, normalize, device) -> list[np.ndarray]:
    """The last hop's weights of each question row `rows[i]` about uint8 NHWC `images[i]`, as a
    square grid (side x side, summing to at most 1)."""
    model.eval()
    maps = []
    for start in range(0, len(rows), CHUNK):
        x = normalize(torch.from_numpy(np.ascontiguousarray(images[start:start + CHUNK])).to(device))
        inputs = {**task.inputs(rows[start:start + CHUNK]), "image_index": torch.arange(len(x))}
        task.forward(model, x, inputs, device)
        weights = model.fusion.attention.float().cpu()  # [B, cells]
        side = isqrt(weights.shape[1])
        maps += list(weights[:, weights.shape[1] - side * side:].reshape(-1, side, side).numpy())  # regions: whole dropped
    return maps


def overlay(image: np.ndarray, weights: np.ndarray) -> Image.Image:
    """The image beside it with the weights laid over (brightest where they are highest)."""
    shown = np.asarray(Image.fromarray(image).resize((DISPLAY_SIDE, DISPLAY_SIDE), Image.BILINEAR))
    mask = np.asarray(Image.fromarray((weights / max(float(weights.max()), 1e-12)).astype(np.float32))
                      .resize((DISPLAY_SIDE, DISPLAY_SIDE), Image.BILINEAR))
    return Image.fromarray(beside(shown, np.clip(mask, 0, 1)))


def write_attention(model, task, pred: VqaPredictions, normalize, device, out_dir: Path, n: int,
                    list_answers: str = "text") -> int:
    """PNGs and index.csv (gradcam.INDEX_COLUMNS) under `out_dir`, replaced as a whole; the number
    written. A model without attention writes an empty index."""
    from ...io import atomic_dir

    chosen = attention_examples(pred, n, list_answers) if has_attention(model) else pd.DataFrame(columns=["at"])
    with atomic_dir(out_dir) as tmp:
        lines = []
        if len(chosen):
            at = chosen["at"].to_numpy()
            images = task.store.images[pred.image_rows[at]]
            maps = attention_maps(model, task, pred.index[at], images, normalize, device)
            for k, (row, image, weights) in enumerate(zip(chosen.itertuples(), images, maps)):
                file = f"{row.kind}-{k:03d}.png"
                overlay(np.asarray(image), weights).save(tmp / file)
                lines.append([file, row.id, row.label, row.predicted, row.confidence, row.kind])
        pd.DataFrame(lines, columns=INDEX_COLUMNS).to_csv(tmp / INDEX, index=False)
    return len(lines)
