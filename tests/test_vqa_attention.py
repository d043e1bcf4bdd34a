"""vqa.fusion: san's attention in the report: predict lays the last hop's weights over the image for
the most confident wrong answers and a few right ones (the VQA counterpart of Grad-CAM), the
report shows them; other fusions write an empty index and the report has no such section."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from .test_vqa_pipeline import trained, vqa_params, vqa_store  # noqa: F401  (module fixtures)


def test_the_overlay_is_brightest_over_the_weighted_cell():
    """A 4 x 4 grid with all its weight on the top-right cell: the overlay (the right half of the
    picture) is redder there than anywhere else; the left half is the image itself."""
    from vistage.tasks.vqa.attention import DISPLAY_SIDE, overlay

    weights = np.zeros((4, 4), np.float32)
    weights[0, 3] = 1.0
    image = np.full((32, 32, 3), 128, np.uint8)
    picture = np.asarray(overlay(image, weights)).astype(int)
    side = DISPLAY_SIDE
    assert picture.shape == (side, 2 * side + side // 16, 3)
    assert (picture[:, :side] == 128).all()
    over = picture[:, -side:]
    redness = over[..., 0] - over[..., 2]
    quarter = side // 4
    assert redness[:quarter, -quarter:].mean() > redness[:quarter, :quarter].mean() + 50
    assert redness[:quarter, -quarter:].mean() > redness[-quarter:, :].mean() + 50


@pytest.fixture(scope="module")
def trained_san(vqa_store, tmp_path_factory):  # noqa: F811
    from vistage.training import TrainPaths, train

    out = tmp_path_factory.mktemp("san")
    p = vqa_params(vqa_store / "raw", freeze="backbone", epochs=2, gradcam_examples=4,
                   vqa={"fusion": "san", "attention_hops": 2, "batch_by_image": True})
    (out / "params.yaml").write_text(yaml.safe_dump(p.model_dump(mode="json"), sort_keys=False))
    train(p, TrainPaths(vqa_store / "prepared", vqa_store / "split.csv", out / "models", out / "live"))
    return out


def _predict_and_report(params, checkpoint, vqa_store, out):  # noqa: F811
    from stages.evaluate import evaluate
    from stages.predict import predict
    from stages.report import report

    predict(params, checkpoint, out / "predictions.csv", vqa_store / "prepared", vqa_store / "split.csv",
            out / "logits.npz", gradcam=out / "gradcam")
    evaluate(params, out / "logits.npz", out / "eval.json", out / "per_class.csv", out / "confusion.csv",
             out / "calibration.csv")
    report(params, out / "eval.json", checkpoint.parent.parent / "live", out / "per_class.csv",
           out / "confusion.csv", out / "predictions.csv", vqa_store / "prepared", out / "index.html",
           gradcam=out / "gradcam")
    return pd.read_csv(out / "gradcam" / "index.csv", keep_default_na=False, dtype=str), \
        (out / "index.html").read_text()


def test_predict_lays_san_attention_over_the_images_and_the_report_shows_it(vqa_store, trained_san, tmp_path):  # noqa: F811
    from vistage.tasks.vqa.attention import DISPLAY_SIDE, attention_maps
    from vistage.tasks.vqa.predict import Predictor

    index, page = _predict_and_report(trained_san / "params.yaml", trained_san / "models" / "best.pt", vqa_store,
                                      tmp_path)
    table = pd.read_csv(tmp_path / "predictions.csv", keep_default_na=False)
    test = table[table["split"] == "test"]
    wrong, right = (test["score"] < 1).sum(), (test["score"] >= 1).sum()
    # gradcam_examples: 4 -> at most 4 wrong answers, then one right answer per expected answer (at most 1)
    assert (index["kind"] == "mistake").sum() == min(4, wrong)
    assert (index["kind"] == "correct").sum() == min(1, right)
    assert set(index["id"]) <= set(test["question"]) and set(index["predicted"]) <= set(test["answer"])
    for file in index["file"]:
        assert Image.open(tmp_path / "gradcam" / file).size == (2 * DISPLAY_SIDE + DISPLAY_SIDE // 16, DISPLAY_SIDE)
    assert "Where the model looked" in page and "last of 2 hops" in page
    assert page.count("<img") >= len(index) + 1  # its cards beside the wrong-answer gallery's

    # the maps are the fusion's softmax over every cell of simple_cnn's 2 x 2 map: each sums to 1
    run = Predictor(trained_san / "models" / "best.pt", vqa_store / "prepared", torch.device("cpu"))
    rows = np.arange(5)
    maps = attention_maps(run.model, run.task, rows, run.task.store.images[run.task.image_of[rows]], run.normalize,
                          torch.device("cpu"))
    assert len(maps) == 5 and all(m.shape == (2, 2) for m in maps)
    np.testing.assert_allclose([m.sum() for m in maps], 1.0, rtol=1e-5)


def test_without_attention_the_folder_holds_an_empty_index_and_the_report_no_section(vqa_store, trained, tmp_path):  # noqa: F811
    index, page = _predict_and_report(trained / "params.yaml", trained / "models" / "best.pt", vqa_store, tmp_path)
    assert index.empty and list(index.columns) == ["file", "id", "label", "predicted", "confidence", "kind"]
    assert "Where the model looked" not in page


def test_a_question_asked_twice_of_one_image_is_shown_once():
    """DAQUAR holds some questions twice for the same image: the gallery shows one card of them."""
    from vistage.tasks.vqa.attention import attention_examples
    from vistage.tasks.vqa.metrics import VqaPredictions

    n = 4
    col = lambda *v: np.array(v)  # noqa: E731
    pred = VqaPredictions(col(*["test"] * n), np.arange(n), col("a", "b", "c", "d"), col("x", "x", "y", "y"),
                          col(0, 0, 1, 1), col("what is on the bed", "what is on the bed", "what is on the bed",
                                               "what colour is it"),
                          col(*['["blanket"]'] * 3, '["red"]'), col(*["other"] * n), col(*[""] * n),
                          col("pillow", "pillow", "pillow", "blue"), col(0.9, 0.9, 0.8, 0.7))
    chosen = attention_examples(pred, 8)
    assert list(chosen["at"]) == [0, 2, 3] and set(chosen["kind"]) == {"mistake"}
