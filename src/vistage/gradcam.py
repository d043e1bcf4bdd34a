"""Grad-CAM overlays (the `grad-cam` package) for the test images a person should look at: the
most confident mistakes, and a few confident correct images for comparison (recipe R4 formed its
hypotheses from such maps).

The map is of the predicted class: for a mistake it shows what the model took for evidence of
the wrong class. Each PNG is the image (at the model's input size, enlarged to at least
DISPLAY_MIN px) beside its overlay. The target layer is picked for the model unless
`gradcam_layer` names one: a timm model's last feature stage (`feature_info`), else the block
holding the last convolution (vistage's simple_cnn: its last conv-BN-ReLU block). A layer that
outputs tokens (ViTs) is mapped back to its square grid, prefix tokens dropped.
"""

from math import isqrt
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from .errors import VistageError, closest

DISPLAY_MIN = 160  # px: 8 or 32 px store images are too small to see
CHUNK = 16  # images per Grad-CAM pass: bounds the memory of the kept activations and gradients
INDEX = "index.csv"
INDEX_COLUMNS = ["file", "id", "label", "predicted", "confidence", "kind"]


def pick_examples(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """From a predictions table (id, label, predicted, confidence, correct; "" label = unlabeled):
    the n most confident mistakes, then max(1, n // 4) most confident correct images, one per
    class; a column `kind` says which."""
    labeled = table[table["label"] != ""].sort_values("confidence", ascending=False, kind="stable")
    mistakes = labeled[~labeled["correct"]].head(n).assign(kind="mistake")
    correct = labeled[labeled["correct"]].drop_duplicates("label").head(max(1, n // 4)).assign(kind="correct")
    return pd.concat([mistakes, correct]) if n else labeled.head(0).assign(kind="")


def _module_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def target_layer(model: nn.Module, name: str | None = None) -> tuple[str, nn.Module]:
    """(module path, module) of the layer whose activations Grad-CAM weighs."""
    if name:
        try:
            return name, model.get_submodule(name)
        except AttributeError:
            names = _module_names(model)
            hint = closest(name, names)
            hint = f"did you mean {hint[0]!r}? " if hint else ""
            raise VistageError(f"params.yaml: gradcam_layer: {name!r} is not a module of the model; {hint}"
                               f"its last modules: {', '.join(names[-6:])}") from None
    info = getattr(model, "feature_info", None)  # timm: the stages' output modules, deepest last
    if info:
        last = info[-1]["module"] if isinstance(info[-1], dict) else info.get_dicts()[-1]["module"]
        try:
            return last, model.get_submodule(last)
        except AttributeError:
            pass  # a renamed module (e.g. a replaced stem): fall back to the last convolution
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise VistageError("Grad-CAM: the model has no convolution to pick a target layer from; "
                           "set gradcam_layer to a module path, or gradcam_examples: 0")
    parent = convs[-1].rpartition(".")[0]  # the block around it: its output has passed the activation
    chosen = parent if parent and len(list(model.get_submodule(parent).children())) > 1 else convs[-1]
    return chosen, model.get_submodule(chosen)


def tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
    """(batch, tokens, channels) -> (batch, channels, side, side): the patch tokens on their grid,
    the leading class/register tokens dropped."""
    if tokens.ndim != 3:
        return tokens
    n = tokens.shape[1]
    side = isqrt(n)
    while side and n - side * side > 8:  # more than a few prefix tokens: not a square grid after all
        side -= 1
    grid = tokens[:, n - side * side:]
    return grid.reshape(tokens.shape[0], side, side, tokens.shape[2]).permute(0, 3, 1, 2)


def _display(rgb: np.ndarray) -> Image.Image:
    img = Image.fromarray(rgb)
    if img.height < DISPLAY_MIN:
        scale = -(-DISPLAY_MIN // img.height)
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)  # pixels stay visible as pixels
    return img


def overlays(trained, images: np.ndarray, classes: list[int], layer: nn.Module) -> list[Image.Image]:
    """Image beside its Grad-CAM overlay for each uint8 HWC image, for the class given."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = trained.model.eval()
    maps = []
    with GradCAM(model=model, target_layers=[layer], reshape_transform=tokens_to_grid) as cam:
        for start in range(0, len(images), CHUNK):  # activations and gradients of a chunk at a time
            x = trained.normalize(torch.from_numpy(np.ascontiguousarray(images[start:start + CHUNK]))
                                  .to(trained.device))
            maps += list(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c))
                                                      for c in classes[start:start + CHUNK]]))
    side = maps[0].shape[-1] if maps else 0
    out = []
    for img, mask in zip(images, maps):
        shown = np.asarray(Image.fromarray(img).resize((side, side), Image.BILINEAR)) if img.shape[0] != side else img
        out.append(_display(beside(shown, mask)))
    return out


def beside(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 HWC `image`, a white gap, then the image with `mask` (its size, in [0, 1]) laid over it
    as a heat map (red: high). Grad-CAM's pictures and VQA's attention (tasks/vqa/attention.py)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    over = show_cam_on_image(image.astype(np.float32) / 255.0, mask, use_rgb=True, image_weight=0.6)
    gap = np.full((image.shape[0], max(1, image.shape[0] // 16), 3), 255, np.uint8)
    return np.concatenate([image, gap, over], axis=1)


def write_gradcam(trained, store_images: np.ndarray, pred, out_dir: Path, n: int, layer_name: str | None) -> int:
    """PNGs and index.csv (file, id, label, predicted, confidence, kind) under `out_dir`, for the
    examples `pick_examples` chooses from `pred` (one split's Predictions); the number written.
    The folder is replaced as a whole, so no overlay of an earlier run stays behind."""
    from .io import atomic_dir

    table = pred.table()
    chosen = pick_examples(table, n)
    class_index = {name: k for k, name in enumerate(pred.classes)}
    with atomic_dir(out_dir) as tmp:
        rows = []
        if len(chosen):
            name, layer = target_layer(trained.model, layer_name)
            pictures = overlays(trained, store_images[chosen["index"].to_numpy()],
                                [class_index[c] for c in chosen["predicted"]], layer)
            for k, ((_, row), picture) in enumerate(zip(chosen.iterrows(), pictures)):
                file = f"{row['kind']}-{k:03d}.png"
                picture.save(tmp / file)
                rows.append([file, row["id"], row["label"], row["predicted"], row["confidence"], row["kind"]])
        pd.DataFrame(rows, columns=INDEX_COLUMNS).to_csv(tmp / INDEX, index=False)
    return len(rows)
