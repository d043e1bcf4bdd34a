"""VQA answers: the official normalization and accuracy, and the answer vocabulary a classifier
predicts over.

Reference: the official evaluation script, vqaEval.py in GT-Vision-Lab/VQA
(PythonEvaluationTools/vqaEvaluation, last changed 2021-03-11 in commit a013f00). Scores here must
match the numbers papers report, so every rule below says which step of that script it follows
and where it deliberately differs.
"""

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from ...errors import VistageError

# processPunctuation: these marks are dropped, or turned into a space (see _strip_punctuation).
# Not listed, so kept: the period (handled separately), the apostrophe, ':', '#', '$', '%', '&',
# '*', '^', '|', '~'.
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
               ">", "<", "@", "`", ",", "?", "!")

# commaStrip, "(\d)(\,)(\d)": a digit, comma, digit anywhere ("1,000") and all marks are dropped.
_NUMBER_COMMA = re.compile(r"\d,\d")

# periodStrip, "(?!<=\d)(\.)(?!\d)". Its first group is a typo for a lookbehind: as written it is
# a lookahead for the two characters "<=" followed by a digit, which never matches at a period. So
# the script drops every period not followed by a digit ("yes." -> "yes", "2.5" stays).
_PERIOD = re.compile(r"\.(?!\d)")
# The script passes re.UNICODE (32) where re.sub takes `count`, so at most 32 periods go.
_PERIOD_COUNT = 32

# processDigitArticle: its manualMap and articles.
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})

# The contracted forms the script restores. Its table maps each spelling of a form with exactly one
# apostrophe left out to the form ("dont" -> "don't"; "couldnt've" and "couldn'tve" ->
# "couldn't've"), which _contraction_table rebuilds. Its four keys with a capital I ("Im", "Ive",
# "Id've", "I'dve") can never match lowercased text, and "let's"/"she's" map to themselves, so they
# are left out: the result is the same.
CONTRACTED_FORMS = (
    "ain't", "aren't", "can't", "could've", "couldn't", "couldn't've", "didn't", "doesn't",
    "don't", "hadn't", "hadn't've", "hasn't", "haven't", "he'd", "he'd've", "he's", "how'd",
    "how'll", "how's", "isn't", "it'd", "it'd've", "it'll", "ma'am", "mightn't", "mightn't've",
    "might've", "mustn't", "must've", "needn't", "not've", "o'clock", "oughtn't", "'ow's'at",
    "shan't", "she'd've", "should've", "shouldn't", "shouldn't've", "somebody'd've",
    "somebody'll", "somebody's", "someone'd", "someone'd've", "someone'll", "someone's",
    "something'd", "something'd've", "something'll", "that's", "there'd", "there'd've",
    "there're", "there's", "they'd", "they'd've", "they'll", "they're", "they've", "'twas",
    "wasn't", "we'd've", "we've", "weren't", "what'll", "what're", "what's", "what've", "when's",
    "where'd", "where's", "where've", "who'd", "who'd've", "who'll", "who's", "who've", "why'll",
    "why're", "why's", "won't", "would've", "wouldn't", "wouldn't've", "y'all", "y'all'll",
    "y'all'd've", "you'd", "you'd've", "you'll", "you're", "you've",
)
# One entry of the script's table runs the other way; kept so scores match it.
_REVERSED_CONTRACTIONS = {"somebody'd": "somebodyd"}


def _contraction_table() -> dict[str, str]:
    table = {}
    for form in CONTRACTED_FORMS:
        for at in (i for i, ch in enumerate(form) if ch == "'"):
            table[form[:at] + form[at + 1:]] = form
    table.update(_REVERSED_CONTRACTIONS)
    return table


CONTRACTIONS = _contraction_table()


def _strip_punctuation(text: str) -> str:
    """processPunctuation. A mark touching a space ("yes, no"), or any mark at all once the text
    holds a digit-comma-digit, is dropped; otherwise it becomes a space, so words it joined stay
    apart ("chair,table" -> "chair table"). Both tests look at the text as given, not as edited."""
    drop_all = _NUMBER_COMMA.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        glued = drop_all or f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if glued else " ")
    return _PERIOD.sub("", out, count=_PERIOD_COUNT)


def _digits_articles_contractions(text: str) -> str:
    """processDigitArticle: lowercase, split on whitespace, number words to digits, articles out,
    contractions restored, words joined by single spaces."""
    words = []
    for word in text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def normalize_answer(text: str) -> str:
    """The official VQA answer normalization, in the script's order:

    1. newlines and tabs to spaces, outer whitespace stripped;
    2. processPunctuation: ; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? ! dropped or made a space
       (see _strip_punctuation); then periods not followed by a digit dropped;
    3. processDigitArticle: lowercase; "none", "zero".."ten" -> "0".."10"; "a", "an", "the"
       dropped; "dont" -> "don't" and the rest of the script's contractions table; one space
       between words.

    So "Two dogs." -> "2 dogs", "1,000" -> "1000", "chair,table" and "chair, table" -> "chair table".
    Apostrophes, colons and curly quotes are kept, as the script keeps them.

    Unlike the script, both sides are always normalized: it skips normalization for a question
    whose human answers are all the same string, so there "Yes" scores 0 against ten "yes".
    """
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _digits_articles_contractions(_strip_punctuation(text))


