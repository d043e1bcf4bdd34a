"""Evaluate's scores on tiny examples checked by hand (the numbers in the comments), the .npz that
predict writes and evaluate reads, and the evaluate command on such a file. No model, no torch."""

import json

import numpy as np
import pandas as pd
import pytest

from vistage.errors import VistageError
from vistage.evaluation import (Predictions, calibration_bins, classification_metrics, confusion_pairs, eval_rows,
                                expected_calibration_error, split_metrics)


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


def test_accuracy_precision_recall_f1_and_loss_by_hand():
    m = classification_metrics(FOUR)
    # per class: a P 1/2 R 1 F1 2/3 (support 1); b P 1 R 1 F1 1 (1); c P 1 R 1/2 F1 2/3 (2)
    assert m["images"] == 4
    assert m["accuracy"] == pytest.approx(0.75, abs=1e-6)  # 3 of 4
    assert m["precision_macro"] == pytest.approx(0.833333, abs=1e-6)  # (1/2 + 1 + 1) / 3
    assert m["recall_macro"] == pytest.approx(0.833333, abs=1e-6)  # (1 + 1 + 1/2) / 3
    assert m["f1_macro"] == pytest.approx(0.777778, abs=1e-6)  # (2/3 + 1 + 2/3) / 3 = 7/9
    assert m["precision_weighted"] == pytest.approx(0.875, abs=1e-6)  # (1/2 + 1 + 2 * 1) / 4
    assert m["recall_weighted"] == pytest.approx(0.75, abs=1e-6)  # (1 + 1 + 2 * 1/2) / 4 = accuracy
    assert m["f1_weighted"] == pytest.approx(0.75, abs=1e-6)  # (2/3 + 1 + 2 * 2/3) / 4
    # (ln 2 + ln 2 + ln(10/9) + ln 20) / 4 = ln(800/9) / 4
    assert m["loss"] == pytest.approx(1.121847, abs=1e-6)
    assert "top5_accuracy" not in m  # 3 classes: top-5 would always be 1
    assert all(isinstance(v, (int, float)) for v in m.values())


def test_top5_accuracy_with_seven_classes():
    # logits 6..0 for classes a..g on every row: the top 5 are a..e
    logits = [[6, 5, 4, 3, 2, 1, 0]] * 3
    m = classification_metrics(predictions(logits, [0, 4, 5]))  # true a (top-1), e (5th), f (6th)
    assert m["accuracy"] == pytest.approx(0.333333, abs=1e-6)  # 1 of 3
    assert m["top5_accuracy"] == pytest.approx(0.666667, abs=1e-6)  # 2 of 3


def test_top5_counts_classes_absent_from_the_split():
    # 7 classes, only a and b in the split: sklearn needs `labels=` to score it at all
    m = classification_metrics(predictions([[6, 5, 4, 3, 2, 1, 0]] * 2, [0, 1]))
    assert m["top5_accuracy"] == 1.0


# 6 classes a..f, 3 images, only a and b in the split; predicted a, f, a; true a, b, b:
#   row  softmax a    b    c    d    e    f     true  top-1 (confidence)  correct  true in top 5
#   0        .62  .10  .10  .10  .04  .04      a     a (.62)             yes      yes (1st)
#   1        .04  .06  .10  .10  .08  .62      b     f (.62)             no       yes (5th: f c d e b)
#   2        .70  .02  .07  .07  .07  .07      b     a (.70)             no       no (6th)
SIX = predictions(np.log([[.62, .1, .1, .1, .04, .04], [.04, .06, .1, .1, .08, .62], [.7, .02, .07, .07, .07, .07]]),
                  [0, 1, 1])


def test_top5_ece_and_macro_over_present_classes_by_hand():
    m = classification_metrics(SIX)
    assert m["accuracy"] == pytest.approx(0.333333, abs=1e-6)  # 1 of 3
    assert m["top5_accuracy"] == pytest.approx(0.666667, abs=1e-6)  # rows 0 and 1
    # 15 bins of 1/15: .62 twice in (9/15, 10/15] (accuracy 1/2), .70 once in (10/15, 11/15] (accuracy 0):
    # 2/3 * |.5 - .62| + 1/3 * |0 - .7| = .08 + .233333
    assert m["ece"] == pytest.approx(0.313333, abs=1e-6)
    # over the classes present (a, b; f is predicted but has no image, c d e neither):
    # a P 1/2 (rows 0, 2 predicted a) R 1 F1 2/3; b never predicted: P 0 R 0 F1 0
    assert m["precision_macro"] == pytest.approx(0.25, abs=1e-6)
    assert m["recall_macro"] == pytest.approx(0.5, abs=1e-6)  # not (1 + 0) / 6: absent classes do not count
    assert m["f1_macro"] == pytest.approx(0.333333, abs=1e-6)
    assert m["recall_weighted"] == pytest.approx(0.333333, abs=1e-6)  # (1 * 1 + 2 * 0) / 3 = accuracy
    assert m["f1_weighted"] == pytest.approx(0.222222, abs=1e-6)  # (1 * 2/3 + 2 * 0) / 3
    # (-ln .62 - ln .06 - ln .02) / 3: log_loss knows all six classes
    assert m["loss"] == pytest.approx(2.401157, abs=1e-6)


