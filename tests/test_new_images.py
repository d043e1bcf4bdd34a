"""predict --input: new, unlabeled images (a folder, an archive, a CSV), decoded as the
checkpoint's store was, with class names from the checkpoint."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vistage.errors import VistageError
from vistage.new_images import predict_images

from .conftest import run_env, tiny_params, train_paths


@pytest.fixture(scope="module")
def trained(digits_store, tmp_path_factory):
    """A checkpoint trained 3 epochs on the 8x8 digits, and the test digits as unlabeled PNGs
    (file names keep the truth for the test, in nested folders as a user's photos would be)."""
    from vistage.data.store import load_store
    from vistage.training import train

    out = tmp_path_factory.mktemp("new")
    train(tiny_params(epochs=3), train_paths(digits_store, out))
    store = load_store(digits_store / "prepared")
    test = pd.read_csv(digits_store / "split.csv").query("split == 'test'")["index"].to_numpy()[:60]
    for k, i in enumerate(test):
        folder = out / "images" / ("batch1" if k % 2 else "batch2/deeper")
        folder.mkdir(parents=True, exist_ok=True)
        label = store.classes[store.samples["label"][i]]
        Image.fromarray(np.asarray(store.images[i])).save(folder / f"img{k:03d}_true{label}.png")
    return out / "models" / "best.pt", out / "images"


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

    proc = subprocess.run([*base, "--input", str(images), "--out", str(tmp_path / "sub.csv")], cwd=ROOT,
                          env=run_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "predict: 60 images from" in proc.stdout and len(pd.read_csv(tmp_path / "sub.csv")) == 60
    proc = subprocess.run([*base, "--out", str(tmp_path / "x.csv")], cwd=ROOT, env=run_env(), capture_output=True,
                          text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--store, --split, --logits needed (or --input PATH" in proc.stderr
