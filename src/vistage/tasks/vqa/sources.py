"""VQA data sources, chosen by `vqa.source` (task: vqa): images plus the questions asked about them.

A VQA source is an image source (the same `Sample`s and readers as data/: each image listed
once, decoded once into the store, however many questions it has) plus a list of `Question`s
naming their image by its sample id. Entries that cannot be used (malformed, an image that is
not there, a duplicate id, an empty answer list) go to `bad_questions`, as unreadable images go
to `bad`: prepare stops on them, naming them as questions, or skips and lists them
(`data.on_bad_image`).

- `easy-vqa`: the PyPI package's images and questions, its official train and test parts kept.
- `csv`: a CSV of (image, question, answer[, answer type]), column names in `vqa.*_column`.
- `json`: VizWiz / VQA-v2 style entries: image, question, answers [{answer, answer_confidence}],
  optional answer_type, answerable, question_id.

csv and json read their questions file from inside a folder or archive (`data.path` +
`vqa.questions_file`, image paths relative to the questions file's folder), or take `data.path`
as the questions file with the images in `data.root` (a folder or archive).
"""

import json as jsonlib  # `json` is a source keyword here
import posixpath
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ...data.base import FileReader, Sample, SourceData, require_path
from ...data.folder import list_entries
from ...errors import VistageError
from ...registry import Registry

VQA_SOURCES = Registry("vqa.source")


@dataclass
class Question:
    qid: str  # unique id: the source's question id, or where the question sits (file and row)
    image: str  # the id of its image sample
    question: str
    answers: list[str] | None  # the human answers (one for single-answer sets); None: unanswered
    answer_type: str = ""
    answerable: int | None = None  # VizWiz: 1 answerable, 0 not; None: not given
    split: str | None = None  # predefined by the source (easy-VQA's train/test parts)
    where: str = ""  # where it sits in the source (file and row or entry), for error lines
    name: str = ""  # the image as the source names it (`image` becomes the store's sample id)


@dataclass
class VqaSourceData(SourceData):
    questions: list[Question] = field(default_factory=list)
    bad_questions: list[tuple[str, str]] = field(default_factory=list)  # (entry, what is wrong)
    unasked: int = 0  # images no question asks about: left out (counted in metrics/data.json)


# -- easy-VQA ---------------------------------------------------------------------------------

EASY_VQA_TYPES = {"yes": "yes/no", "no": "yes/no", "circle": "shape", "rectangle": "shape", "triangle": "shape"}


@VQA_SOURCES.register("easy-vqa", help="easy-VQA (packaged): 5,000 64x64 images, 48,248 questions, 13 answers")
def easy_vqa(dp, vp) -> VqaSourceData:
    """Its official train and test parts as predefined splits; answer types from the answers
    (yes/no, shape, color), which the package does not name."""
    import easy_vqa as package

    samples, questions, unasked = [], [], 0
    for split, (texts, answers, image_ids), paths in (
            ("train", package.get_train_questions(), package.get_train_image_paths()),
            ("test", package.get_test_questions(), package.get_test_image_paths())):
        asked = set(image_ids)
        samples += [Sample(f"{split}/{i}.png", None, paths[i], split) for i in sorted(paths) if i in asked]
        unasked += len(set(paths) - asked)
        for k, (text, answer, image_id) in enumerate(zip(texts, answers, image_ids)):
            questions.append(Question(f"{split}/{k}", f"{split}/{image_id}.png", text, [answer],
                                      EASY_VQA_TYPES.get(answer, "color"), split=split))
    return VqaSourceData([], samples, FileReader(), "easy-VQA (packaged)", questions=questions, unasked=unasked)


# -- files: a questions file and its images -----------------------------------------------------

def _archive_names(path: Path) -> list[str]:
    if path.is_dir():
        return [p.relative_to(path).as_posix() for p in sorted(path.rglob("*")) if p.is_file()]
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                return [i.filename for i in zf.infolist() if not i.is_dir()]
        with tarfile.open(path) as tar:
            return [m.name for m in tar if m.isfile()]
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise VistageError(f"{path}: not a readable archive ({first})") from None


def _read_member(path: Path, name: str) -> bytes:
    if path.is_dir():
        return (path / name).read_bytes()
    if path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            return zf.read(name)
    with tarfile.open(path) as tar:
        return tar.extractfile(name).read()


def questions_file(dp, vp, suffix: str) -> tuple[str, bytes, Path, str]:
    """(name shown in errors, the file's bytes, where the images are, the folder image paths are
    relative to inside it)."""
    path = require_path(dp, f"a {suffix} questions file, or a folder or archive holding one")
    if vp.questions_file is None:
        if path.is_dir() or not path.name.lower().endswith(suffix):
            raise VistageError(f"params.yaml: vqa.questions_file: name the {suffix} file inside {path} "
                               f"(or set data.path to the {suffix} file itself)")
        root = Path(dp.root).expanduser()
        if not root.exists():
            raise VistageError(f"params.yaml: data.root: {str(root)!r} (the images of {path.name}) does not exist")
        return str(path), path.read_bytes(), root, ""
    names = _archive_names(path)
    wanted = vp.questions_file.strip("/")
    found = [n for n in names if n == wanted or n.endswith("/" + wanted)]
    if len(found) != 1:
        what = "not found" if not found else f"found {len(found)} times ({', '.join(found[:3])})"
        raise VistageError(f"params.yaml: vqa.questions_file: {wanted!r} {what} in {path}")
    return f"{path}:{found[0]}", _read_member(path, found[0]), path, posixpath.dirname(found[0])