def test_confusion_pairs_count_each_pair_once_with_row_rates():
    pairs = confusion_pairs(SIX)
    assert list(pairs.columns) == ["actual", "predicted", "count", "rate"]
    # a -> a once (a has 1 image); b -> f once, b -> a once (b has 2)
    assert pairs.values.tolist() == [["a", "a", 1, 1.0], ["b", "a", 1, 0.5], ["b", "f", 1, 0.5]]
    four = confusion_pairs(FOUR)  # a->a, b->b, c->c, c->a
    assert four.values.tolist() == [["a", "a", 1, 1.0], ["b", "b", 1, 1.0], ["c", "a", 1, 0.5], ["c", "c", 1, 0.5]]
    many = predictions(np.tile([[3.0, 1, 0]], (1000, 1)), [0] * 600 + [2] * 400)  # every image predicted a
    assert confusion_pairs(many).values.tolist() == [["a", "a", 600, 1.0], ["c", "a", 400, 1.0]]  # 2 rows, not 1000


def test_weighted_and_macro_f1_on_imbalanced_classes():
    # true a a a b, every image predicted a (logits 1, 0: softmax e/(e+1) = .731059)
    m = classification_metrics(predictions([[1, 0]] * 4, [0, 0, 0, 1]))
    # a: P 3/4, R 1, F1 6/7; b: never predicted, P 0 (zero_division), R 0, F1 0
    assert m["accuracy"] == pytest.approx(0.75, abs=1e-6)
    assert m["f1_macro"] == pytest.approx(0.428571, abs=1e-6)  # (6/7 + 0) / 2 = 3/7
    assert m["f1_weighted"] == pytest.approx(0.642857, abs=1e-6)  # (3 * 6/7 + 1 * 0) / 4 = 9/14
    assert m["precision_macro"] == pytest.approx(0.375, abs=1e-6)  # (3/4 + 0) / 2
    assert m["precision_weighted"] == pytest.approx(0.5625, abs=1e-6)  # 3 * 3/4 / 4
    assert m["recall_macro"] == pytest.approx(0.5, abs=1e-6)  # (1 + 0) / 2
    # -log p(a) = ln(1 + 1/e) = .313262 on three rows, -log p(b) = 1 + .313262 on one: mean .563262
    assert m["loss"] == pytest.approx(0.563262, abs=1e-6)
    # one bin, (2/3, 11/15] = (.666667, .733333]: accuracy .75, confidence .731059
    assert m["ece"] == pytest.approx(0.018941, abs=1e-6)


def test_calibration_rows_and_ece_in_two_bins():
    bins = calibration_bins(FOUR)
    # 15 bins of width 1/15: the two .5 confidences in (7/15, 8/15], both right; the two .9 in
    # (13/15, 14/15], one right
    assert list(bins.columns) == ["bin_lower", "bin_upper", "confidence", "accuracy", "count"]
    assert bins.to_numpy() == pytest.approx(np.array([[0.466667, 0.533333, 0.5, 1.0, 2],
                                                      [0.866667, 0.933333, 0.9, 0.5, 2]]), abs=1e-6)
    # 2/4 * |1 - .5| + 2/4 * |.5 - .9| = .25 + .2
    assert expected_calibration_error(FOUR) == pytest.approx(0.45, abs=1e-6)
    assert classification_metrics(FOUR)["ece"] == pytest.approx(0.45, abs=1e-6)


def test_a_confidence_of_one_is_in_the_last_bin():
    # confidence 1.0 (logits 100, 0, 0, 0) lands in (14/15, 1]; .25 (equal logits) in (3/15, 4/15]
    bins = calibration_bins(predictions([[100, 0, 0, 0], [0, 0, 0, 0]], [0, 1]))
    assert bins[["bin_lower", "bin_upper", "confidence", "count"]].to_numpy() == pytest.approx(
        np.array([[0.2, 0.266667, 0.25, 1], [0.933333, 1.0, 1.0, 1]]), abs=1e-6)
    assert bins["accuracy"].tolist() == [0.0, 1.0]  # argmax of equal logits is a, the truth is b
    # 1/2 * |0 - .25| + 1/2 * |1 - 1|
    assert expected_calibration_error(predictions([[100, 0, 0, 0], [0, 0, 0, 0]], [0, 1])) == pytest.approx(0.125)


