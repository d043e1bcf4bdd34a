"""Issue 11: the frozen-backbone feature cache, the airbench-style network and its training keywords."""

import numpy as np
import pytest
import torch

from vistage.feature_cache import backbone_of, why_not_cached
from vistage.models import build_model, classifier
from vistage.training import train

from .conftest import tiny_params, train_paths


@pytest.mark.parametrize("name", ["simple_cnn", "resnet18"])
def test_classifier_of_backbone_features_is_the_model(name):
    torch.manual_seed(0)
    model = build_model(name, 7).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(classifier(model)(backbone_of(model)(x)), model(x), atol=1e-5)


def test_cache_only_without_augmentation_other_than_flip():
    model = build_model("simple_cnn", 3)
    assert why_not_cached(tiny_params(freeze="backbone", augment=[]), model) is None
    assert why_not_cached(tiny_params(freeze="backbone", augment=["flip"]), model) is None  # two cached views
    assert "augment: ['crop']" in why_not_cached(tiny_params(freeze="backbone", augment=["flip", "crop"]), model)


@pytest.mark.parametrize("freeze_epochs,augment", [(0, []), (1, []), (1, ["flip"])],
                         ids=["linear-probe", "two-stage", "two-stage-flip-tta"])
def test_frozen_epochs_on_cached_features_train_as_uncached(digits_store, tmp_path, capsys, freeze_epochs, augment):
    """The cache changes the cost, not the result: same metrics (up to float rounding) and weights.
    With augment: [flip] the cache holds each image's two views and draws one per image as the
    batch flip does (same random draws), and validates with flip TTA on them."""
    common = dict(model="simple_cnn", freeze="backbone", freeze_epochs=freeze_epochs, epochs=2, augment=augment,
                  tta=augment, lr=0.01, max_steps_per_epoch=4)
    cached = train(tiny_params(**common), train_paths(digits_store, tmp_path / "cached"))
    said = capsys.readouterr().err
    assert "computed once" in said and ("mirror images" in said) == bool(augment)
    plain = train(tiny_params(**common, feature_cache=False), train_paths(digits_store, tmp_path / "plain"))
    for key in ("train/loss", "val/loss", "val/acc", "best_val_acc"):
        assert cached[key] == pytest.approx(plain[key], abs=2e-3), key
    a = torch.load(tmp_path / "cached/models/last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "plain/models/last.pt", weights_only=True)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3) for k in a)


def test_cache_off_with_augmentation_says_why(digits_store, tmp_path, capsys):
    train(tiny_params(model="simple_cnn", freeze="backbone", epochs=1, augment=["crop"], max_steps_per_epoch=1),
          train_paths(digits_store, tmp_path))
    assert "feature cache off: augment: ['crop']" in capsys.readouterr().err


def test_patch_whitening_whitens_patches():
    from vistage.models import AirbenchNet

    torch.manual_seed(0)
    x = torch.randn(64, 3, 16, 16).cumsum(-1)  # strongly correlated neighbouring pixels
    net = AirbenchNet(10, (8, 16, 16))
    net.init_whitening(x)
    out = torch.nn.functional.conv2d(x, net.whiten.weight[:12])  # the 12 whitened directions
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    cov = torch.cov(flat.T)
    assert torch.allclose(cov, torch.diag(torch.diagonal(cov)), atol=0.05)  # decorrelated
    assert not net.whiten.weight.requires_grad


@pytest.mark.slow
def test_airbench_trains_with_its_keywords(digits_store, tmp_path):
    """The issue-11 keywords together: airbench_small, patch whitening, Nesterov SGD, triangular
    schedule, translate, data on the device, flip+translate TTA in validation and predict."""
    from vistage.inference import TrainedModel

    params = tiny_params(model="airbench_small", patch_whitening=True, optimizer="sgd", lr=0.2, momentum=0.85,
                         scheduler="triangular", warmup_epochs=0.5, augment=["flip", "translate"], translate_pad=1,
                         data_on_device=True, tta=["flip", "translate"], label_smoothing=0.2, epochs=2, input_size=16,
                         data={"image_size": 8})
    paths = train_paths(digits_store, tmp_path)
    result = train(params, paths)
    assert result["val/acc"] > 0.3  # chance: 0.1
    trained = TrainedModel(paths.models / "best.pt", torch.device("cpu"))
    from vistage.data.store import load_store

    store = load_store(paths.store)
    logits, rows = trained.logits(store.images, np.arange(20))
    assert logits.shape == (20, 10) and list(rows) == list(range(20))


def test_data_on_device_trains_as_from_the_store(digits_store, tmp_path, capsys):
    a = train(tiny_params(epochs=2, max_steps_per_epoch=3), train_paths(digits_store, tmp_path / "a"))
    assert "data_on_device" not in capsys.readouterr().err
    b = train(tiny_params(epochs=2, max_steps_per_epoch=3, data_on_device=True), train_paths(digits_store, tmp_path / "b"))
    a.pop("throughput"), b.pop("throughput")
    assert a == b
    if not torch.cuda.is_available():  # on the CPU the setting only copies the store: said in one line
        warned = [line for line in capsys.readouterr().err.splitlines() if "data_on_device" in line]
        assert len(warned) == 1 and warned[0].startswith("warning: params.yaml: data_on_device: true on the CPU")


def test_tta_views():
    from vistage.inference import tta_logits

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    x = torch.randn(5, 3, 8, 8)
    plain = tta_logits(model, x)
    assert torch.allclose(plain, model(x))
    flipped = tta_logits(model, x, ["flip"])
    assert torch.allclose(flipped, (model(x) + model(x.flip(-1))) / 2, atol=1e-6)
    assert tta_logits(model, x, ["flip", "translate"]).shape == (5, 4)


def test_triangular_schedule_rises_then_falls():
    from vistage.optim import SCHEDULERS

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = SCHEDULERS.get("triangular", "scheduler")(opt, tiny_params(epochs=4, warmup_epochs=1), 10)
    lrs = [schedule.lr]
    for _ in range(40):
        opt.step()
        schedule.step_batch()
        lrs.append(schedule.lr)
    assert lrs[0] == pytest.approx(0.2) and max(lrs) == pytest.approx(1.0) and lrs.index(1.0) == 10
    assert lrs[-1] == pytest.approx(0.07)


def test_translate_shifts_within_pad():
    from vistage.augment import build_augment

    plan = build_augment(["translate"], 8, 10, tiny_params(translate_pad=2))
    x = torch.arange(64.0).view(1, 1, 8, 8).repeat(16, 3, 1, 1)
    out = plan.apply_batch(x)
    assert out.shape == x.shape
    # the centre pixel moves by at most 2 in each direction
    centre = x[0, 0, 4, 4]
    for img in out[:, 0]:
        assert (img[2:7, 2:7] == centre).any()


def test_frozen_backbone_keeps_its_statistics_and_the_dropout_before_the_classifier():
    """A linear probe: the backbone in eval mode, but the model's own flag in training mode, so
    timm's drop_rate (dropout before the classifier) still applies."""
    from vistage.models import train_mode

    model = build_model("resnet18", 3, drop_rate=0.5)
    train_mode(model, backbone_frozen=True)
    assert model.training and model.fc.training
    assert not any(m.training for name, m in model.named_modules() if name and not name.startswith("fc"))
    x = torch.randn(4, 3, 32, 32)
    running = model.bn1.running_mean.clone()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))  # dropout on the pooled features
    assert torch.equal(model.bn1.running_mean, running)


