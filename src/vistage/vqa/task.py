"""task: vqa in the training engine: the hooks training.py calls where classification and VQA
differ (the data, the model and loss, the batches, validation, what the checkpoint adds).

Everything else is the classification engine unchanged: optimizers, schedules, precision, EMA,
checkpoints and resume, DDP. Rows are questions: the split's train and val rows index
`questions.csv`; a batch is the images of its questions (one read of the store), the encoded
question rows, and soft targets over the answer vocabulary.

The answer vocabulary (`vqa.top_answers` most common train answers) and the question encoding
(its vocabulary from the train questions only) are built here from the train split and saved in
every checkpoint (`checkpoint_state`), so predict encodes and decodes exactly as training did.
A soft target is the VQA score each vocabulary answer would get (answers.AnswerVocab.soft_target:
the official leave-one-out score; one-hot for single-answer sets), so the accuracy of a
prediction is its target's value: training and validation accuracy are the VQA accuracy.
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import VistageError
from .answers import AnswerVocab
from .data import answer_lists, load_questions

MIXES = ("mixup", "cutmix", "mixup_cutmix")


def _sparse_targets(vocab: AnswerVocab, answers: list[list[str] | None]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for a in answers:
        target = vocab.soft_target(a) if a else {}
        out.append((np.fromiter(target.keys(), np.int64, len(target)),
                    np.fromiter(target.values(), np.float32, len(target))))
    return out


class VqaTask:
    """The questions of the store and split, their encoding and targets, and the hooks."""

    def __init__(self, params, questions: pd.DataFrame, train_idx: np.ndarray,
                 vocab: AnswerVocab | None = None, encoding=None):
        from .model import QuestionEncoding

        self.questions = questions
        self.image_of = questions["image"].to_numpy(np.int64)
        answers = answer_lists(questions)
        self.vocab = vocab or AnswerVocab.build([answers[i] for i in train_idx], params.vqa.top_answers)
        texts = questions["question"].tolist()
        self.encoding = encoding or QuestionEncoding.fit(params, [texts[i] for i in train_idx])
        self.encoded = self.encoding.encode(texts)  # every question once: dim 0 is the question row
        self.targets = _sparse_targets(self.vocab, answers)
        self.features: torch.Tensor | None = None  # the image encoder's output per store image, when cached

    def cache_features(self, model: nn.Module, images: np.ndarray, normalize, params, device: torch.device,
                       say) -> None:
        """With a backbone frozen for the whole run and no augmentation (features.cacheable), its
        output for every stored image, computed once: batches then carry these vectors, not pixels."""
        from .features import cacheable, image_features

        if cacheable(params):
            self.features = image_features(model, images, normalize, params.batch_size, device)
            say(f"image features computed once: {tuple(self.features.shape)} (frozen {params.model})")

    # -- data --------------------------------------------------------------------------------
    def image_rows(self, rows: np.ndarray) -> np.ndarray:
        """The store rows (images) of question rows, each once."""
        return np.unique(self.image_of[rows])

    def target(self, rows: np.ndarray) -> torch.Tensor:
        dense = torch.zeros(len(rows), len(self.vocab))
        for k, r in enumerate(rows):
            ids, scores = self.targets[r]
            dense[k, ids] = torch.from_numpy(scores)
        return dense

    def inputs(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        index = torch.from_numpy(np.array(rows, dtype=np.int64))
        return {name: t[index] for name, t in self.encoded.items()}

    def batches(self, images: np.ndarray, batches: list[np.ndarray], transformed=None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray, dict]]:
        """(uint8 NHWC images, soft targets [B, answers], question rows, encoded questions). Each
        image of a batch comes once; `image_index` in the encoded questions says which is whose,
        so an image asked several questions is encoded once. `transformed(image_batches)`: the
        per-sample augmentations' loader (batches.transformed_batches) over those images."""
        unique = [np.unique(self.image_of[rows], return_inverse=True) for rows in batches]
        if transformed is not None:
            xs = (x for x, _, _ in transformed([u for u, _ in unique]))
        elif self.features is not None:
            xs = (self.features[torch.from_numpy(u)] for u, _ in unique)
        else:
            xs = (torch.from_numpy(np.ascontiguousarray(images[u])) for u, _ in unique)
        for rows, (_, image_index), x in zip(batches, unique, xs):
            yield x, self.target(rows), rows, {**self.inputs(rows), "image_index": torch.from_numpy(image_index)}

    def epoch_batches(self, rows: np.ndarray, params, generator: torch.Generator, drop_last: bool, rank: int,
                      world: int) -> list[np.ndarray]:
        """One epoch's batches of question rows (batches.epoch_batches). With vqa.batch_by_image the
        images are shuffled and their questions kept together, so a batch holds a few whole images."""
        from ..batches import epoch_batches

        if not params.vqa.batch_by_image:
            return epoch_batches(rows, params.batch_size, generator, drop_last, rank, world,
                                 params.max_steps_per_epoch)
        images = np.unique(self.image_of[rows])
        place = np.zeros(self.image_of.max() + 1, dtype=np.int64)
        place[images[torch.randperm(len(images), generator=generator).numpy()]] = np.arange(len(images))
        grouped = rows[np.argsort(place[self.image_of[rows]], kind="stable")]
        return epoch_batches(grouped, params.batch_size, generator, drop_last, rank, world,
                             params.max_steps_per_epoch, shuffle=False)

    # -- model -------------------------------------------------------------------------------
    def build(self, params) -> tuple[nn.Module, nn.Module]:
        from .losses import vqa_loss
        from .model import create_vqa_model

        return create_vqa_model(params, self.encoding, len(self.vocab)), vqa_loss(params)

    @staticmethod
    def check_augment(params) -> None:
        """Mixing blends two images (and their answers) under one question: no VQA answer fits."""
        refused = [name for name in params.augment if name in MIXES]
        if refused:
            raise VistageError(f"params.yaml: augment: {refused[0]!r} does not work with task: vqa (mixing two "
                               "images leaves no answer to the question); the others do")

    @torch.no_grad()
    def validate(self, model: nn.Module, loss_fn, images: np.ndarray, rows: np.ndarray, normalize,
                 batch_size: int, device: torch.device) -> dict[str, float]:
        """val/loss and val/acc (the VQA accuracy) over the question rows `rows`."""
        model.eval()
        loss_sum, score = 0.0, 0.0
        chunks = [rows[s:s + batch_size] for s in range(0, len(rows), batch_size)]
        for x, target, part, inputs in self.batches(images, chunks):
            x = x.to(device)
            logits = self.forward(model, normalize(x) if x.dtype == torch.uint8 else x, inputs, device).float().cpu()
            loss_sum += loss_fn(logits, target).item() * len(part)
            score += float(hits(logits, target))
        return {"val/loss": loss_sum / len(rows), "val/acc": score / len(rows)}

    @staticmethod
    def forward(model: nn.Module, x: torch.Tensor, inputs: dict, device: torch.device) -> torch.Tensor:
        return model(x, **{k: v.to(device, non_blocking=True) for k, v in inputs.items()})

    def checkpoint_state(self) -> dict:
        """What a checkpoint adds for VQA: the answer vocabulary and the question encoding."""
        return {"answers": self.vocab.to_dict(), "questions": self.encoding.state()}


def hits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Summed accuracy of the top answers, as a 0-d tensor on the logits' device (no host sync): a
    class index per row (classification), or the soft target's value at the top answer (VQA: the
    VQA score of that answer)."""
    top = logits.argmax(1)
    if target.ndim == 1:
        return (top == target).sum().float()
    return target.gather(1, top[:, None]).sum().float()


def load_task(params, store_dir: Path, split: pd.DataFrame, split_path: Path) -> tuple["VqaTask", np.ndarray,
                                                                                        np.ndarray]:
    """The task and its train and val question rows."""
    questions = load_questions(store_dir)
    if len(split) != len(questions):
        raise VistageError(f"{split_path}: {len(split)} rows but the store has {len(questions)} questions; "
                           "rerun split")
    train_idx = split.loc[split["split"] == "train", "index"].to_numpy()
    val_idx = split.loc[split["split"] == "val", "index"].to_numpy()
    if len(train_idx) == 0:
        raise VistageError(f"{split_path}: no training questions")
    if (questions["label"].to_numpy()[train_idx] < 0).any():
        raise VistageError(f"{split_path}: unanswered questions in the train split")
    return VqaTask(params, questions, train_idx), train_idx, val_idx
