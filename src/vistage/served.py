"""Running an exported model (models/export/model.onnx and its model.json) as a server would:
onnxruntime, numpy preprocessing, no checkpoint and no training code.

`OnnxModel` has what new_images.predict_new asks of a model (classes, image_size, the resize rule
in params, logits), so `vistage predict --model model.onnx --input DIR` decodes and resizes new
images exactly as the PyTorch path does and writes the same CSV.
"""

import json
from pathlib import Path

import numpy as np

from .errors import VistageError

INSTALL = "pip install 'vistage[export]'"
INPUT, OUTPUT = "image", "logits"  # the exported graph's input and output names


def require(modules: tuple[str, ...], what: str) -> None:
    """One line naming the missing packages and how to install them, before any work."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise VistageError(f"{what} needs the package(s) {', '.join(missing)}, not installed: {INSTALL}")


def preprocess(images: np.ndarray, mean, std) -> np.ndarray:
    """uint8 NHWC RGB images of the store's size -> the float32 NCHW input of the exported graph:
    (pixels / 255 - mean) / std per channel, in float32 as batches.Normalizer computes it."""
    x = images.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def read_card(path: Path) -> dict:
    """model.json beside an exported model file."""
    card_path = path.with_name("model.json")
    if not card_path.is_file():
        raise VistageError(f"{path}: no model.json beside it; export the model with the export stage "
                           "(params export: [onnx])")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VistageError(f"{card_path}: not readable JSON ({exc})") from None
    if card.get("task") != "classify":
        raise VistageError(f"{card_path}: {card.get('note') or 'not a classifier exported by vistage'}")
    return card


class OnnxModel:
    """An exported model.onnx with its model.json, on onnxruntime's CPU provider."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise VistageError(f"--model: {path} does not exist")
        card = read_card(path)
        require(("onnxruntime",), f"predict --model {path}")
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a file it cannot load
            raise VistageError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:200]})") from None
        pre = card["preprocessing"]
        self.classes: list[str] = card["classes"]
        self.image_size: int = int(pre["image_size"])
        self.params = {"data": {"resize": pre["resize"]}}  # what predict_new reads of a checkpoint's params
        self.mean, self.std = pre["mean"], pre["std"]
        self.temperature = float(card.get("temperature", 1.0))  # the checkpoint's calibration, as predict applies it

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT], {INPUT: x})[0]

    def logits(self, images: np.ndarray, index: np.ndarray, batch_size: int = 256):
        """(logits as a float32 torch tensor, the rows in their order), as TrainedModel.logits."""
        import torch

        index = np.asarray(index)
        batches = [np.sort(index[s:s + batch_size]) for s in range(0, len(index), batch_size)]
        if not batches:
            return torch.zeros(0, len(self.classes)), index
        outs = [self.run(preprocess(images[b], self.mean, self.std)) for b in batches]
        return torch.from_numpy(np.concatenate(outs).astype(np.float32)), np.concatenate(batches)
