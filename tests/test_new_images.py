"""predict --input: new, unlabeled images (a folder, an archive, a CSV), decoded as the
checkpoint's store was, with class names from the checkpoint."""

import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vistage.errors import VistageError
from vistage.new_images import predict_images

from .conftest import run_env
from .stage_runner import run_stage


@pytest.fixture(scope="module")
def new_images(digits_store, tmp_path_factory):
    """The first 60 test digits as unlabeled PNGs (file names keep the truth for the test, in
    nested folders as a user's photos would be)."""
    from vistage.data.store import load_store

    out = tmp_path_factory.mktemp("new") / "images"
    store = load_store(digits_store / "prepared")
    test = pd.read_csv(digits_store / "split.csv").query("split == 'test'")["index"].to_numpy()[:60]
    for k, i in enumerate(test):
        folder = out / ("batch1" if k % 2 else "batch2/deeper")
        folder.mkdir(parents=True, exist_ok=True)
        label = store.classes[store.samples["label"][i]]
        Image.fromarray(np.asarray(store.images[i])).save(folder / f"img{k:03d}_true{label}.png")
    return out


@pytest.fixture(scope="module")
def trained(smoke_checkpoint, new_images):
    """A checkpoint of a few steps (what predict does with any checkpoint) and the new images; the
    checkpoint that has learned digits: test_a_trained_model_recognises_the_new_images."""
    return smoke_checkpoint / "models" / "best.pt", new_images


def _truth(ids) -> np.ndarray:
    return np.array([i.split("_true")[1].split(".")[0] for i in ids])


def test_a_folder_of_new_images_gets_classes_and_top_k(trained):
    checkpoint, images = trained
    table, bad = predict_images(checkpoint, images, "cpu", "error", top_k=3)
    assert not bad and len(table) == 60
    assert list(table.columns) == ["id", "predicted", "confidence", "top1", "top1_probability", "top2",
                                   "top2_probability", "top3", "top3_probability"]
    assert (table["predicted"] == table["top1"]).all() and (table["confidence"] == table["top1_probability"]).all()
    assert (table["top1_probability"] >= table["top2_probability"]).all()
    assert set(table["predicted"]) <= {str(d) for d in range(10)}  # names from the checkpoint


@pytest.mark.slow
def test_a_trained_model_recognises_the_new_images(digits_model, new_images):
    """The checkpoint of 3 epochs on the 8x8 digits (shared with test_training.py)."""
    _, out = digits_model
    table, bad = predict_images(out / "models" / "best.pt", new_images, "cpu", "error")
    assert not bad and len(table) == 60
    assert (table["predicted"].to_numpy() == _truth(table["id"])).mean() > 0.8  # it recognises them


def test_a_csv_of_paths_gives_the_same_predictions(trained):
    checkpoint, images = trained
    from_folder, _ = predict_images(checkpoint, images, "cpu", "error")
    listing = images / "list.csv"
    pd.DataFrame({"path": sorted(from_folder["id"])}).to_csv(listing, index=False)
    from_csv, _ = predict_images(checkpoint, listing, "cpu", "error")
    merged = from_folder.merge(from_csv, on="id", suffixes=("", "_csv"))
    assert len(merged) == 60 and (merged["predicted"] == merged["predicted_csv"]).all()
    listing.unlink()


def test_bad_new_images_follow_on_bad_image(trained, tmp_path):
    checkpoint, images = trained
    (images / "broken.png").write_bytes(b"not a png")
    try:
        with pytest.raises(VistageError, match=r"predict: 1 bad image\(s\): broken.png"):
            predict_images(checkpoint, images, "cpu", "error")
        table, bad = predict_images(checkpoint, images, "cpu", "skip")
        assert len(table) == 60 and [b[0] for b in bad] == ["broken.png"]
    finally:
        (images / "broken.png").unlink()