def test_freeze_norm_keeps_batchnorm_statistics_in_fine_tuning():
    from vistage.models import train_mode

    model = build_model("resnet18", 3)
    train_mode(model, backbone_frozen=False, norm_frozen=True)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms) and model.layer1[0].conv1.training
    train_mode(model, backbone_frozen=False)
    assert all(m.training for m in norms)


def test_val_every_validates_every_nth_epoch_and_the_last(digits_store, tmp_path, capsys):
    """val_every: 2 over 3 epochs validates after epochs 2 and 3 only; the curves skip epoch 1,
    best.pt comes from a validated epoch, and the result reports the last validation."""
    paths = train_paths(digits_store, tmp_path)
    result = train(tiny_params(model="simple_cnn", epochs=3, val_every=2, scheduler="plateau", max_steps_per_epoch=2),
                   paths)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch ")]
    assert ["val/acc" in line for line in lines] == [False, True, True]
    val_steps = [row.split("\t")[0] for row in (paths.live / "plots/metrics/val/acc.tsv").read_text().splitlines()[1:]]
    assert val_steps == ["1", "2"] and len((paths.live / "plots/metrics/train/loss.tsv").read_text().splitlines()) == 4
    assert "val/acc" in result and result["best_val_acc"] >= result["val/acc"]
    assert torch.load(paths.models / "best.pt", weights_only=True)["epoch"] in (2, 3)