def image_samples(images_at: Path, base: str, questions: list[Question], bad: list, bad_questions: list,
                  follow_links: bool) -> tuple[list[Sample], object, list[Question], int]:
    """The images the questions name (in the folder's or archive's order, which an archive
    reader needs), the reader, the questions whose image is there (the others go to
    `bad_questions`; refused images to `bad`), and how many images no question names."""
    entries, reader, refused, _ = list_entries(images_at, follow_links)
    bad += refused
    wanted = {posixpath.normpath(posixpath.join(base, q.image)) for q in questions}
    samples = [Sample(rel, None, ref) for rel, ref in entries if rel in wanted]
    found, kept = {s.id for s in samples}, []
    for q in questions:  # in the source's order
        rel = posixpath.normpath(posixpath.join(base, q.image))
        if rel in found:
            q.name, q.image = q.image, rel
            kept.append(q)
        else:
            bad_questions.append((q.where or q.qid, f"image {q.image!r} not found in {images_at}"))
    return samples, reader, kept, len(entries) - len(samples)


def _source(dp, vp, name: str, questions: list[Question], bad_questions: list, images_at: Path, base: str
            ) -> VqaSourceData:
    bad_images: list = []
    samples, reader, kept, unasked = image_samples(images_at, base, questions, bad_images, bad_questions,
                                                   dp.follow_links)
    return VqaSourceData([], samples, reader, f"{name} with images in {images_at}", bad_images, questions=kept,
                         bad_questions=bad_questions, unasked=unasked)


@VQA_SOURCES.register(help="a CSV of (image, question, answer[, answer type]); columns in vqa.*_column")
def csv(dp, vp) -> VqaSourceData:
    import io

    from ...data.csv_source import read_csv_columns

    name, raw, images_at, base = questions_file(dp, vp, ".csv")
    table = read_csv_columns(io.BytesIO(raw), name, vp, "vqa",
                             ("image_column", "question_column", "answer_column", "answer_type_column"))
    questions, bad = [], []
    for row_number, row in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        where = f"{name} row {row_number}"
        image, text = row[vp.image_column].strip(), row[vp.question_column].strip()
        # a list answer ("chair, table") stays one answer string: the metric normalizes it whole
        answer = row[vp.answer_column].strip() if vp.answer_column else None
        problem = "empty image path" if not image else "empty question" if not text else \
            "empty answer" if answer == "" else ""
        if problem:
            bad.append((where, problem))
            continue
        kind = row[vp.answer_type_column].strip() if vp.answer_type_column else ""
        questions.append(Question(f"row {row_number}", image, text, None if answer is None else [answer], kind,
                                  where=where))
    return _source(dp, vp, name, questions, bad, images_at, base)


def _entry(i: int, entry, where: str) -> tuple[Question | None, str]:
    """One JSON entry as a Question, or None and what is wrong with it."""
    if not isinstance(entry, dict):
        return None, f"not an object but {type(entry).__name__}"
    image, text = entry.get("image"), entry.get("question")
    if not isinstance(image, str) or not image.strip():
        return None, "no image name"
    if not isinstance(text, str) or not text.strip():
        return None, "no question"
    answers = entry.get("answers")
    if answers is not None:
        if not isinstance(answers, list) or not all(isinstance(a, dict) and isinstance(a.get("answer"), str)
                                                    for a in answers):
            return None, "answers: expected a list of {answer, answer_confidence}"
        if not answers:  # not "unanswered" (that is an entry without answers): a list emptied by mistake
            return None, "answers: an empty list (leave `answers` out for a question to predict)"
        answers = [a["answer"] for a in answers]
    answerable = entry.get("answerable")
    if answerable is not None and answerable not in (0, 1):
        return None, f"answerable: expected 0 or 1, got {answerable!r}"
    kind = entry.get("answer_type") or ""
    if not isinstance(kind, str):
        return None, f"answer_type: expected a string, got {kind!r}"
    qid = str(entry.get("question_id", image.strip()))
    return Question(qid, image.strip(), text.strip(), answers, kind, answerable, where=where), ""


@VQA_SOURCES.register(help="VizWiz / VQA-v2 JSON: [{image, question, answers: [{answer, ...}], answer_type, "
                           "answerable}]")
def json(dp, vp) -> VqaSourceData:
    name, raw, images_at, base = questions_file(dp, vp, ".json")
    try:
        entries = jsonlib.loads(raw)
    except (jsonlib.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VistageError(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(entries, list):
        raise VistageError(f"{name}: expected a list of question entries, got {type(entries).__name__}")
    questions, bad, seen = [], [], set()
    for i, entry in enumerate(entries):
        where = f"{name} entry {i}"
        q, problem = _entry(i, entry, where)
        if q is not None and q.qid in seen:
            problem = f"duplicate id {q.qid!r} (question_id, or the image when there is none)"
        if problem:
            bad.append((where, problem))
            continue
        seen.add(q.qid)
        questions.append(q)
    return _source(dp, vp, name, questions, bad, images_at, base)


def load_vqa_source(dp, vp) -> VqaSourceData:
    source = VQA_SOURCES.get(vp.source, "vqa.source")(dp, vp)
    if not source.questions and not source.bad and not source.bad_questions:
        raise VistageError(f"vqa source {vp.source!r}: no questions found")
    return source
