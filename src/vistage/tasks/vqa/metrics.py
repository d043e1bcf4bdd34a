"""Scoring VQA predictions (no torch: evaluate reads what predict saved).

metrics/eval.json holds, per split (test first, then val):

- `vqa_accuracy`: the official VQA accuracy (answers.vqa_accuracy: both sides normalized as
  vqaEval.py does; min(1, matching humans / 3) averaged over the leave-one-out subsets of the
  human answers; exact match when a question has one answer);
- `accuracy`: plain accuracy, the prediction against the most common human answer (normalized);
  for single-answer sets (easy-VQA, DAQUAR) it equals vqa_accuracy;
- `per_answer_type`: vqa_accuracy per answer type, when the data names types;
- `wups_0.9`, `wups_0.0`: DAQUAR's WUPS (wups.py: Wu-Palmer similarity over WordNet, list
  answers item by item) of the prediction against the most common human answer; with WordNet not
  installed (the optional extra `wups`), `wups_unavailable` says so instead;
- `single_answer` (with `vqa.list_answers: set`, when some answers are lists, as DAQUAR's "book,
  scissor"): `questions`,
  `accuracy` and WUPS of the questions whose answer is one item, not a list. DAQUAR's papers
  report this part apart ("single answer", about 90% of its questions) from all of them
  ("multiple answers"): Ask Your Neurons 21.7% and 19.4%, Ma et al.'s CNN 23.4% and 20.7%; SAN's
  table sets its 29.3% beside the single-answer figures. So this is the figure to set beside them;
- `answerability` (VizWiz, when `answerable` is given): `accuracy` of answerability read from the
  answer (predicting "unanswerable" says not answerable), and vqa_accuracy over the answerable
  and over the unanswerable questions.

Answers are compared as `vqa.list_answers` reads them (answers.answer_key): "text", the official
normalization above; "set", a list answer as its set of items, DAQUAR's accuracy.

The CSVs dvc plots reads keep classification's shape: per answer (the most common human answer
as the class), confusion rows (expected, predicted) and a reliability diagram (the mean VQA score
against the top answer's confidence, 15 bins closed on the right).
"""

import json
import zipfile
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import VistageError
from ...evaluation import CALIBRATION_BINS, DIGITS, SplitRows
from .answers import answer_key, is_single_answer, normalize_answer, per_type_accuracy, vqa_accuracy
from .wups import wups_scores

UNANSWERABLE = "unanswerable"


@dataclass
class VqaPredictions(SplitRows):
    noun = "questions"  # not a field: no annotation
    splits: np.ndarray  # test, val or unlabeled, per question
    index: np.ndarray  # question rows of the store's questions.csv
    qids: np.ndarray
    image_ids: np.ndarray
    image_rows: np.ndarray  # store rows of the images
    questions: np.ndarray
    human: np.ndarray  # the human answers, a JSON list per question ("" when unanswered)
    answer_types: np.ndarray
    answerable: np.ndarray  # "1", "0" or "" (not given)
    answers: np.ndarray  # the predicted answer
    confidence: np.ndarray  # its softmax probability

    def rows(self, keep: np.ndarray) -> "VqaPredictions":
        return VqaPredictions(*(getattr(self, f.name)[keep] for f in fields(self)))

    def human_answers(self) -> list[list[str]]:
        return [json.loads(a) if a else [] for a in self.human]

    def save(self, path: str | Path) -> None:
        from ...io import atomic_path

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, task=np.array("vqa"), **{f.name: np.asarray(getattr(self, f.name)) for f in fields(self)})

    @classmethod
    def load(cls, path: str | Path) -> "VqaPredictions":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(**{f.name: data[f.name] for f in fields(cls)})
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            raise VistageError(f"{path}: not a VQA predictions file written by predict; rerun the predict "
                               "stage") from None


def most_common(answers: list[str], list_answers: str = "text") -> str:
    """The most common answer, as `list_answers` reads it (answers.answer_key; "" for none); of
    equally common ones, the first given."""
    return Counter(answer_key(a, list_answers) for a in answers).most_common(1)[0][0] if answers else ""