def split_list_answer(text: str) -> list[str]:
    """The items of a list answer such as DAQUAR's "chair, table", each normalized, empty ones
    dropped. A comma between two digits is a thousands separator and does not split ("1,000").

    normalize_answer alone already scores lists stably ("chair,table" and "chair, table" both give
    "chair table"); this is for data sets that want order-free or per-item matching.
    """
    items = (normalize_answer(part) for part in re.split(r"(?<!\d),|,(?!\d)", text))
    return [item for item in items if item]


def is_single_answer(text: str) -> bool:
    """One item, not a list ("lamp, lamp" is one): the "single answer" part DAQUAR's papers score apart."""
    return len(set(split_list_answer(text))) <= 1


# How a list answer ("book, scissor") is read. "text": the official VQA normalization, commas
# dropped and order kept ("book scissor" is not "scissor book"), as VQA v2 and VizWiz score.
# "set": its items, each once, in alphabetical order ("book, scissor" is "scissor, book"), as
# DAQUAR's own script (Malinowski's calculate_wups.py) scores accuracy: set equality.
LIST_ANSWERS = ("text", "set")


def answer_key(text: str, list_answers: str = "text") -> str:
    """The form in which two answers are compared, counted and predicted (see LIST_ANSWERS):
    "set" gives "book, scissor" for both "scissor, book" and "book,scissor, book"."""
    if list_answers == "set":
        return ", ".join(sorted(set(split_list_answer(text))))
    if list_answers != "text":
        raise ValueError(f"list_answers must be one of {', '.join(LIST_ANSWERS)}, got {list_answers!r}")
    return normalize_answer(text)


def agreement_score(matches: int, total: int) -> float:
    """The VQA score of an answer that `matches` of `total` humans gave, after normalization.

    The script averages min(1, matches among the others / 3) over the `total` ways to leave one
    human out. Of those, total - matches leave out someone who disagreed (all `matches` remain)
    and `matches` leave out someone who agreed (matches - 1 remain). With 10 humans: 1 agreeing
    -> 0.3, 2 -> 0.6, 3 -> 0.9, 4 or more -> 1.0. The same formula is used for 2..9 humans (so
    with 3 unanimous humans the best score is 2/3, as the script would give). With one human the
    leave-one-out set is empty and the script scores 0 always; here it is exact match, the usual
    metric of single-answer data sets (easy-VQA, DAQUAR).

    Computed as one division of integers, so 0.3, 0.6, 0.9 come out exactly as written.
    """
    if total < 1 or not 0 <= matches <= total:
        raise ValueError(f"agreement_score: need 0 <= matches <= total and total >= 1, "
                         f"got {matches} of {total}")
    if total == 1:
        return float(matches)
    thirds = (total - matches) * min(3, matches) + matches * min(3, matches - 1)
    return thirds / (3 * total)


def vqa_accuracy(predicted: str, answers: Sequence[str], list_answers: str = "text") -> float:
    """The official VQA accuracy of one predicted answer against the human answers (see
    agreement_score for how the count of agreeing humans becomes a score), answers compared as
    `list_answers` reads them (answer_key)."""
    answers = _answer_list(answers)
    if not answers:
        raise ValueError("vqa_accuracy: a question needs at least one human answer")
    predicted = answer_key(predicted, list_answers)
    matches = sum(answer_key(answer, list_answers) == predicted for answer in answers)
    return agreement_score(matches, len(answers))


def per_type_accuracy(preds: Sequence[str], answers_list: Sequence[Sequence[str]],
                      types: Sequence[str] | None = None, digits: int = 6, list_answers: str = "text") -> dict:
    """Mean VQA accuracy over all questions and per answer type, as fractions (the script reports
    percentages with 2 decimals): {"overall": 0.61, "per_type": {"number": 0.3, "yes/no": 0.9}}.

    `types` is one label per question ("yes/no", "number", "other", "unanswerable", ...); without
    it "per_type" is empty. Types are listed in sorted order.
    """
    answers_list = [_answer_list(answers) for answers in answers_list]
    types = list(types) if types is not None else None
    if len(preds) != len(answers_list) or (types is not None and len(types) != len(preds)):
        raise ValueError(f"per_type_accuracy: {len(preds)} predictions, {len(answers_list)} "
                         f"answer lists and {'no' if types is None else len(types)} types")
    if not preds:
        raise ValueError("per_type_accuracy: no questions to score")
    scores = [vqa_accuracy(pred, answers, list_answers) for pred, answers in zip(preds, answers_list)]
    by_type: dict[str, list[float]] = {}
    for kind, score in zip(types or [], scores):
        by_type.setdefault(kind, []).append(score)
    return {
        "overall": round(sum(scores) / len(scores), digits),
        "per_type": {kind: round(sum(s) / len(s), digits) for kind, s in sorted(by_type.items())},
    }


