"""VQA text side: answer normalization, the official accuracy, and both vocabularies.

Every expected value is worked out by hand in the comments next to it.
"""

import json
import random

import numpy as np
import pytest

from vistage.errors import VistageError
from vistage.tasks.vqa.answers import (AnswerVocab, agreement_score, answer_key, normalize_answer, per_type_accuracy,
                                 split_list_answer, vqa_accuracy)
from vistage.tasks.vqa.questions import PAD, UNK, QuestionVocab, tokenize


# --- normalize_answer -------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("yes.", "yes"),                # a period not followed by a digit goes
    ("Yes!", "yes"),                # '!' glued to the word becomes a space, then split away
    ("\tYES \n", "yes"),            # tabs/newlines to spaces, stripped, lowercased
    ("Two", "2"),                   # number words to digits
    ("TWO DOGS", "2 dogs"),
    ("none", "0"),
    ("a dog", "dog"),               # articles dropped
    ("The Cat", "cat"),
    ("the", ""),                    # nothing left
    ("dont", "don't"),              # contractions restored
    ("Isnt", "isn't"),
    ("couldnt've", "couldn't've"),
    ("somebody'd", "somebodyd"),    # the script's one reversed table entry, kept on purpose
    ("it's", "it's"),               # apostrophes are not punctuation for the script
    ("chair,table", "chair table"),   # comma touching no space: becomes a space
    ("chair, table", "chair table"),  # comma before a space: dropped
    ("1,000", "1000"),              # digit,digit: every mark in the text is dropped
    ("1,000 (approx)", "1000 approx"),
    ("2.5", "2.5"),                 # a period before a digit stays
    ("Mr. Smith", "mr smith"),
    ("black/white", "black white"),
    ("black / white", "black white"),  # '/' next to spaces dropped; split() squeezes the spaces
    ("t-shirt", "t shirt"),
    ("12:30", "12:30"),             # ':' is not in the script's list
    ("", ""),
])
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_normalize_is_idempotent_and_list_spacing_is_stable():
    for raw in ["Two dogs.", "chair,table", "chair, table", "1,000", "a dont", "Mr. Smith"]:
        once = normalize_answer(raw)
        assert normalize_answer(once) == once
    spellings = ["chair,table", "chair, table", "Chair , Table"]
    assert {normalize_answer(s) for s in spellings} == {"chair table"}


def test_split_list_answer():
    assert split_list_answer("chair, table") == ["chair", "table"]
    assert split_list_answer("Chair,table,the lamp") == ["chair", "table", "lamp"]
    assert split_list_answer("1,000") == ["1000"]  # a thousands separator is not a list comma
    assert split_list_answer("chair,,") == ["chair"]
    assert split_list_answer("") == []


# --- vqa_accuracy -----------------------------------------------------------------------------

def ten(agreeing: int, answer: str = "cat", other: str = "dog") -> list[str]:
    return [answer] * agreeing + [other] * (10 - agreeing)


def test_vqa_accuracy_ten_answers():
    # 0 of 10 agree: no leave-one-out set holds a match -> 0
    assert vqa_accuracy("cat", ten(0)) == 0.0
    # 1 of 10: 9 sets keep the match (1/3), 1 set lost it (0) -> 9/10 * 1/3 = 0.3
    assert vqa_accuracy("cat", ten(1)) == 0.3
    # 2 of 10: 8 sets keep 2 (2/3), 2 sets keep 1 (1/3) -> (8*2/3 + 2*1/3)/10 = 18/30 = 0.6
    assert vqa_accuracy("cat", ten(2)) == 0.6
    # 3 of 10: 7 sets keep 3 (1), 3 sets keep 2 (2/3) -> (7 + 3*2/3)/10 = 0.9
    assert vqa_accuracy("cat", ten(3)) == 0.9
    # 4 of 10: 6 sets keep 4 (1), 4 sets keep 3 (1) -> 1.0; more agree -> still 1.0
    assert vqa_accuracy("cat", ten(4)) == 1.0
    assert vqa_accuracy("cat", ten(10)) == 1.0