@pytest.mark.parametrize("name", ["simple_cnn", "resnet18"])
def test_feature_norm_power_classifies_the_normalized_features(name):
    """feature_norm: power swaps the classifier's linear layer for one that reads each feature's
    signed square root, scaled to unit RMS: the cache's split (features, then classifier) still
    gives the model's output, and the state-dict keys stay those of the plain model."""
    from vistage.models import PowerNormLinear

    torch.manual_seed(0)
    plain = build_model(name, 7).eval()
    torch.manual_seed(0)
    model = build_model(name, 7, feature_norm="power").eval()
    assert list(model.state_dict()) == list(plain.state_dict())
    linear = [m for m in classifier(model).modules() if isinstance(m, torch.nn.Linear)][0]
    assert isinstance(linear, PowerNormLinear)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        features = backbone_of(model)(x)
        rooted = features.sign() * features.abs().sqrt()
        expected = torch.nn.functional.linear(rooted / rooted.norm(dim=1, keepdim=True) * features.shape[1] ** 0.5,
                                              linear.weight, linear.bias)
        assert torch.allclose(model(x), expected, atol=1e-5)
        assert torch.allclose(classifier(model)(features), model(x), atol=1e-5)


def test_feature_norm_power_has_finite_gradients_at_zero_features():
    from vistage.models import PowerNormLinear

    layer = PowerNormLinear(4, 3)
    x = torch.tensor([[0.0, 0.0, 2.0, -1.0], [0.0, 0.0, 0.0, 0.5]], requires_grad=True)
    layer(x).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(layer.weight.grad).all()


def test_feature_norm_power_solves_and_reloads_from_the_checkpoint(digits_store, tmp_path):
    """head: solve on the normalized cached features, and predict's model from the checkpoint
    scores as the run validated: the normalization travels with the params in the checkpoint."""
    from vistage.checkpoint import load_checkpoint
    from vistage.models import build_from_params

    params = tiny_params(freeze="backbone", head="solve", augment=[], epochs=1, feature_norm="power")
    result = train(params, train_paths(digits_store, tmp_path))
    assert result["head_val_acc"] > 0.5
    ckpt = load_checkpoint(tmp_path / "models" / "best.pt")
    model = build_from_params(ckpt["params"], 10, pretrained=False)
    model.load_state_dict(ckpt["model"])
    assert any(type(m).__name__ == "PowerNormLinear" for m in model.modules())


def test_feature_norm_with_task_vqa_is_refused(tmp_path):
    from vistage.errors import VistageError
    from vistage.params import load_params

    (tmp_path / "params.yaml").write_text("task: vqa\nfeature_norm: power\n")
    with pytest.raises(VistageError, match="feature_norm: 'power' is not read with task: vqa"):
        load_params(tmp_path / "params.yaml")
