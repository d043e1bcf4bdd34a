"""Grad-CAM overlays (target layer picked for timm models and vistage's own, or named in params)
and the inference-cost file, on tiny untrained models: no training, a few 16 px images."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from vistage.batches import Normalizer
from vistage.cost import measure_cost
from vistage.errors import VistageError
from vistage.evaluation import Predictions
from vistage.gradcam import INDEX_COLUMNS, pick_examples, target_layer, tokens_to_grid, write_gradcam
from vistage.models import build_model

SIZE = 16


def as_trained(model_name: str, classes: int = 3, input_size: int | None = None) -> SimpleNamespace:
    """What inference.TrainedModel offers, around an untrained model."""
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = build_model(model_name, classes).eval()
    return SimpleNamespace(model=model, device=device, image_size=SIZE, classes=[str(k) for k in range(classes)],
                           normalize=Normalizer([0.5] * 3, [0.25] * 3, device, size=input_size))


def store_and_predictions(n: int = 12, classes: int = 3) -> tuple[np.ndarray, Predictions]:
    """n random images and predictions where rows 0..n/2 are wrong and the rest right."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    logits = rng.normal(size=(n, classes)).astype(np.float32)
    predicted = logits.argmax(1)
    labels = np.where(np.arange(n) < n // 2, (predicted + 1) % classes, predicted)
    names = np.array([f"c{k}" for k in range(classes)])
    pred = Predictions(names, np.array(["test"] * n), np.arange(n), np.array([f"img{i}.png" for i in range(n)]),
                       labels.astype(np.int64), logits)
    return images, pred


def test_pick_examples_takes_the_most_confident_mistakes_then_a_few_correct():
    table = pd.DataFrame({"index": range(6), "id": list("abcdef"), "label": ["x", "x", "y", "y", "x", ""],
                          "predicted": ["y", "x", "x", "y", "x", "x"],
                          "confidence": [.6, .9, .95, .8, .99, 1.0], "correct": [False, True, False, True, True, False]})
    chosen = pick_examples(table, 4)
    # mistakes by confidence: c (.95), a (.6); correct, one per class: e (x, .99), d (y, .8) -> max(1, 4 // 4) = 1
    assert chosen["id"].tolist() == ["c", "a", "e"] and chosen["kind"].tolist() == ["mistake", "mistake", "correct"]
    assert "f" not in chosen["id"].tolist()  # unlabeled: neither mistake nor correct
    assert pick_examples(table, 0).empty


@pytest.mark.parametrize("model_name, layer", [("simple_cnn", "features.6"), ("test_resnet", "layer4"),
                                               ("test_efficientnet", "blocks.6"), ("test_vit", "blocks.5")])
def test_the_target_layer_is_picked_for_vistage_and_timm_models(model_name, layer):
    model = build_model(model_name, 3)
    if layer.startswith("blocks") and not hasattr(model, "feature_info"):
        pytest.skip("this timm version has no feature_info for the model")
    name, module = target_layer(model)
    assert name.split(".")[0] == layer.split(".")[0] and module is model.get_submodule(name)
    if model_name == "simple_cnn":
        assert name == "features.6"  # the last conv-BN-ReLU block: after the activation


def test_a_named_layer_overrides_and_a_wrong_name_is_one_line():
    model = build_model("simple_cnn", 3)
    assert target_layer(model, "features.3")[1] is model.features[3]
    with pytest.raises(VistageError) as info:
        target_layer(model, "features.66")
    message = str(info.value)
    assert "\n" not in message and "gradcam_layer: 'features.66' is not a module" in message
    assert "did you mean 'features.6'" in message


def test_tokens_are_mapped_back_to_their_grid():
    tokens = torch.arange(2 * 17 * 4, dtype=torch.float32).reshape(2, 17, 4)  # a class token + 4x4 patches
    grid = tokens_to_grid(tokens)
    assert grid.shape == (2, 4, 4, 4) and torch.equal(grid[0, :, 0, 0], tokens[0, 1])
    nchw = torch.zeros(2, 8, 3, 3)
    assert tokens_to_grid(nchw) is nchw


@pytest.mark.parametrize("model_name, input_size", [("simple_cnn", None), ("test_resnet", 32), ("test_vit", 32)])
def test_gradcam_writes_overlays_and_an_index(tmp_path, model_name, input_size):
    trained = as_trained(model_name, input_size=input_size)
    images, pred = store_and_predictions()
    out = tmp_path / "gradcam"
    (out / "stale.png").parent.mkdir()
    (out / "stale.png").write_bytes(b"from an earlier run")
    assert write_gradcam(trained, images, pred, out, 4, None) == 5  # 4 mistakes + max(1, 4 // 4) correct
    index = pd.read_csv(out / "index.csv", keep_default_na=False)
    assert list(index.columns) == INDEX_COLUMNS == ["file", "id", "label", "predicted", "confidence", "kind"]
    assert index["kind"].tolist() == ["mistake"] * 4 + ["correct"]
    assert (index["label"] != index["predicted"]).tolist() == [True] * 4 + [False]
    assert index["confidence"].is_monotonic_decreasing or index["kind"].nunique() == 2
    assert sorted(p.name for p in out.iterdir()) == sorted([*index["file"], "index.csv"])  # stale.png gone
    side = input_size or SIZE
    for file in index["file"]:
        with Image.open(out / file) as png:
            assert png.mode == "RGB" and png.height >= 160 and png.width > 2 * png.height * 0.99
            assert png.height % side == 0  # the model's input, enlarged by a whole factor


def test_gradcam_off_writes_an_empty_index(tmp_path):
    images, pred = store_and_predictions()
    assert write_gradcam(as_trained("simple_cnn"), images, pred, tmp_path / "g", 0, None) == 0
    assert list(pd.read_csv(tmp_path / "g" / "index.csv").columns) == INDEX_COLUMNS


def test_cost_file_keys_and_types():
    trained = as_trained("simple_cnn", classes=4)
    cost = measure_cost(trained, "simple_cnn", batch_size=4, repeats=3)
    types = {"device": str, "model": str, "latency_ms_p50": float, "latency_ms_p95": float,
             "throughput_img_s": float, "batch_size": int, "params_count": int, "input_size": int,
             "precision": str, "channels_last": bool, "repeats": int}
    for key, kind in types.items():
        assert isinstance(cost[key], kind), (key, cost[key])
    assert cost["device"].startswith("cpu: ") and cost["model"] == "simple_cnn" and cost["batch_size"] == 4
    assert cost["params_count"] == sum(p.numel() for p in trained.model.parameters())
    assert 0 < cost["latency_ms_p50"] <= cost["latency_ms_p95"] and cost["throughput_img_s"] > 0
    assert cost["input_size"] == SIZE and cost["precision"] == "fp32"
    channels_last = measure_cost(trained, "simple_cnn", batch_size=2, repeats=2, channels_last=True)
    assert channels_last["channels_last"] is True
    assert trained.model.features[0][0].weight.is_contiguous()  # the model is left as it was


def test_more_examples_than_one_grad_cam_pass_takes(tmp_path):
    images, pred = store_and_predictions(n=44)  # 22 mistakes
    # 18 mistakes and min(18 // 4, one per class of the 3) correct: 21 images, more than CHUNK
    assert write_gradcam(as_trained("simple_cnn"), images, pred, tmp_path / "g", 18, None) == 18 + 3
    assert len(list((tmp_path / "g").glob("*.png"))) == 21
