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


def test_cache_only_without_augmentation():
    model = build_model("simple_cnn", 3)
    assert why_not_cached(tiny_params(freeze="backbone", augment=[]), model) is None
    assert "augment" in why_not_cached(tiny_params(freeze="backbone", augment=["flip"]), model)


@pytest.mark.parametrize("freeze_epochs", [0, 1], ids=["linear-probe", "two-stage"])
def test_frozen_epochs_on_cached_features_train_as_uncached(digits_store, tmp_path, capsys, freeze_epochs):
    """The cache changes the cost, not the result: same metrics (up to float rounding) and weights."""
    common = dict(model="simple_cnn", freeze="backbone", freeze_epochs=freeze_epochs, epochs=2, augment=[], lr=0.01)
    cached = train(tiny_params(**common), train_paths(digits_store, tmp_path / "cached"))
    assert "computed once" in capsys.readouterr().err
    plain = train(tiny_params(**common, feature_cache=False), train_paths(digits_store, tmp_path / "plain"))
    for key in ("train/loss", "val/loss", "val/acc", "best_val_acc"):
        assert cached[key] == pytest.approx(plain[key], abs=2e-3), key
    a = torch.load(tmp_path / "cached/models/last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "plain/models/last.pt", weights_only=True)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3) for k in a)


def test_cache_off_with_augmentation_says_why(digits_store, tmp_path, capsys):
    train(tiny_params(model="simple_cnn", freeze="backbone", epochs=1, augment=["flip"]),
          train_paths(digits_store, tmp_path))
    assert "feature cache off: augment" in capsys.readouterr().err
