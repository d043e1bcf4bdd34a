"""DAQUAR's WUPS on hand-checked pairs (the Wu-Palmer values worked out in the comments from
WordNet 3.0's hypernym chains), and eval.json with and without WordNet installed."""

import pytest

from vistage.tasks.vqa import wups as wups_module
from vistage.tasks.vqa.metrics import split_metrics

from .test_vqa_metrics import preds

needs_wordnet = pytest.mark.skipif(wups_module.wordnet_folder() is None,
                                   reason=f"WordNet not installed ({wups_module.INSTALL_HINT})")

# chair.n.01 -> seat.n.03 -> furniture.n.01 <- table.n.02: the lowest common hypernym is furniture,
# 7 steps below entity.n.01 on its longest path, so depth 8; chair is 2 steps from it, table 1:
# Wu-Palmer = 2 * 8 / (2 + 1 + 2 * 8) = 16 / 19.
CHAIR_TABLE = 16 / 19


@needs_wordnet
def test_wups_of_hand_checked_pairs():
    wordnet = wups_module.load_wordnet()
    score = wups_module.wups
    assert wordnet.word_similarity("chair", "table") == pytest.approx(CHAIR_TABLE)
    for threshold in (0.9, 0.0):
        assert score(wordnet, "chair", "chair", threshold) == 1.0  # the same word
        assert score(wordnet, "chairs", "chair", threshold) == 1.0  # the same sense, through the plural
        assert score(wordnet, "book, scissor", "scissor,book", threshold) == 1.0  # lists: order-free
        assert score(wordnet, "tape_dispenser", "tape dispenser", threshold) == 1.0
        assert score(wordnet, "xyzzy", "chair", threshold) == 0.0  # no WordNet sense
    # below the threshold 0.9, a similarity counts a tenth
    assert score(wordnet, "chair", "table", 0.9) == pytest.approx(CHAIR_TABLE / 10)
    assert score(wordnet, "chair", "table", 0.0) == pytest.approx(CHAIR_TABLE)
    # "chair" against "chair, table": each predicted item is matched (1), but the human's "table" is
    # only as close as chair: min(1, 1 * 16/19) (a tenth of that at 0.9)
    assert score(wordnet, "chair", "chair, table", 0.0) == pytest.approx(CHAIR_TABLE)
    assert score(wordnet, "chair", "chair, table", 0.9) == pytest.approx(CHAIR_TABLE / 10)


@needs_wordnet
def test_eval_json_has_wups_beside_exact_match():
    p = preds([("desk", ["desk"], "", ""), ("book scissor", ["book, scissor"], "", ""),
               ("chair", ["table"], "", ""), ("xyzzy", ["lamp"], "", "")])
    m = split_metrics(p)["test"]
    # right, right (the same list), chair for table, no sense: (1 + 1 + 16/19 + 0) / 4 at 0.0
    assert m["accuracy"] == 0.5
    assert m["wups_0.0"] == pytest.approx((2 + CHAIR_TABLE) / 4, abs=1e-6)
    assert m["wups_0.9"] == pytest.approx((2 + CHAIR_TABLE / 10) / 4, abs=1e-6)
    assert "wups_unavailable" not in m


def test_without_wordnet_eval_json_says_how_to_get_wups(monkeypatch):
    monkeypatch.setattr(wups_module, "wordnet_folder", lambda: None)
    wups_module.load_wordnet.cache_clear()
    try:
        m = split_metrics(preds([("desk", ["desk"], "", "")]))["test"]
    finally:
        wups_module.load_wordnet.cache_clear()
    assert m["accuracy"] == 1.0 and "wups_0.9" not in m
    assert m["wups_unavailable"] == wups_module.INSTALL_HINT and "vistage[wups]" in m["wups_unavailable"]