def test_vqa_accuracy_normalization_makes_answers_match():
    # "Two", "2.", "two" and "2" all normalize to "2": 4 agree -> 1.0
    assert vqa_accuracy("2", ["Two", "2.", "two", "2"] + ["3"] * 6) == 1.0
    # "A dog" matches "dog" and "the dog" (2 of 10) -> 0.6
    assert vqa_accuracy("A dog", ["dog", "the dog"] + ["cat"] * 8) == 0.6
    # unlike the script, all-identical human answers are normalized too: "Yes." scores 1.0
    assert vqa_accuracy("Yes.", ["yes"] * 10) == 1.0


def test_vqa_accuracy_fewer_answers():
    # one answer: exact match after normalization
    assert vqa_accuracy("Yes.", ["yes"]) == 1.0
    assert vqa_accuracy("no", ["yes"]) == 0.0
    assert vqa_accuracy("chair, table", ["chair,table"]) == 1.0
    # two answers ["yes", "no"], predict "yes": leave out "yes" -> 0 matches (0),
    # leave out "no" -> 1 match (1/3) -> mean 1/6
    assert vqa_accuracy("yes", ["yes", "no"]) == 1 / 6
    # three unanimous answers: each set keeps 2 matches (2/3) -> 2/3, the most 3 humans can give
    assert vqa_accuracy("yes", ["yes"] * 3) == 2 / 3


def test_agreement_score_and_errors():
    assert [agreement_score(m, 10) for m in range(6)] == [0.0, 0.3, 0.6, 0.9, 1.0, 1.0]
    with pytest.raises(ValueError):
        vqa_accuracy("yes", [])
    with pytest.raises(TypeError):
        vqa_accuracy("yes", "yes")  # a bare string would be ten one-letter answers


# --- per_type_accuracy ------------------------------------------------------------------------

def test_per_type_accuracy():
    preds = ["yes", "no", "2", "red", "unanswerable"]
    answers = [
        ["yes"] * 10,                  # 10 agree -> 1.0
        ["no"] * 3 + ["yes"] * 7,      # 3 agree -> 0.9
        ["two"] + ["3"] * 9,           # "two" -> "2": 1 agrees -> 0.3
        ["blue"] * 10,                 # 0 agree -> 0.0
        ["unanswerable"] * 10,         # 1.0
    ]
    types = ["yes/no", "yes/no", "number", "other", "unanswerable"]
    # overall (1 + 0.9 + 0.3 + 0 + 1)/5 = 0.64; yes/no (1 + 0.9)/2 = 0.95
    assert per_type_accuracy(preds, answers, types) == {
        "overall": 0.64,
        "per_type": {"number": 0.3, "other": 0.0, "unanswerable": 1.0, "yes/no": 0.95},
    }
    assert per_type_accuracy(preds, answers) == {"overall": 0.64, "per_type": {}}
    with pytest.raises(ValueError):
        per_type_accuracy(preds, answers, types[:-1])
    with pytest.raises(ValueError):
        per_type_accuracy([], [], [])


# --- AnswerVocab ------------------------------------------------------------------------------

TRAIN_ANSWERS = [
    ["yes"] * 10,
    ["no"] * 6 + ["yes"] * 4,
    ["2"] * 5 + ["Two"] * 3 + ["3"] * 2,
    ["red"] * 2 + ["blue"] * 2 + ["green"],
    ["A Cat"],
    ["the"],  # normalizes to "": never counted
]
# counts after normalization: yes 14, 2 8, no 6, then 2 each: "3" < "blue" < "red", then 1 each: cat, green


def test_answer_vocab_top_k_and_tie_order():
    vocab = AnswerVocab.build(TRAIN_ANSWERS, top_k=5)
    assert vocab.answers == ["yes", "2", "no", "3", "blue"]  # "red" ties with "blue" but sorts after
    assert len(vocab) == 5
    assert AnswerVocab.build(TRAIN_ANSWERS, top_k=100).answers == [
        "yes", "2", "no", "3", "blue", "red", "cat", "green"]
    assert vocab.index("Two") == 1 and vocab.index("YES.") == 0
    assert vocab.index("purple") is None  # only what the training answers hold
    # same answers in any order -> same ids
    shuffled = TRAIN_ANSWERS[:]
    random.Random(0).shuffle(shuffled)
    assert AnswerVocab.build(shuffled, top_k=5).answers == vocab.answers


