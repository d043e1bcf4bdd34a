import math

import pytest
import torch

from vistage.augment import AUGMENTATIONS, build_augment
from vistage.data.sources import SOURCES, load_source
from vistage.errors import VistageError
from vistage.losses import LOSSES
from vistage.models import MODELS, build_model
from vistage.optim import OPTIMIZERS, SCHEDULERS
from vistage.params import Params
from vistage.registries import ALL


def test_every_registry_is_listed():
    assert set(ALL) == {"models", "optimizers", "schedulers", "losses", "augmentations", "sources"}


# our own models plus a spread of timm families (timm's test_* models are tiny versions)
MODEL_NAMES = MODELS.own_names() + ["resnet18", "test_efficientnet", "test_vit", "test_convnext"]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_models_build_and_classify(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, drop_rate=0.1).eval()
    size = 32
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)


def test_any_timm_model_is_a_valid_keyword():
    import timm

    assert all(name in MODELS for name in timm.list_models()[:50])
    assert "resnet1800" not in MODELS


def test_unknown_model_suggests_closest():
    with pytest.raises(VistageError, match="did you mean 'resnet18'"):
        MODELS.get("resnet1800", "model")


def test_own_model_refuses_pretrained():
    with pytest.raises(VistageError, match="no pretrained weights"):
        build_model("simple_cnn", 3, pretrained=True)


COMMON_OPTIMIZERS = ["sgd", "momentum", "adam", "adamw", "rmsprop", "lamb", "nadam", "radam"]


@pytest.mark.parametrize("name", COMMON_OPTIMIZERS)
def test_optimizers_take_a_step(name):
    assert name in OPTIMIZERS
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    before = model.weight.detach().clone()
    opt = OPTIMIZERS.get(name)(model, lr=0.1, weight_decay=1e-4, momentum=0.9)
    model(torch.randn(8, 4)).pow(2).mean().backward()
    opt.step()
    assert not torch.equal(before, model.weight)


@pytest.mark.parametrize("name", SCHEDULERS.own_names())
def test_schedulers_keep_lr_positive_and_restore_state(name):
    p = Params(epochs=4, lr=0.1, scheduler=name, lr_step_epochs=1, lr_patience=0, warmup_epochs=1)
    model = torch.nn.Linear(2, 2)

    def make():
        opt = torch.optim.SGD(model.parameters(), lr=p.lr)
        return opt, SCHEDULERS.get(name)(opt, p, steps_per_epoch=5)

    opt, sched = make()
    lrs = []
    for epoch in range(p.epochs):
        for _ in range(5):
            opt.step()
            sched.step_batch()
        sched.step_epoch(0.5)  # a stalled metric: plateau decays
        lrs.append(sched.lr)
        if epoch == 1:
            saved = sched.state_dict()
    assert all(lr > 0 and math.isfinite(lr) for lr in lrs)
    if name != "none":
        assert len(set(lrs)) > 1, f"{name} never changed the learning rate: {lrs}"
    _, restored = make()
    restored.load_state_dict(saved)
    assert restored.state_dict() == saved


@pytest.mark.parametrize("name", LOSSES.own_names())
def test_losses(name):
    loss = LOSSES.get(name)(Params(label_smoothing=0.1))
    value = loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    assert value.ndim == 0 and value.item() > 0


@pytest.mark.parametrize("name", AUGMENTATIONS.own_names())
def test_augmentations_keep_shape_and_change_pixels(name):
    torch.manual_seed(0)
    x = torch.randn(16, 3, 12, 12)
    out = build_augment([name], 12)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not torch.equal(out, x)
    # pixels are moved, not invented: each image keeps its values (up to the reflect padding)
    assert torch.isclose(out.abs().max(), x.abs().max()) or out.abs().max() <= x.abs().max()


PACKAGED_SOURCES = ["digits", "easy-vqa"]  # the file sources are tested on generated files in test_sources.py


@pytest.mark.parametrize("name", PACKAGED_SOURCES)
def test_packaged_sources_give_labelled_samples(name):
    from vistage.data.decode import decode_one

    data = load_source(Params().data.model_copy(update={"source": name}))
    assert data.classes and len(data.samples) > len(data.classes)
    payload = next(data.reader.payloads(data.samples[:1]))
    arr, _ = decode_one(payload, 16, "crop")
    assert arr.shape == (16, 16, 3) and data.samples[0].label in data.classes


def test_every_source_is_tested():
    from pathlib import Path

    tested = set(PACKAGED_SOURCES) | {"folder", "csv", "cifar"}
    assert set(SOURCES.own_names()) == tested
    assert all(f"\"{name}\"" in (Path(__file__).parent / "test_sources.py").read_text() for name in ("folder", "csv", "cifar"))
