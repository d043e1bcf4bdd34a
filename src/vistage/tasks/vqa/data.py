"""The VQA store and split: the images decoded once (data/store.py's store, one row per image),
plus `questions.csv`, one row per question, naming its image's store row.

    questions.csv   index, qid, image (store row), image_id, image_name (as the source wrote it),
                    question, answers (JSON list, "" when unanswered), answer_type, answerable (1, 0
                    or "" when not given), split (predefined by the source), label (0 answered, -1
                    unanswered), group

The split assigns questions, grouped by image (data/split.py's grouping): every question about
one image lands in the same split, so no image is seen in training and scored in test.
"""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ...data.split import SPLITS, split_table
from ...data.store import bad_image_error, write_store
from ...errors import VistageError
from .sources import Question, VqaSourceData

QUESTIONS = "questions.csv"
COLUMNS = ("index", "qid", "image", "image_id", "image_name", "question", "answers", "answer_type", "answerable",
           "split", "label", "group")


def questions_frame(questions: list[Question], row_of: dict[str, int], split_of: dict[str, str]) -> pd.DataFrame:
    rows = [row_of[q.image] for q in questions]
    return pd.DataFrame({
        "index": np.arange(len(questions)),
        "qid": [q.qid for q in questions],
        "image": rows,
        "image_id": [q.image for q in questions],
        "image_name": [q.name or q.image for q in questions],  # as the source wrote it (submissions)
        "question": [q.question for q in questions],
        "answers": ["" if q.answers is None else json.dumps(q.answers) for q in questions],
        "answer_type": [q.answer_type for q in questions],
        "answerable": ["" if q.answerable is None else str(q.answerable) for q in questions],
        "split": [q.split or split_of[q.image] or "" for q in questions],
        "label": [-1 if q.answers is None else 0 for q in questions],
        "group": [str(r) for r in rows],
    })


def bad_question_error(bad: list[tuple[str, str]], stage: str) -> VistageError:
    """`prepare: 2 bad question(s): q.json entry 3 (no question); ...`, in the file's order."""
    in_order = sorted(bad, key=lambda b: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", b[0])])
    listed = "; prepare lists them in its data statistics" if stage == "prepare" else ""
    return bad_image_error(in_order, stage, listed, kind="question")


def write_vqa_store(out_dir: str | Path, source: VqaSourceData, dp, stage: str = "prepare") -> dict:
    """Decode the images once and write the questions beside them; the data statistics. A
    question whose image was skipped (data.on_bad_image: skip) is left out with it."""
    stats: dict = {}

    def write_questions(folder: Path, table: pd.DataFrame) -> None:
        row_of = dict(zip(table["id"], table["index"].tolist()))
        split_of = dict(zip(table["id"], table["split"]))
        kept = [q for q in source.questions if q.image in row_of]
        frame = questions_frame(kept, row_of, split_of)
        frame.to_csv(folder / QUESTIONS, index=False)
        stats.update(question_stats(frame))
        stats["questions_without_image"] = len(source.questions) - len(kept)
        stats["images_without_questions"] = source.unasked

    if source.bad_questions and dp.on_bad_image == "error":
        raise bad_question_error(source.bad_questions, stage)
    # skipped: the bad questions are listed with the bad images in the data statistics
    source = dataclasses.replace(source, bad=[*source.bad, *source.bad_questions])
    image_stats = write_store(out_dir, source, dp.image_size, dp.resize, dp.on_bad_image, dp.workers,
                              extra=write_questions)
    keep = ("images", "image_size", "sizes_seen", "distinct_sizes", "skipped")
    return {"task": "vqa", **{k: image_stats[k] for k in keep}, **stats}


def question_stats(frame: pd.DataFrame) -> dict:
    answered = frame[frame["label"] >= 0]
    first_answers = [json.loads(a)[0] for a in answered["answers"]]
    types = answered["answer_type"].value_counts().sort_index()
    return {
        "questions": int(len(frame)),
        "unanswered": int(len(frame) - len(answered)),
        "distinct_first_answers": len(set(first_answers)),
        "per_answer_type": {str(k): int(v) for k, v in types.items() if k},
        "per_predefined_split": {s or "unassigned": int(n)
                                 for s, n in frame["split"].value_counts().sort_index().items()},
    }


def load_questions(store_dir: str | Path) -> pd.DataFrame:
    path = Path(store_dir) / QUESTIONS
    if not path.is_file():
        raise VistageError(f"{path}: missing; this store holds no questions (run prepare with task: vqa)")
    text = ("qid", "image_id", "image_name", "question", "answers", "answer_type", "answerable", "split", "group")
    table = pd.read_csv(path, keep_default_na=False, dtype=dict.fromkeys(text, str))
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise VistageError(f"{path}: no column {missing[0]!r}: written by another vistage version; rerun prepare")
    return table


def answer_lists(frame: pd.DataFrame) -> list[list[str] | None]:
    """The human answers of each question row (None: unanswered)."""
    return [json.loads(a) if a else None for a in frame["answers"]]


def vqa_split_table(questions: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> pd.DataFrame:
    """(index, split) per question: the source's parts kept, the rest carved grouped by image;
    unanswered questions get `unlabeled` (predicted only)."""
    table = split_table(questions[["index", "label", "split", "group"]], ["answered"], val_fraction, test_fraction,
                        seed, min_classes=1)
    image_of = questions["image"].to_numpy()
    for a, b in ((a, b) for i, a in enumerate(SPLITS) for b in SPLITS[i + 1:]):
        shared = np.intersect1d(image_of[table["split"] == a], image_of[table["split"] == b])
        if len(shared):  # only predefined parts that share images can do this
            raise VistageError(f"split: {len(shared)} image(s) have questions in both {a} and {b} (the source's "
                               "predefined parts share images); an image must stay in one split")
    return table


def vqa_split_counts(table: pd.DataFrame, questions: pd.DataFrame) -> dict:
    joined = table.merge(questions[["index", "image", "label"]], on="index")
    counts = {}
    for name in (*SPLITS, "unlabeled"):
        part = joined[joined["split"] == name]
        if len(part) or name in SPLITS:
            counts[name] = {"questions": int(len(part)), "images": int(part["image"].nunique())}
    return counts


def prepare(params, out: Path, metrics: Path) -> str:
    """The images of `vqa.source` decoded once, the questions beside them; statistics into `metrics`."""
    from ...io import write_json
    from .sources import load_vqa_source

    stats = write_vqa_store(out, load_vqa_source(params.data, params.vqa), params.data)
    write_json(metrics, stats)
    left_out = [f"{len(stats['skipped'])} bad images or entries skipped"] if stats["skipped"] else []
    left_out += [f"{stats['images_without_questions']} images without questions left out"] \
        if stats["images_without_questions"] else []
    listed = f" ({', '.join(left_out)}: see {metrics})" if left_out else ""
    return f"{stats['images']} images, {stats['questions']} questions{listed} -> {out}"


def split(params, store: Path, out: Path, metrics: Path) -> str:
    """The questions assigned to train/val/test, grouped by image."""
    from ...data.store import load_store
    from ...io import atomic_path, write_json

    load_store(store)  # a store at all: the same one-line error as classification's
    questions = load_questions(store)
    d = params.data
    table = vqa_split_table(questions, d.val_fraction, d.test_fraction, d.split_seed)
    counts = vqa_split_counts(table, questions)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    write_json(metrics, counts)
    return ", ".join(f"{s} {counts[s]['questions']}" for s in SPLITS) + f" -> {out}"
