"""Model registry: vistage's own small models plus every timm architecture by name."""

from functools import lru_cache

import torch
from torch import nn

from .errors import VistageError
from .registry import Provider, Registry


class TimmModels(Provider):
    help = "any timm architecture by name (timm.list_models())"

    @lru_cache(maxsize=1)
    def names(self) -> tuple[str, ...]:
        import timm

        return tuple(timm.list_models())

    def has(self, name: str) -> bool:
        import timm

        return timm.is_model(name)

    def builder(self, name: str):
        def build(num_classes: int, pretrained: bool = False, drop_rate: float = 0.0) -> nn.Module:
            import timm

            try:
                return timm.create_model(name, pretrained=pretrained, num_classes=num_classes,
                                         drop_rate=drop_rate)
            except (RuntimeError, OSError) as exc:  # no weights offline, hub unreachable, ...
                if pretrained:
                    raise VistageError(f"model {name!r}: could not load pretrained weights: "
                                       f"{str(exc).splitlines()[0]}") from None
                raise

        return build


MODELS = Registry("model", provider=TimmModels())


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class SimpleCNN(nn.Module):
    """Three VGG-style blocks and global pooling: fast on a CPU, right for small images."""

    def __init__(self, num_classes: int, width: int = 32, drop_rate: float = 0.0):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_bn(3, w), _conv_bn(w, w), nn.MaxPool2d(2),
            _conv_bn(w, 2 * w), _conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),
            _conv_bn(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(4 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@MODELS.register("simple_cnn", help="vistage's 5-conv CNN for small images (fast on CPU)")
def simple_cnn(num_classes: int, pretrained: bool = False, drop_rate: float = 0.0) -> nn.Module:
    if pretrained:
        raise VistageError("model 'simple_cnn' has no pretrained weights; set pretrained: false")
    return SimpleCNN(num_classes, drop_rate=drop_rate)


def build_model(name: str, num_classes: int, pretrained: bool = False, drop_rate: float = 0.0) -> nn.Module:
    return MODELS.get(name, "model")(num_classes=num_classes, pretrained=pretrained, drop_rate=drop_rate)
