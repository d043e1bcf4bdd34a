"""task: vqa through the six stages: training (the classification engine with VQA's hooks),
resume after kill -9, predict, evaluate and report; and end to end through `dvc exp run`.

Until vqa-model's `vistage.vqa.model` lands, training runs on a stand-in (tests/vqa_standin.py)."""

import io
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from vistage.recipes import merge as merged

from .conftest import ROOT, TINY, default_params, run_env
from .vqa_standin import install

install()

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
VQA_TINY = {"task": "vqa", "epochs": 2, "batch_size": 16, "lr": 0.01, "augment": [], "model": "simple_cnn",
            "data": {"image_size": 8, "workers": 1}, "vqa": {"source": "json"}}


def _png(rgb) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (10, 10), rgb).save(buf, format="PNG")
    return buf.getvalue()


def make_vqa_json(folder: Path, n_images: int = 60, seed: int = 0) -> Path:
    """Images of one colour each, two questions per image with 10 crowd answers (mostly right)."""
    rng = random.Random(seed)
    (folder / "images").mkdir(parents=True)
    entries = []
    for i in range(n_images):
        color = list(COLORS)[i % 3]
        (folder / "images" / f"img{i}.png").write_bytes(_png(COLORS[color]))
        crowd = [color] * 8 + [rng.choice(["dunno", "Red."])] * 2
        entries.append({"image": f"img{i}.png", "question": "What colour is it?", "question_id": f"{i}-c",
                        "answers": [{"answer": a, "answer_confidence": "yes"} for a in crowd],
                        "answer_type": "other", "answerable": 1})
        yes = "yes" if color == "red" else "no"
        entries.append({"image": f"img{i}.png", "question": "Is it red?", "question_id": f"{i}-r",
                        "answers": [{"answer": yes, "answer_confidence": "yes"}] * 10, "answer_type": "yes/no",
                        "answerable": 1})
    (folder / "qa.json").write_text(json.dumps(entries))
    return folder


def vqa_params(folder: Path, **override):
    from vistage.params import Params

    data = {"path": str(folder / "qa.json"), "root": str(folder / "images")}
    return Params.model_validate(merged(merged(merged(default_params(), TINY), VQA_TINY),
                                        merged({"data": data}, override)))


@pytest.fixture(scope="module")
def vqa_store(tmp_path_factory):
    from vistage.vqa.data import load_questions, vqa_split_table, write_vqa_store
    from vistage.vqa.sources import load_vqa_source

    base = tmp_path_factory.mktemp("vqa")
    folder = make_vqa_json(base / "raw")
    p = vqa_params(folder)
    write_vqa_store(base / "prepared", load_vqa_source(p.data, p.vqa), p.data)
    vqa_split_table(load_questions(base / "prepared"), 0.2, 0.2, 0).to_csv(base / "split.csv", index=False)
    return base


def test_vqa_trains_with_the_classification_engine_and_checkpoints_its_vocabularies(vqa_store, tmp_path):
    from vistage.checkpoint import load_checkpoint
    from vistage.training import TrainPaths, train

    p = vqa_params(vqa_store / "raw", epochs=3, ema_decay=0.5, scheduler="cosine", warmup_epochs=0)
    paths = TrainPaths(vqa_store / "prepared", vqa_store / "split.csv", tmp_path / "models", tmp_path / "live")
    result = train(p, paths)
    assert result["epochs_trained"] == 3 and 0 < result["best_val_acc"] <= 1
    state = load_checkpoint(paths.models / "best.pt")
    answers = state["vqa"]["answers"]["answers"]
    assert answers[:2] == ["no", "yes"] or set(answers) >= {"red", "green", "blue", "yes", "no"}
    assert "dunno" in answers and "red" in answers and "Red." not in answers  # normalized, from train only
    assert state["vqa"]["questions"]


def test_per_sample_and_mixing_augmentations_are_refused_for_vqa(vqa_store, tmp_path):
    from vistage.errors import VistageError
    from vistage.training import TrainPaths, train

    paths = TrainPaths(vqa_store / "prepared", vqa_store / "split.csv", tmp_path / "models", tmp_path / "live")
    for augment in (["flip", "mixup"], ["color_jitter"]):
        with pytest.raises(VistageError, match=f"augment: '{augment[-1]}' does not work with task: vqa"):
            train(vqa_params(vqa_store / "raw", augment=augment), paths)


@pytest.fixture(scope="module")
def trained(vqa_store, tmp_path_factory):
    """A VQA checkpoint on the generated store, and the params file it was trained with."""
    from vistage.training import TrainPaths, train

    out = tmp_path_factory.mktemp("trained")
    p = vqa_params(vqa_store / "raw", epochs=2)
    (out / "params.yaml").write_text(yaml.safe_dump(p.model_dump(mode="json"), sort_keys=False))
    train(p, TrainPaths(vqa_store / "prepared", vqa_store / "split.csv", out / "models", out / "live"))
    return out


def test_predict_evaluate_report_for_vqa(vqa_store, trained, tmp_path):
    import pandas as pd

    from stages.evaluate import evaluate
    from stages.predict import predict
    from stages.report import report

    params, out = trained / "params.yaml", tmp_path
    predict(params, trained / "models" / "best.pt", out / "predictions.csv", vqa_store / "prepared",
            vqa_store / "split.csv", out / "logits.npz", submission=out / "submission.json")
    table = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert list(table.columns[:8]) == ["qid", "split", "image", "question", "answer", "confidence", "expected",
                                       "score"]
    assert set(table["split"]) == {"test"} and table["expected"].isin(["red", "green", "blue", "yes", "no"]).all()
    submission = json.loads((out / "submission.json").read_text())
    assert len(submission) == len(table) and set(submission[0]) == {"image", "answer"}
    assert submission[0]["image"] == table["image"][0]
    evaluate(out / "logits.npz", out / "eval.json", out / "per_class.csv", out / "confusion.csv",
             out / "calibration.csv")
    metrics = json.loads((out / "eval.json").read_text())
    assert set(metrics) == {"test", "val"}
    test = metrics["test"]
    assert test["questions"] == len(table)
    assert test["vqa_accuracy"] == pytest.approx(table["score"].mean(), abs=1e-4)
    assert set(test["per_answer_type"]) == {"other", "yes/no"} and test["answerability"]["accuracy"] == 1.0
    report(params, out / "eval.json", trained / "live", out / "per_class.csv", out / "confusion.csv",
           out / "predictions.csv", vqa_store / "prepared", out / "index.html")
    page = (out / "index.html").read_text()
    assert "VQA accuracy per answer type" in page and "yes/no" in page
    assert "Wrong answers" in page and ("most confident" in page or "All " in page)