def most_common_as_given(answers: list[str], list_answers: str = "text") -> str:
    """The most common human answer as a human wrote it (its list commas kept: "book, scissor")."""
    common = most_common(answers, list_answers)
    return next((a for a in answers if answer_key(a, list_answers) == common), "")


def score_rows(pred: VqaPredictions, list_answers: str = "text") -> tuple[list[str], np.ndarray]:
    """(expected answer, VQA accuracy of the prediction) per question; NaN when unanswered."""
    human = pred.human_answers()
    expected = [most_common(a, list_answers) for a in human]
    score = np.array([vqa_accuracy(p, a, list_answers) if a else np.nan for p, a in zip(pred.answers, human)])
    return expected, score


def _answered(pred: VqaPredictions) -> VqaPredictions:
    keep = pred.human != ""
    if not keep.any():
        raise VistageError(f"the {'/'.join(pred.split_names) or 'predicted'} questions have no answers to "
                           "evaluate against")
    return pred.rows(keep)


def vqa_metrics(pred: VqaPredictions, list_answers: str = "text") -> dict:
    """The scores of one split's answered questions (module docstring), answers compared as
    `list_answers` reads them (answers.LIST_ANSWERS)."""
    pred = _answered(pred)
    human = pred.human_answers()
    typed = (pred.answer_types != "").all()
    scores = per_type_accuracy(list(pred.answers), human, list(pred.answer_types) if typed else None, DIGITS,
                               list_answers)
    out = {"questions": int(len(pred.index)), "vqa_accuracy": scores["overall"], **_plain_scores(pred, list_answers)}
    if scores["per_type"]:
        out["per_answer_type"] = scores["per_type"]
    if list_answers == "set":  # the data reads its commas as lists (DAQUAR): score the one-item part apart
        single = np.array([is_single_answer(most_common(a, list_answers)) for a in human])
        if not single.all() and single.any():
            part = pred.rows(single)
            out["single_answer"] = {"questions": int(len(part.index)), **{  # wups_unavailable: said once, above
                k: v for k, v in _plain_scores(part, list_answers).items() if k != "wups_unavailable"}}
    if (pred.answerable != "").all():
        out["answerability"] = answerability(pred, human, list_answers)
    return out


def _plain_scores(pred: VqaPredictions, list_answers: str) -> dict:
    """`accuracy` (against the most common human answer) and WUPS of `pred`'s questions."""
    human = pred.human_answers()
    expected = [most_common(a, list_answers) for a in human]
    plain = np.mean([answer_key(p, list_answers) == e for p, e in zip(pred.answers, expected)])
    return {"accuracy": round(float(plain), DIGITS),
            **wups_scores(list(pred.answers), [most_common_as_given(a, list_answers) for a in human], DIGITS)}


def answerability(pred: VqaPredictions, human: list[list[str]], list_answers: str = "text") -> dict:
    truth = pred.answerable == "1"
    said = np.array([normalize_answer(a) != UNANSWERABLE for a in pred.answers])
    score = np.array([vqa_accuracy(p, a, list_answers) for p, a in zip(pred.answers, human)])
    out = {"accuracy": round(float((said == truth).mean()), DIGITS)}
    for name, part in (("vqa_accuracy_answerable", truth), ("vqa_accuracy_unanswerable", ~truth)):
        if part.any():
            out[name] = round(float(score[part].mean()), DIGITS)
    return out


def split_metrics(pred: VqaPredictions, list_answers: str = "text") -> dict:
    """What metrics/eval.json holds: the scores of each split predicted, test first."""
    return {name: vqa_metrics(pred.of(name), list_answers) for name in pred.split_names}


