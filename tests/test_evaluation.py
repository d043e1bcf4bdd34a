"""The .npz that predict writes and evaluate reads, and the split selection. No model, no torch."""

import numpy as np
import pandas as pd
import pytest

from vistage.errors import VistageError
from vistage.evaluation import Predictions, eval_rows


def predictions(logits, labels, splits=None) -> Predictions:
    """Predictions of classes a, b, c, ... (store rows 0, 10, 20, ...); all test unless `splits`."""
    logits = np.asarray(logits, dtype=np.float32)
    n, k = logits.shape
    return Predictions(np.array([chr(ord("a") + i) for i in range(k)]), np.array(splits or ["test"] * n),
                       np.arange(n) * 10, np.array([f"img{i}.png" for i in range(n)]),
                       np.array(labels, dtype=np.int64), logits)


SOFTMAX_FOUR = [[.5, .25, .25], [.25, .5, .25], [.05, .05, .9], [.9, .05, .05]]


# 3 classes, 4 images; predicted a, b, c, a; true a, b, c, c:
#   row  softmax            true  top-1 (confidence)  correct  -log p(true)
#   0    .5   .25  .25      a     a (.5)              yes      ln 2
#   1    .25  .5   .25      b     b (.5)              yes      ln 2
#   2    .05  .05  .9       c     c (.9)              yes      ln(10/9)
#   3    .9   .05  .05      c     a (.9)              no       ln 20
FOUR = predictions(np.log(SOFTMAX_FOUR), [0, 1, 2, 2])  # logits log p: softmax gives p back


def test_of_keeps_one_split_and_test_is_the_headline():
    both = predictions(np.log(SOFTMAX_FOUR), [0, 1, 2, 2], splits=["val", "test", "val", "test"])
    assert both.split_names == ["test", "val"] and both.headline == "test"
    assert both.of("test").index.tolist() == [10, 30] and both.of("val").labels.tolist() == [0, 2]
    only_val = both.of("val")
    assert only_val.split_names == ["val"] and only_val.headline == "val"
    with pytest.raises(VistageError, match="no test or val predictions"):
        both.of("train").headline


def test_eval_rows_skips_an_empty_split(tmp_path):
    table = pd.DataFrame({"index": [0, 1, 2, 3, 4], "split": ["train", "test", "unlabeled", "train", "test"]})
    rows = eval_rows(table, tmp_path / "split.csv")
    assert list(rows) == ["test"] and rows["test"].tolist() == [1, 4]  # no val images: no val key
    with pytest.raises(VistageError, match="no test or val images"):
        eval_rows(table[table["split"] == "train"], tmp_path / "split.csv")


def test_npz_round_trip(tmp_path):
    pred = predictions(np.log(SOFTMAX_FOUR[:3]), [0, 1, -1], splits=["test", "val", "val"])
    path = tmp_path / "logits.npz"
    pred.save(path)
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["classes", "ids", "index", "labels", "logits", "splits"]
    back = Predictions.load(path)
    for name in ("classes", "splits", "index", "ids", "labels", "logits"):
        assert np.array_equal(getattr(back, name), getattr(pred, name)), name
    assert back.logits.dtype == np.float32 and back.split_names == ["test", "val"]
    table = back.of("val").table()
    assert table["index"].tolist() == [10, 20] and table["label"].tolist() == ["b", ""]  # -1: unlabeled
    assert table["predicted"].tolist() == ["b", "c"] and table["correct"].tolist() == [True, False]


def _one_line_error(path) -> str:
    with pytest.raises(VistageError) as info:
        Predictions.load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_or_malformed_npz_is_a_one_line_error(tmp_path):
    assert "missing; run the predict stage first" in _one_line_error(tmp_path / "nothing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not an archive" * 10)
    assert "not an .npz archive" in _one_line_error(garbage)
    lone = tmp_path / "lone.npz"
    with open(lone, "wb") as f:
        np.save(f, np.zeros(3))
    assert "not an .npz archive" in _one_line_error(lone)
    truncated = tmp_path / "truncated.npz"
    FOUR.save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    assert "not an .npz archive" in _one_line_error(truncated)
    old = tmp_path / "old.npz"  # the single-split file of earlier versions
    np.savez(old, split="test", classes=FOUR.classes, index=FOUR.index, ids=FOUR.ids, labels=FOUR.labels,
             logits=FOUR.logits)
    assert "no splits in it" in _one_line_error(old)
    short = tmp_path / "short.npz"
    np.savez(short, classes=FOUR.classes, splits=FOUR.splits, index=FOUR.index, ids=FOUR.ids,
             labels=FOUR.labels[:3], logits=FOUR.logits)
    assert "malformed predictions" in _one_line_error(short)