def _answer_list(answers: Sequence[str]) -> list[str]:
    """Guard against a bare string, which would otherwise be read as a list of one-letter answers."""
    if isinstance(answers, str):
        raise TypeError(f"expected a list of answers, got the string {answers!r}; "
                        "wrap a single answer in a list")
    return list(answers)


class AnswerVocab:
    """The answers a VQA classifier can output: the `top_k` most common answers of the training
    questions, most common first (id 0), ties in alphabetical order, each in the form answer_key
    gives it under `list_answers` (with "set", "chair, table" and "table, chair" are one answer).

    Built from training answers only, so validation and test answers never leak into the label
    space; their questions whose answer is missing simply score 0, as in the official metric.
    """

    def __init__(self, answers: Sequence[str], list_answers: str = "text"):
        answers = list(answers)
        if not all(isinstance(a, str) and a for a in answers) or len(set(answers)) != len(answers):
            raise VistageError("answer vocabulary: expected distinct non-empty strings, got "
                               f"{answers[:5]!r}{'...' if len(answers) > 5 else ''}")
        if list_answers not in LIST_ANSWERS:
            raise VistageError(f"answer vocabulary: list_answers must be one of {', '.join(LIST_ANSWERS)}, "
                               f"got {list_answers!r}")
        self.answers = answers
        self.list_answers = list_answers
        self._ids = {answer: i for i, answer in enumerate(answers)}

    def key(self, answer: str) -> str:
        return answer_key(answer, self.list_answers)

    @classmethod
    def build(cls, train_answers: Iterable[Sequence[str]], top_k: int, list_answers: str = "text") -> "AnswerVocab":
        """Count every human answer of every training question (a question where 10 people say
        "yes" counts "yes" 10 times); answers that normalize to "" are not counted."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise VistageError(f"answer vocabulary size (top_k) must be a positive integer, "
                               f"got {top_k!r}")
        counts = Counter(answer_key(answer, list_answers) for answers in train_answers
                         for answer in _answer_list(answers))
        counts.pop("", None)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls([answer for answer, _ in ranked[:top_k]], list_answers)

    def __len__(self) -> int:
        return len(self.answers)

    def index(self, answer: str) -> int | None:
        """The id of an answer (its key first), or None when it is not in the vocabulary."""
        return self._ids.get(self.key(answer))

    def soft_target(self, answers: Sequence[str]) -> dict[int, float]:
        """{id: VQA score} for each vocabulary answer among a question's human answers, in id
        order: the accuracy the classifier would get by predicting it, so a loss on these targets
        optimizes the metric itself. Answers outside the vocabulary are left out."""
        answers = _answer_list(answers)
        counts = Counter(self.key(answer) for answer in answers)
        scores = {self._ids[a]: agreement_score(n, len(answers)) for a, n in counts.items()
                  if a in self._ids}
        return dict(sorted(scores.items()))

    def most_common(self, answers: Sequence[str]) -> int | None:
        """The id of the answer most humans gave (for a cross-entropy target), or None when that
        answer is not in the vocabulary (or there are no answers). Among equally common answers
        the one with the lowest id wins: the one more common in training."""
        counts = Counter(self.key(answer) for answer in _answer_list(answers))
        if not counts:
            return None
        top = max(counts.values())
        ids = [self._ids[a] for a, n in counts.items() if n == top and a in self._ids]
        return min(ids, default=None)

    def coverage(self, answers_list: Iterable[Sequence[str]]) -> float:
        """The share of questions whose most common answer is in the vocabulary: the best
        accuracy-like fraction a classifier over this vocabulary can reach on them."""
        hits = [self.most_common(answers) is not None for answers in answers_list]
        if not hits:
            raise ValueError("coverage: no questions")
        return sum(hits) / len(hits)

    def to_dict(self) -> dict:
        """Plain str/list only, so a checkpoint holding it loads with torch.load(weights_only=True)."""
        return {"answers": list(self.answers), "list_answers": self.list_answers}

    @classmethod
    def from_dict(cls, data: dict) -> "AnswerVocab":
        if not isinstance(data, dict) or not isinstance(data.get("answers"), list):
            raise VistageError(f"answer vocabulary: expected {{'answers': [...]}}, got {type(data).__name__}"
                               f"{' with keys ' + str(sorted(data)) if isinstance(data, dict) else ''}")
        # checkpoints from before list_answers read lists as text
        return cls(data["answers"], data.get("list_answers", "text"))