def per_answer_table(pred: VqaPredictions, list_answers: str = "text") -> pd.DataFrame:
    """Precision, recall and F1 per expected answer (the most common human answer as the class)."""
    from sklearn.metrics import precision_recall_fscore_support

    pred = _answered(pred)
    expected = [most_common(a, list_answers) for a in pred.human_answers()]
    predicted = [answer_key(a, list_answers) for a in pred.answers]
    labels = sorted(set(expected))
    precision, recall, f1, support = precision_recall_fscore_support(expected, predicted, labels=labels,
                                                                     zero_division=0)
    return pd.DataFrame({"class": labels, "precision": precision.round(4), "recall": recall.round(4),
                         "f1": f1.round(4), "support": support})


def confusion_rows(pred: VqaPredictions, list_answers: str = "text") -> pd.DataFrame:
    pred = _answered(pred)
    return pd.DataFrame({"actual": [most_common(a, list_answers) for a in pred.human_answers()],
                         "predicted": [answer_key(a, list_answers) for a in pred.answers]})


def confusion_pairs(rows: pd.DataFrame) -> pd.DataFrame:
    """`confusion_rows` as one row per (expected, predicted) answer pair that occurs: count, and
    rate = count / questions of the expected answer (classification's confusion_pairs columns)."""
    counts = rows.value_counts(["actual", "predicted"]).rename("count").reset_index()
    counts = counts.sort_values(["actual", "predicted"], kind="stable", ignore_index=True)
    totals = counts.groupby("actual")["count"].transform("sum")
    counts["rate"] = (counts["count"] / totals).round(6)
    return counts


def calibration_bins(pred: VqaPredictions, n_bins: int = CALIBRATION_BINS,
                     list_answers: str = "text") -> pd.DataFrame:
    """Reliability: per non-empty bin of confidence, its mean confidence and mean VQA score."""
    pred = _answered(pred)
    _, score = score_rows(pred, list_answers)
    confidence = np.clip(pred.confidence.astype(np.float64), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.searchsorted(edges[1:-1], confidence)  # (lo, hi] bins
    used = np.unique(which)
    return pd.DataFrame({"bin_lower": edges[used].round(DIGITS), "bin_upper": edges[used + 1].round(DIGITS),
                         "confidence": [round(float(confidence[which == b].mean()), DIGITS) for b in used],
                         "accuracy": [round(float(score[which == b].mean()), DIGITS) for b in used],
                         "count": [int((which == b).sum()) for b in used]})


def evaluate(logits: Path, paths, list_answers: str = "text") -> list[str]:
    """The evaluate stage with task: vqa (base.EvaluatePaths): metrics of each split, and the
    per-answer, confusion and reliability tables of the headline split; a line per split.
    `list_answers` (vqa.list_answers) is how answers are compared."""
    from ...evaluation import check_predictions_task, fit_note, write_tables

    check_predictions_task(logits, "vqa")
    pred = VqaPredictions.load(logits)
    summary = split_metrics(pred, list_answers)
    headline = pred.of(pred.headline)
    rows = confusion_rows(headline, list_answers)
    tables = [(paths.per_class, per_answer_table(headline, list_answers)), (paths.confusion, rows),
              (paths.calibration, calibration_bins(headline, list_answers=list_answers))]
    if paths.confusion_pairs is not None:
        tables.append((paths.confusion_pairs, confusion_pairs(rows)))
    write_tables(tables, paths.metrics, summary)
    lines = []
    for name, m in summary.items():
        types = ", ".join(f"{t} {v:.4f}" for t, v in m.get("per_answer_type", {}).items())
        wups = f", WUPS@0.9 {m['wups_0.9']:.4f}, WUPS@0.0 {m['wups_0.0']:.4f}" if "wups_0.9" in m else \
            f" ({m['wups_unavailable']})"
        single = m.get("single_answer")
        one = f"; single answers ({single['questions']} questions, the part DAQUAR's papers report): accuracy " \
              f"{single['accuracy']:.4f}" if single else ""
        lines.append(f"{name}, {m['questions']} questions: VQA accuracy {m['vqa_accuracy']:.4f}, "
                     f"accuracy {m['accuracy']:.4f}{f' ({types})' if types else ''}{wups}{one}")
    return lines + fit_note(summary)