def test_of_keeps_one_split_and_test_is_the_headline():
    both = predictions(np.log(SOFTMAX_FOUR), [0, 1, 2, 2], splits=["val", "test", "val", "test"])
    assert both.split_names == ["test", "val"] and both.headline == "test"
    assert both.of("test").index.tolist() == [10, 30] and both.of("val").labels.tolist() == [0, 2]
    only_val = both.of("val")
    assert only_val.split_names == ["val"] and only_val.headline == "val"
    with pytest.raises(VistageError, match="no test, val or train predictions"):
        both.of("unlabeled").headline
    fit = predictions(np.log(SOFTMAX_FOUR), [0, 1, 2, 2], splits=["train"] * 4)  # nothing held out
    assert fit.split_names == ["train"] and fit.headline == "train"
    mixed = predictions(np.log(SOFTMAX_FOUR), [0, 1, 2, 2], splits=["train", "test", "val", "train"])
    assert mixed.split_names == ["test", "val"]  # the training rows are scored only when nothing is held out


def test_split_metrics_keys_each_split_test_first():
    both = predictions(np.log(SOFTMAX_FOUR), [0, 1, 2, 2], splits=["val", "test", "val", "test"])
    metrics = split_metrics(both)
    assert list(metrics) == ["test", "val"]
    assert metrics["test"]["images"] == 2 and metrics["test"]["accuracy"] == 0.5  # rows 1 (right) and 3 (wrong)
    assert metrics["val"]["images"] == 2 and metrics["val"]["accuracy"] == 1.0
    assert list(split_metrics(both.of("val"))) == ["val"]  # no test rows: no test key


def test_eval_rows_skips_an_empty_split(tmp_path):
    table = pd.DataFrame({"index": [0, 1, 2, 3, 4], "split": ["train", "test", "unlabeled", "train", "test"]})
    rows = eval_rows(table, tmp_path / "split.csv")
    assert list(rows) == ["test"] and rows["test"].tolist() == [1, 4]  # no val images: no val key
    fit = eval_rows(table[table["split"] != "test"], tmp_path / "split.csv")  # nothing held out: the fit
    assert list(fit) == ["train"] and fit["train"].tolist() == [0, 3]
    with pytest.raises(VistageError, match="no test, val or train images"):
        eval_rows(table[table["split"] == "unlabeled"], tmp_path / "split.csv")


def test_npz_round_trip(tmp_path):
    pred = predictions(np.log(SOFTMAX_FOUR[:3]), [0, 1, -1], splits=["test", "val", "val"])
    path = tmp_path / "logits.npz"
    pred.save(path)
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["classes", "ids", "index", "labels", "logits", "splits", "task", "temperature"]
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


def test_evaluate_writes_metrics_per_split_and_test_plots(tmp_path):
    from stages.evaluate import evaluate

    pred = predictions(np.log(SOFTMAX_FOUR + [[.9, .05, .05]]), [0, 1, 2, 2, 0], splits=["test"] * 4 + ["val"])
    pred.save(tmp_path / "logits.npz")
    out = {name: tmp_path / "metrics" / name for name in ("eval.json", "per_class.csv", "confusion.csv",
                                                          "calibration.csv", "confusion_pairs.csv")}
    (tmp_path / "params.yaml").write_text("task: classify\n")
    evaluate(tmp_path / "params.yaml", tmp_path / "logits.npz", out["eval.json"], out["per_class.csv"], out["confusion.csv"],
             out["calibration.csv"], out["confusion_pairs.csv"])
    metrics = json.loads(out["eval.json"].read_text())
    assert list(metrics) == ["test", "val"]
    assert metrics["test"] == classification_metrics(FOUR) and metrics["val"]["accuracy"] == 1.0
    assert all(isinstance(v, (int, float)) for scores in metrics.values() for v in scores.values())
    assert pd.read_csv(out["per_class.csv"])["support"].tolist() == [1, 1, 2]  # the test split only
    assert len(pd.read_csv(out["confusion.csv"])) == 4
    assert pd.read_csv(out["calibration.csv"])["count"].tolist() == [2, 2]
    assert pd.read_csv(out["confusion_pairs.csv"])["count"].tolist() == [1, 1, 1, 1]  # a-a b-b c-a c-c