def test_answer_vocab_soft_target_equals_accuracy():
    vocab = AnswerVocab.build(TRAIN_ANSWERS, top_k=5)
    answers = ["yes"] * 2 + ["no"] * 7 + ["maybe"]
    # yes: 2 of 10 -> 0.6; no: 7 of 10 -> 1.0; "maybe" is not in the vocabulary
    assert vocab.soft_target(answers) == {0: 0.6, 2: 1.0}
    for index, score in vocab.soft_target(answers).items():
        assert score == vqa_accuracy(vocab.answers[index], answers)
    assert vocab.soft_target(["two"]) == {1: 1.0}  # one answer: exact match
    assert vocab.soft_target(["maybe"]) == {}


def test_answer_vocab_most_common_and_coverage():
    vocab = AnswerVocab.build(TRAIN_ANSWERS, top_k=5)
    assert vocab.most_common(["yes"] * 2 + ["no"] * 7 + ["maybe"]) == 2
    assert vocab.most_common(["blue"] * 5 + ["yes"] * 5) == 0     # tie: lower id (more common in train)
    assert vocab.most_common(["purple"] * 5 + ["no"] * 5) == 2    # tie with an unknown answer
    assert vocab.most_common(["purple"] * 6 + ["yes"] * 4) is None  # the top answer is unknown
    assert vocab.most_common([]) is None
    # yes (in), purple (out), Two -> 2 (in), red (out: 6th) -> 2 of 4
    questions = [["yes"], ["purple"] * 6 + ["yes"] * 4, ["Two"], ["red"]]
    assert vocab.coverage(questions) == 0.5


def test_answer_vocab_round_trip_plain_types():
    vocab = AnswerVocab.build(TRAIN_ANSWERS, top_k=5)
    data = vocab.to_dict()
    assert data == {"answers": ["yes", "2", "no", "3", "blue"], "list_answers": "text"}
    restored = AnswerVocab.from_dict(json.loads(json.dumps(data)))
    assert restored.answers == vocab.answers and restored.index("two") == 1
    # a checkpoint's vocabulary from before list_answers reads lists as text, as it was trained
    assert AnswerVocab.from_dict({"answers": ["chair table"]}).list_answers == "text"


def test_answer_key_reads_a_list_as_a_set_of_items():
    spellings = ["table, chair", "Chair,table", "chair, table, the chair"]
    assert {answer_key(s, "set") for s in spellings} == {"chair, table"}
    assert {answer_key(s) for s in spellings} == {"table chair", "chair table", "chair table chair"}
    assert answer_key("Two.", "set") == "2" and answer_key("1,000", "set") == "1000"
    with pytest.raises(ValueError, match="text, set"):
        answer_key("chair", "bag")


def test_answer_vocab_with_set_lists_counts_every_order_as_one_answer():
    train = [["chair, table"], ["table,chair"], ["lamp"], ["lamp"], ["chair table"]]
    vocab = AnswerVocab.build(train, top_k=10, list_answers="set")
    # "chair table" (no comma) is one item, not the two-item list
    assert vocab.answers == ["chair, table", "lamp", "chair table"]
    assert vocab.index("Table, chair") == 0 and vocab.most_common(["table, chair", "lamp"]) == 0
    assert vocab.soft_target(["table, chair"]) == {0: 1.0}
    assert AnswerVocab.from_dict(json.loads(json.dumps(vocab.to_dict()))).index("table, chair") == 0
    # as text the two orders are two answers, both normalized without their commas
    assert AnswerVocab.build(train, top_k=10).answers == ["chair table", "lamp", "table chair"]
    assert vqa_accuracy("chair, table", ["table, chair"], "set") == 1.0
    assert vqa_accuracy("chair, table", ["table, chair"]) == 0.0
    with pytest.raises(VistageError, match="list_answers"):
        AnswerVocab(["lamp"], "bag")


