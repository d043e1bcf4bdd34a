"""Reading torch files (checkpoints, weights) without ever running code from them."""

from pathlib import Path

import torch

from .errors import VistageError


def load_tensors(path: Path, what: str, map_location="cpu"):
    """`torch.load(weights_only=True)` with one-line errors. A file holding anything but tensors
    and plain containers (a pickle that would run code, a model object) is refused; torch's own
    message suggests `weights_only=False`, which would run that code, so it is never passed on."""
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before failing
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        if not _looks_torch_saved(path):  # text, an image, ...: torch's unpickler fails on it just the same
            raise VistageError(f"{path}: not a readable {what} (not a file torch saved)") from None
        raise VistageError(f"{path}: refused as a {what}: it holds objects other than tensors and plain "
                           "containers, and vistage never runs code from a file") from None
    except Exception as exc:  # truncated, not a torch file at all, a directory, ...
        reason = "not a file torch saved" if isinstance(exc, (KeyError, EOFError, RuntimeError)) else \
            f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]}"
        raise VistageError(f"{path}: not a readable {what} ({reason})") from None


def _looks_torch_saved(path: Path) -> bool:
    """Whether the file starts as torch.save writes: a zip archive, or a (legacy) pickle."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head.startswith((b"PK\x03\x04", b"\x80"))
