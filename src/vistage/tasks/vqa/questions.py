"""VQA questions: a small tokenizer and the word vocabulary a question encoder embeds.

numpy only (no torch), so data preparation can encode questions without loading the model stack.
"""

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from ...errors import VistageError

PAD, UNK = 0, 1
PAD_TOKEN, UNK_TOKEN = "<pad>", "<unk>"

# In order of preference: a number with decimal or thousands separators ("3.5", "1,000"), a word
# with inner apostrophes ("what's", "o'clock"), else any single non-space character ("?", "-").
_TOKEN = re.compile(r"\d+(?:[.,]\d+)+|\w+(?:'\w+)*|[^\w\s]")
_CURLY_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'"})


def tokenize(question: str) -> list[str]:
    """Lowercased words and punctuation marks: "What's the man's 1,000-dollar bill?" ->
    ["what's", "the", "man's", "1,000", "-", "dollar", "bill", "?"].

    Contractions stay whole ("what's", "isn't"), as the answers keep their apostrophes too; curly
    apostrophes count as straight ones. Punctuation marks are tokens of their own, so "dog?" and
    "dog" share the word. The markers <pad> and <unk> cannot come out of it ("<", "pad", ">").
    """
    return _TOKEN.findall(question.lower().translate(_CURLY_APOSTROPHES))


class QuestionVocab:
    """Question words seen at least `min_count` times in the training questions, most frequent
    first, ties in alphabetical order, after the reserved ids 0 = <pad> and 1 = <unk>.

    Built from training questions only; any other word, and any word rarer than `min_count`,
    encodes as <unk>, so the model learns an embedding for unseen words too.
    """

    def __init__(self, words: Sequence[str], min_count: int = 1):
        words = list(words)
        if (not all(isinstance(w, str) and w for w in words) or len(set(words)) != len(words)
                or {PAD_TOKEN, UNK_TOKEN} & set(words)):
            raise VistageError("question vocabulary: expected distinct non-empty words without "
                               f"{PAD_TOKEN}/{UNK_TOKEN}, got {words[:5]!r}{'...' if len(words) > 5 else ''}")
        self.tokens = [PAD_TOKEN, UNK_TOKEN, *words]
        self.min_count = min_count
        self._ids = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(cls, train_questions: Iterable[str], min_count: int = 1) -> "QuestionVocab":
        _check_positive("min_count", min_count)
        counts = Counter(token for question in train_questions for token in tokenize(question))
        kept = sorted((item for item in counts.items() if item[1] >= min_count),
                      key=lambda item: (-item[1], item[0]))
        return cls([word for word, _ in kept], min_count)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, question: str, max_len: int) -> list[int]:
        """Token ids, cut to the first `max_len` tokens (the question word and its subject come
        first). Never empty: a question without tokens is one <unk>, so lengths stay >= 1, which
        packed recurrent layers require."""
        _check_positive("max_len", max_len)
        ids = [self._ids.get(token, UNK) for token in tokenize(question)][:max_len]
        return ids or [UNK]

    def encode_batch(self, questions: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, lengths): int64 [N, max_len] padded with <pad> = 0, and int64 [N] true lengths.
        Always max_len columns, so every batch and split has the same shape."""
        _check_positive("max_len", max_len)
        ids = np.full((len(questions), max_len), PAD, dtype=np.int64)
        lengths = np.zeros(len(questions), dtype=np.int64)
        for row, question in enumerate(questions):
            encoded = self.encode(question, max_len)
            ids[row, :len(encoded)] = encoded
            lengths[row] = len(encoded)
        return ids, lengths

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The tokens of encoded ids, padding left out (for reports and debugging)."""
        return [self.tokens[i] for i in ids if i != PAD]

    def to_dict(self) -> dict:
        """Plain lists and ints only, so a checkpoint holding it loads with
        torch.load(weights_only=True)."""
        return {"tokens": list(self.tokens), "min_count": self.min_count}

    @classmethod
    def from_dict(cls, data: dict) -> "QuestionVocab":
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or tokens[:2] != [PAD_TOKEN, UNK_TOKEN]:
            raise VistageError(f"question vocabulary: expected {{'tokens': ['{PAD_TOKEN}', "
                               f"'{UNK_TOKEN}', ...], 'min_count': n}}, got {str(data)[:80]}")
        return cls(tokens[2:], data.get("min_count", 1))


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VistageError(f"question {name} must be a positive integer, got {value!r}")
