"""metrics/eval.json for task: vqa, on hand-checked examples (the expected values are worked out
in the comments), and the predictions file evaluate reads."""

import json

import numpy as np
import pytest

from vistage.errors import VistageError
from vistage.evaluation import predictions_task
from vistage.tasks.vqa.metrics import (VqaPredictions, calibration_bins, confusion_rows, 
                                 per_answer_table, split_metrics)


def preds(rows: list[tuple], split: str = "test") -> VqaPredictions:
    """rows: (predicted, human answers or None, answer type, answerable)."""
    n = len(rows)
    return VqaPredictions(
        np.array([split] * n), np.arange(n), np.array([f"q{i}" for i in range(n)]),
        np.array([f"img{i}.jpg" for i in range(n)]), np.arange(n), np.array(["what?"] * n),
        np.array(["" if r[1] is None else json.dumps(r[1]) for r in rows]), np.array([r[2] for r in rows]),
        np.array([r[3] for r in rows]), np.array([r[0] for r in rows]), np.full(n, 0.5, np.float32))


TEN = ["2"] * 2 + ["two"] * 1 + ["3"] * 7  # "two" normalizes to "2": 3 humans say 2, 7 say 3


def test_leave_one_out_normalization_and_types():
    p = preds([
        ("Two.", TEN, "number", ""),        # 3 of 10 agree: (7*min(3,3) + 3*min(3,2)) / 30 = 27/30 = 0.9
        ("3", TEN, "number", ""),           # 7 of 10: every subset has >= 3 matches: 1.0
        ("a cat", ["cat"] * 1 + ["dog"] * 9, "other", ""),  # 1 of 10: (9*1 + 1*0) / 30 = 0.3
        ("yes", ["no"] * 10, "yes/no", ""),  # none: 0
    ])
    m = split_metrics(p)["test"]
    # overall (0.9 + 1 + 0.3 + 0) / 4 = 0.55; number (0.9 + 1) / 2 = 0.95; other 0.3; yes/no 0
    assert m["vqa_accuracy"] == pytest.approx(0.55)
    assert m["per_answer_type"] == {"number": pytest.approx(0.95), "other": pytest.approx(0.3), "yes/no": 0.0}
    # plain accuracy against the most common human answer: "3" (row 0, 1), "dog", "no" -> 1 of 4
    assert m["accuracy"] == 0.25 and m["questions"] == 4 and "answerability" not in m
    assert "single_answer" not in m  # no list answers: the whole split is the single-answer part


def test_single_answer_sets_score_plain_accuracy():
    p = preds([("desk", ["desk"], "", ""), ("book scissor", ["book, scissor"], "", ""), ("chair", ["lamp"], "", "")])
    m = split_metrics(p)["test"]
    # the list answer "book, scissor" normalizes to "book scissor": 2 of 3 right either way
    assert m["vqa_accuracy"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(2 / 3)
    assert "per_answer_type" not in m
    # DAQUAR's published figures score the questions whose answer is one item: "desk" and "lamp", 1 of 2,
    # where the data reads its commas as lists (vqa.list_answers: set); as text a comma is text
    assert "single_answer" not in m
    one_item = split_metrics(p, "set")["test"]["single_answer"]
    assert one_item["questions"] == 2 and one_item["accuracy"] == 0.5


def test_a_list_of_one_item_repeated_is_a_single_answer():
    p = preds([("lamp", ["lamp, lamp"], "", ""), ("chair", ["chair, table"], "", ""), ("desk", ["bed"], "", "")])
    m = split_metrics(p, "set")["test"]
    assert m["single_answer"]["questions"] == 2 and m["single_answer"]["accuracy"] == 0.5


def test_list_answers_set_scores_a_list_in_any_order_as_daquars_accuracy_does():
    p = preds([("chair, table", ["table, chair"], "", ""), ("chair table", ["table, chair"], "", ""),
               ("lamp", ["lamp, lamp"], "", ""), ("chair", ["chair, table"], "", "")])
    text, as_set = split_metrics(p)["test"], split_metrics(p, "set")["test"]
    # as text nothing matches: the orders differ, and "lamp" is not "lamp lamp"
    assert text["accuracy"] == 0.0 and text["vqa_accuracy"] == 0.0
    # as sets: the first (same items) and the third (an item twice is once); "chair table" without
    # a comma is one item, and "chair" alone is a subset, not the set
    assert as_set["accuracy"] == 0.5 and as_set["vqa_accuracy"] == 0.5
    assert confusion_rows(p, "set")["actual"].tolist() == ["chair, table", "chair, table", "lamp", "chair, table"]


def test_answerability_where_given():
    p = preds([("unanswerable", ["unanswerable"] * 10, "unanswerable", "0"),  # right: not answerable, score 1
               ("red", ["red"] * 10, "other", "1"),                          # right, 1
               ("unanswerable", ["blue"] * 10, "other", "1")])                # says not answerable: wrong, 0
    a = split_metrics(p)["test"]["answerability"]
    assert a == {"accuracy": pytest.approx(2 / 3), "vqa_accuracy_answerable": 0.5, "vqa_accuracy_unanswerable": 1.0}


def test_unanswered_questions_are_not_scored_and_a_split_of_them_alone_is_an_error():
    p = preds([("red", ["red"], "", ""), ("blue", None, "", "")])
    assert split_metrics(p)["test"]["questions"] == 1
    with pytest.raises(VistageError, match="no answers to evaluate against"):
        split_metrics(preds([("blue", None, "", "")]))


def test_plot_tables_and_the_file_round_trip(tmp_path):
    p = preds([("Two", TEN, "number", ""), ("dog", ["dog"] * 10, "other", ""), ("cat", ["dog"] * 10, "other", "")])
    table = per_answer_table(p).set_index("class")
    assert table.loc["dog", "recall"] == 0.5 and table.loc["3", "support"] == 1
    assert confusion_rows(p).values.tolist() == [["3", "2"], ["dog", "dog"], ["dog", "cat"]]
    bins = calibration_bins(p)  # every confidence 0.5: one bin (0.4667, 0.5], mean score (0.9 + 1 + 0) / 3
    assert len(bins) == 1 and bins["accuracy"][0] == pytest.approx(1.9 / 3, abs=1e-6)
    p.save(tmp_path / "logits.npz")
    assert predictions_task(tmp_path / "logits.npz") == "vqa"
    back = VqaPredictions.load(tmp_path / "logits.npz")
    assert split_metrics(back) == split_metrics(p)
    (tmp_path / "other.npz").write_bytes(b"junk")
    assert predictions_task(tmp_path / "other.npz") == "unreadable"