def test_the_predict_command_takes_input_and_refuses_half_a_store_run(trained, tmp_path, write_params):
    checkpoint, images = trained
    params = write_params()
    base = [sys.executable, "stages/predict.py", "--params", str(params), "--checkpoint", str(checkpoint)]
    from .conftest import ROOT

    proc = run_stage([*base, "--input", str(images), "--out", str(tmp_path / "sub.csv")], ROOT, run_env())
    assert proc.returncode == 0, proc.stderr
    assert "predict: 60 images from" in proc.stdout and len(pd.read_csv(tmp_path / "sub.csv")) == 60
    proc = run_stage([*base, "--out", str(tmp_path / "x.csv")], ROOT, run_env())
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--store, --split, --logits needed (or --input PATH" in proc.stderr


def test_the_predict_stage_writes_submission_gradcam_and_cost(trained, digits_store, tmp_path, write_params):
    """The store run: the split's unlabeled rows and the images at predict_input go to the
    submission (class names from the checkpoint), beside Grad-CAM overlays and the cost file."""
    import json

    from stages.predict import predict

    checkpoint, images = trained
    split = pd.read_csv(digits_store / "split.csv")
    unlabeled = split.index[split["split"] == "train"][:7]
    split.loc[unlabeled, "split"] = "unlabeled"  # as the split marks images without a label
    split.to_csv(tmp_path / "split.csv", index=False)
    params = write_params({"predict_input": str(images), "gradcam_examples": 2, "cost_repeats": 3})
    out = {name: tmp_path / "out" / name for name in ("predictions.csv", "logits.npz", "submission.csv", "gradcam",
                                                       "cost.json")}
    predict(params, checkpoint, out["predictions.csv"], digits_store / "prepared", tmp_path / "split.csv",
            out["logits.npz"], out["submission.csv"], out["gradcam"], out["cost.json"])
    submission = pd.read_csv(out["submission.csv"], dtype=str)
    assert len(submission) == 7 + 60 and list(submission.columns[:3]) == ["id", "predicted", "confidence"]
    assert submission["id"].iloc[:7].str.startswith("digits/").all()  # store ids first, then the new files
    assert submission["id"].iloc[7:].str.endswith(".png").all()
    assert set(submission["top5"]) <= {str(d) for d in range(10)}
    index = pd.read_csv(out["gradcam"] / "index.csv")
    assert index["kind"].tolist()[-1] == "correct" and len(index) == 3
    assert json.loads(out["cost.json"].read_text())["model"] == "simple_cnn"


def test_a_checkpoint_trained_on_other_classes_is_a_one_line_error(trained, digits_store, tmp_path, write_params):
    from stages.predict import predict
    from vistage.data.store import CLASSES

    checkpoint, _ = trained
    other = tmp_path / "prepared"
    other.mkdir()
    for item in (digits_store / "prepared").iterdir():
        (other / item.name).symlink_to(item)
    (other / CLASSES).unlink()
    (other / CLASSES).write_text('{"classes": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "nine"]}')
    with pytest.raises(VistageError) as info:
        predict(write_params(), checkpoint, tmp_path / "p.csv", other, digits_store / "split.csv", tmp_path / "l.npz")
    message = str(info.value)
    assert "\n" not in message and str(checkpoint) in message
    assert "trained on 10 classes, but" in message and "class 9 is '9' in the checkpoint and 'nine' in the data" \
        in message
    assert not (tmp_path / "p.csv").exists()


def test_predict_input_that_does_not_exist_names_the_param(trained, digits_store, tmp_path, write_params):
    from stages.predict import predict

    checkpoint, _ = trained
    params = write_params({"predict_input": str(tmp_path / "nowhere")})
    with pytest.raises(VistageError, match=r"^predict_input: .*nowhere does not exist$"):
        predict(params, checkpoint, tmp_path / "p.csv", digits_store / "prepared", digits_store / "split.csv",
                tmp_path / "l.npz", tmp_path / "s.csv")
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "p.csv").exists()


def test_logits_in_chunks_keep_every_row_in_order():
    from types import SimpleNamespace

    import torch

    from vistage.new_images import logits_with_progress

    images = np.arange(10, dtype=np.float32).reshape(10, 1)
    fake = SimpleNamespace(classes=["a"], logits=lambda imgs, idx: (torch.from_numpy(imgs[idx]), idx))
    logits, rows = logits_with_progress(fake, images, np.array([9, 2, 5, 7, 1]), "test", chunk=2)  # 3 chunks
    assert rows.tolist() == [9, 2, 5, 7, 1] and logits[:, 0].tolist() == [9, 2, 5, 7, 1]
    empty, none = logits_with_progress(fake, images, np.zeros(0, dtype=np.int64), "test")
    assert empty.shape == (0, 1) and len(none) == 0