def test_answer_vocab_errors():
    with pytest.raises(VistageError, match="top_k"):
        AnswerVocab.build(TRAIN_ANSWERS, top_k=0)
    with pytest.raises(TypeError):
        AnswerVocab.build(["yes", "no"], top_k=2)  # answers must be one list per question
    with pytest.raises(VistageError):
        AnswerVocab.from_dict({"labels": []})
    with pytest.raises(VistageError):
        AnswerVocab.from_dict({"answers": ["yes", "yes"]})


# --- tokenize and QuestionVocab ---------------------------------------------------------------

def test_tokenize():
    assert tokenize("What's the man's 1,000-dollar bill?") == [
        "what's", "the", "man's", "1,000", "-", "dollar", "bill", "?"]
    assert tokenize("Is it 2.5 m tall?") == ["is", "it", "2.5", "m", "tall", "?"]
    assert tokenize("What\u2019s  this,  sir?") == ["what's", "this", ",", "sir", "?"]
    assert tokenize("<pad>") == ["<", "pad", ">"]
    assert tokenize("") == []


TRAIN_QUESTIONS = ["What color is the dog?", "What is on the table?", "Is the dog black?"]
# counts: is 3, the 3, ? 3, what 2, dog 2, color 1, on 1, table 1, black 1
# order: count desc then text: "?" < "is" < "the"; "dog" < "what"; "black" < "color" < "on" < "table"


def test_question_vocab_min_count_and_order():
    full = QuestionVocab.build(TRAIN_QUESTIONS)
    assert full.tokens == ["<pad>", "<unk>", "?", "is", "the", "dog", "what",
                           "black", "color", "on", "table"]
    assert len(full) == 11
    vocab = QuestionVocab.build(TRAIN_QUESTIONS, min_count=2)
    assert vocab.tokens == ["<pad>", "<unk>", "?", "is", "the", "dog", "what"]
    # color (seen once) and cat (never seen) are <unk> = 1
    assert vocab.encode("What color is the cat?", max_len=10) == [6, UNK, 3, 4, UNK, 2]
    assert QuestionVocab.build(list(reversed(TRAIN_QUESTIONS)), min_count=2).tokens == vocab.tokens


def test_question_vocab_encode_batch():
    vocab = QuestionVocab.build(TRAIN_QUESTIONS, min_count=2)
    ids, lengths = vocab.encode_batch(["Is the dog black?", "", "what " * 6], max_len=4)
    assert ids.dtype == np.int64 and lengths.dtype == np.int64
    assert ids.tolist() == [
        [3, 4, 5, UNK],     # is the dog black ? -> cut to 4 tokens
        [UNK, PAD, PAD, PAD],  # empty question: one <unk>, so length 1
        [6, 6, 6, 6],
    ]
    assert lengths.tolist() == [4, 1, 4]
    ids, lengths = vocab.encode_batch([], max_len=4)
    assert ids.shape == (0, 4) and lengths.shape == (0,)
    assert vocab.decode([3, 4, 5, PAD]) == ["is", "the", "dog"]


def test_question_vocab_round_trip_and_errors():
    vocab = QuestionVocab.build(TRAIN_QUESTIONS, min_count=2)
    data = vocab.to_dict()
    assert data == {"tokens": ["<pad>", "<unk>", "?", "is", "the", "dog", "what"], "min_count": 2}
    restored = QuestionVocab.from_dict(json.loads(json.dumps(data)))
    assert restored.tokens == vocab.tokens and restored.min_count == 2
    assert restored.encode("Is the dog black?", 8) == vocab.encode("Is the dog black?", 8)
    with pytest.raises(VistageError, match="max_len"):
        vocab.encode("what?", max_len=0)
    with pytest.raises(VistageError, match="min_count"):
        QuestionVocab.build(TRAIN_QUESTIONS, min_count=0)
    with pytest.raises(VistageError):
        QuestionVocab.from_dict({"tokens": ["what"]})
