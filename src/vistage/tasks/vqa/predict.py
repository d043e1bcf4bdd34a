"""predict with task: vqa: the best checkpoint run once over the test, validation and unanswered
questions. It writes

- the predictions table (CSV, the headline split and the unanswered questions): qid, image,
  question, answer, confidence, expected (the most common human answer, when known), score (its
  VQA accuracy), answer_type, and the image's store row (for the report's gallery);
- the VizWiz submission JSON `[{"image": ..., "answer": ...}]`: the unanswered questions when
  there are any (a test file without answers), else the headline split;
- what evaluate reads (`VqaPredictions.save`, an .npz of string and number arrays, no pickles),
  so evaluate scores without torch.

The model, the answer vocabulary and the question encoding all come from the checkpoint.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...checkpoint import load_checkpoint
from ...errors import VistageError, require_task
from ...evaluation import fit_note, scored_splits
from .answers import AnswerVocab
from .metrics import VqaPredictions, score_rows


def load_vqa_model(checkpoint: Path, device: torch.device):
    """(model in eval mode, answer vocabulary, question encoding, normaliser, params) of a VQA
    checkpoint."""
    from ...batches import Normalizer
    from ...params import Params
    from .model import QuestionEncoding, create_vqa_model

    state = _vqa_checkpoint(checkpoint)
    params = Params.model_validate(state["params"]).model_copy(update={"pretrained": False})  # weights: below
    vocab = AnswerVocab.from_dict(state["vqa"]["answers"])
    encoding = QuestionEncoding.from_state(state["vqa"]["questions"])
    model = create_vqa_model(params, encoding, len(vocab))
    model.load_state_dict(state.get("ema") or state["model"])
    model.to(device).eval()
    norm = state["normalize"]
    return model, vocab, encoding, Normalizer(norm["mean"], norm["std"], device, size=params.input_size), params


def _vqa_checkpoint(path: Path) -> dict:
    """The checkpoint at `path`, which must be task: vqa's: another task's is one line naming both."""
    from ...checkpoint import checkpoint_task

    state = load_checkpoint(path)
    if not isinstance(state, dict) or "params" not in state:
        raise VistageError(f"{path}: not a vistage checkpoint; predict needs the models/best.pt that train writes")
    require_task(checkpoint_task(state), "vqa", path, "checkpoint")
    return state


class Predictor:
    """A checkpoint's model in eval mode on `device`, with what it answers through: the VqaTraining
    of a store's questions (the checkpoint's vocabularies), the normaliser, the trained params."""

    def __init__(self, checkpoint: Path, store_dir: Path, device: torch.device):
        from ...data.store import load_store
        from .data import load_questions
        from .training import VqaTraining

        self.device, self.store_dir = device, store_dir
        self.model, vocab, encoding, self.normalize, self.params = load_vqa_model(checkpoint, device)
        self.questions = load_questions(store_dir)
        self.task = VqaTraining(self.params, self.questions, np.zeros(0, np.int64), vocab, encoding)
        self.task.store = load_store(store_dir)

    def predict(self, split_path: Path, batch_size: int = 256) -> VqaPredictions:
        """The answers of the split's test, val and unanswered questions (its training questions
        in place of test and val when it holds neither: evaluation.scored_splits)."""
        from ...data.split import load_split
        from ...precision import resolve_precision
        from .stream import answer_questions

        params, questions, split = self.params, self.questions, load_split(split_path)
        if len(split) != len(questions):
            raise VistageError(f"{split_path}: {len(split)} rows but {self.store_dir} has {len(questions)} "
                               "questions; rerun split")
        wanted = split[split["split"].isin((*scored_splits(split["split"]), "unlabeled"))]
        if wanted.empty:
            raise VistageError(f"{split_path}: no test, val, train or unanswered questions to predict")
        rows = wanted["index"].to_numpy()
        # each image encoded once, in bounded chunks (stream.py); as validated in training: its
        # precision, memory format and test-time views
        top, confidence = answer_questions(self.model, self.task, rows, batch_size, self.device, self.normalize,
                                           resolve_precision(params.precision, self.device), params.tta,
                                           params.channels_last)
        part = questions.iloc[rows]
        answers = np.array(self.task.vocab.answers, dtype=object)[top]
        return VqaPredictions(wanted["split"].to_numpy(str), rows, part["qid"].to_numpy(str),
                              part["image_name"].to_numpy(str), part["image"].to_numpy(np.int64),
                              part["question"].to_numpy(str), part["answers"].to_numpy(str),
                              part["answer_type"].to_numpy(str), part["answerable"].to_numpy(str),
                              answers.astype(str), confidence)


def predict_questions(checkpoint: Path, store_dir: Path, split_path: Path, device: str = "auto",
                      batch_size: int = 256) -> VqaPredictions:
    from ...runtime import resolve_device

    return Predictor(checkpoint, store_dir, resolve_device(device)).predict(split_path, batch_size)


def write_outputs(pred: VqaPredictions, table_path: Path, submission: Path | None,
                  submission_json: Path | None, list_answers: str = "text") -> str:
    """The predictions CSV and the submission (its rows as a CSV and as VizWiz's JSON); what they
    hold, in words. Scores compare answers as the checkpoint's `list_answers` reads them."""
    from ...io import atomic_path, write_text

    unanswered = pred.of("unlabeled")
    shown = pred.rows(np.isin(pred.splits, (pred.headline, "unlabeled"))) if pred.split_names else unanswered
    with atomic_path(table_path) as tmp:
        prediction_table(shown, list_answers).to_csv(tmp, index=False)
    submitted = unanswered if len(unanswered.index) else pred.of(pred.headline)
    if submission is not None:
        with atomic_path(submission) as tmp:
            prediction_table(submitted, list_answers).to_csv(tmp, index=False)
    if submission_json is not None:
        entries = [{"image": image, "answer": answer} for image, answer in zip(submitted.image_ids, submitted.answers)]
        write_text(submission_json, json.dumps(entries, indent=1) + "\n")
    what = "unanswered" if len(unanswered.index) else pred.headline
    written = ", ".join(str(path) for path in (submission, submission_json) if path is not None) or "no submission"
    return f"{len(shown.index)} questions -> {table_path}; {len(submitted.index)} {what} -> {written}"


def predict(p, paths) -> str:
    """The predict stage with task: vqa (base.PredictPaths). The Grad-CAM folder holds the attention
    overlays of vqa.fusion: san (attention.py), an empty index with other fusions; the inference
    cost is classification's: its file (declared in dvc.yaml for both tasks) says so instead of
    holding a stale one."""
    from ...io import write_json
    from ...runtime import resolve_device

    if paths.model is not None:
        raise VistageError("predict: --model: exporting a VQA model is not supported yet; predict with --checkpoint")
    if paths.top_k is not None:
        raise VistageError("predict: --top-k is task: classify's; task: vqa gives one answer per question")
    if paths.input is not None:
        pred, list_answers = predict_new_questions(paths.checkpoint, paths.input, paths.images, p)
        return write_outputs(pred, paths.out, paths.submission, paths.submission_json, list_answers)
    missing = [f"--{name}" for name, value in (("store", paths.store), ("split", paths.split), ("logits", paths.logits))
               if value is None]
    if missing:
        raise VistageError(f"predict: {', '.join(missing)} needed (or --input PATH to predict new questions)")
    run = Predictor(paths.checkpoint, paths.store, resolve_device(p.device))
    pred = run.predict(paths.split)
    pred.save(paths.logits)
    list_answers = run.task.vocab.list_answers
    done = f"{write_outputs(pred, paths.out, paths.submission, paths.submission_json, list_answers)}, {paths.logits}"
    if paths.gradcam is not None:  # vqa.fusion: san's attention over the image; other fusions: an empty index
        from .attention import has_attention, write_attention

        written = write_attention(run.model, run.task, pred, run.normalize, run.device, paths.gradcam,
                                  p.gradcam_examples, list_answers)
        if has_attention(run.model):
            done += f"; {written} attention overlays -> {paths.gradcam}"
    if paths.cost is not None:
        from ...cost import device_name

        write_json(paths.cost, {"device": device_name(resolve_device(p.device)), "task": "vqa",
                                "note": "inference latency is measured for task: classify only"})
    return "; ".join([done, *fit_note(pred.split_names)])


def prediction_table(pred: VqaPredictions, list_answers: str = "text") -> pd.DataFrame:
    expected, score = score_rows(pred, list_answers)
    return pd.DataFrame({"qid": pred.qids, "split": pred.splits, "image": pred.image_ids, "question": pred.questions,
                         "answer": pred.answers, "confidence": pred.confidence.round(5), "expected": expected,
                         "score": np.round(score, 4), "answer_type": pred.answer_types, "image_index": pred.image_rows})


def predict_new_questions(checkpoint: Path, questions_file: Path, images: Path | None,
                          p) -> tuple[VqaPredictions, str]:
    """predict --input: questions from a JSON (VizWiz's test file: no answers needed) or CSV file,
    their images in `images` (a folder or archive; default: the file's folder), decoded as the
    checkpoint's store was (its size, data.resize) into a temporary store, then predicted. Bad
    entries and images follow data.on_bad_image. Returns the predictions and how the checkpoint
    reads list answers (its vocabulary's list_answers)."""
    import tempfile

    import pandas as pd

    from ...io import immediately
    from .data import load_questions, write_vqa_store
    from .sources import load_vqa_source

    if not questions_file.is_file() or questions_file.suffix.lower() not in (".json", ".csv"):
        raise VistageError(f"--input: {questions_file} is not a .json or .csv questions file")
    if images is not None and not images.exists():  # named as the option, not as params.yaml's data.root
        raise VistageError(f"--images: {images} does not exist")
    state = _vqa_checkpoint(checkpoint)
    trained_data = state["params"].get("data", {})
    dp = p.data.model_copy(update={"path": str(questions_file), "root": str(images or questions_file.parent),
                                   "image_size": int(state["image_size"]),
                                   "resize": trained_data.get("resize", p.data.resize)})
    vp = p.vqa.model_copy(update={"source": questions_file.suffix.lower()[1:], "questions_file": None})
    source = load_vqa_source(dp, vp)
    with tempfile.TemporaryDirectory(prefix="vistage-predict-") as tmp:
        store = Path(tmp) / "store"
        with immediately():  # scratch, read back at once: not an output the command publishes at its end
            write_vqa_store(store, source, dp, stage=f"predict --input {questions_file}")
        questions = load_questions(store)
        split = pd.DataFrame({"index": questions["index"],
                              "split": ["unlabeled" if a == "" else "test" for a in questions["answers"]]})
        split.to_csv(Path(tmp) / "split.csv", index=False)
        list_answers = AnswerVocab.from_dict(state["vqa"]["answers"]).list_answers
        return predict_questions(checkpoint, store, Path(tmp) / "split.csv", p.device), list_answers
