"""Checkpoints: written atomically, read with `weights_only=True` (no arbitrary code on load)."""

from pathlib import Path

import torch

from .errors import VistageError
from .io import atomic_path


def save_checkpoint(path: str | Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise VistageError(f"{path}: checkpoint missing; run `vistage train` first")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, not a checkpoint, unsafe pickle content
        raise VistageError(f"{path}: not a readable vistage checkpoint ({str(exc).splitlines()[0]})") from None
