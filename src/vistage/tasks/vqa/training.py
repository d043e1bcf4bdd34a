"""task: vqa's training hooks (base.TaskTraining): the data, the model and loss, the batches,
validation and what the checkpoint adds.

Everything else is the engine's (training.py): optimizers, schedules, precision, EMA,
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

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ...errors import VistageError
from ..base import TaskTraining
from .answers import AnswerVocab
from .data import answer_lists, load_questions


def _sparse_targets(vocab: AnswerVocab, answers: list[list[str] | None]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for a in answers:
        target = vocab.soft_target(a) if a else {}
        out.append((np.fromiter(target.keys(), np.int64, len(target)),
                    np.fromiter(target.values(), np.float32, len(target))))
    return out


class VqaTraining(TaskTraining):
    """The questions of the store and split, their encoding and targets, and the hooks. Predict
    builds one too (with the checkpoint's vocabularies) for its batches."""

    def __init__(self, params, questions: pd.DataFrame, train_idx: np.ndarray,
                 vocab: AnswerVocab | None = None, encoding=None):
        from .model import QuestionEncoding

        self.questions = questions
        self.image_of = questions["image"].to_numpy(np.int64)
        answers = answer_lists(questions)
        self.vocab = vocab or AnswerVocab.build([answers[i] for i in train_idx], params.vqa.top_answers,
                                                params.vqa.list_answers)
        texts = questions["question"].tolist()
        self.encoding = encoding or QuestionEncoding.fit(params, [texts[i] for i in train_idx])
        self.encoded = self.encoding.encode(texts)  # every question once: dim 0 is the question row
        self.targets = _sparse_targets(self.vocab, answers)
        self.features: torch.Tensor | None = None  # the image encoder's output per store image, when cached
        self.view_features: list[tuple[float, torch.Tensor]] = []  # (weight, features) of the other tta views
        self.per_sample = None  # the images through the per-sample augmentations (batches.SampleTransformed)

    @classmethod
    def load(cls, params, store_dir: Path, split_path: Path) -> "VqaTraining":
        """A training run's questions: the store's, with the split's train and val rows."""
        from ...data.split import load_split
        from ...data.store import load_store

        store, split, questions = load_store(store_dir), load_split(split_path), load_questions(store_dir)
        if len(split) != len(questions):
            raise VistageError(f"{split_path}: {len(split)} rows but the store has {len(questions)} questions; "
                               "rerun split")
        train_rows = split.loc[split["split"] == "train", "index"].to_numpy()
        if len(train_rows) == 0:
            raise VistageError(f"{split_path}: no training questions")
        if (questions["label"].to_numpy()[train_rows] < 0).any():
            raise VistageError(f"{split_path}: unanswered questions in the train split")
        run = cls(params, questions, train_rows)
        run.store, run.train_rows = store, train_rows
        run.val_rows = split.loc[split["split"] == "val", "index"].to_numpy()
        run.train_images = run.image_rows(train_rows)
        run.num_classes = len(store.classes)
        return run

    def setup(self, params, c) -> None:
        """Per-sample augmentations over the images; with a backbone frozen for the whole run and
        no augmentation (features.cacheable), its output for every stored image (and each
        test-time view), computed once: batches then carry these vectors, not pixels."""
        from ...batches import SampleTransformed
        from .features import cacheable, heap_kept_between_chunks, image_chunk_size, image_features

        if c.plan.sample:  # the labels are the questions', not the images': none here
            self.per_sample = SampleTransformed(self.store.images, np.zeros(len(self.store.images), np.int64),
                                                c.plan.sample)
        if params.feature_cache and cacheable(params):
            # in the run's precision (predict encodes new images under the same autocast), in predict's
            # chunks of bounded pixels: 64 photos of 480 px at once took 8.9 GB and 79 s in the kernel
            chunk = image_chunk_size(self.store.images.shape[1])

            def encode(normalize):
                return image_features(c.model, self.store.images, normalize, chunk, c.device, c.precision.autocast())

            with heap_kept_between_chunks():
                self.features = encode(c.normalize)
                self.view_features = [(weight, encode(_then(c.normalize, shift)))
                                      for weight, shift in tta_views(params.tta)[1:]]
            views = f" and {len(self.view_features)} test-time views" if self.view_features else ""
            c.say(f"image features computed once: {tuple(self.features.shape)}{views} (frozen {params.model})")

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
            xs = (self.features[torch.from_numpy(u)].float() for u, _ in unique)  # float16 maps: float32 to train
        else:
            xs = (torch.from_numpy(np.ascontiguousarray(images[u])) for u, _ in unique)
        for rows, (_, image_index), x in zip(batches, unique, xs):
            yield x, self.target(rows), rows, {**self.inputs(rows), "image_index": torch.from_numpy(image_index)}

    def epoch_batches(self, params, generator: torch.Generator, drop_last: bool, rank: int, world: int,
                      rows: np.ndarray | None = None) -> list[np.ndarray]:
        """One epoch's batches of question rows (batches.epoch_batches). With vqa.batch_by_image the
        images are shuffled and their questions kept together, so a batch holds a few whole images."""
        from ...batches import epoch_batches

        rows = self.train_rows if rows is None else rows
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

    def image_model(self, model: nn.Module) -> nn.Module:
        """The image encoder, which takes the images alone."""
        return model.backbone

    def loader(self, batches, params, c, worker_seed, on_features):
        from ...batches import transformed_batches

        transformed = None if self.per_sample is None else \
            (lambda image_batches: transformed_batches(self.per_sample, image_batches, params.num_workers, worker_seed))
        return self.batches(self.store.images, batches, transformed)

    @staticmethod
    def forward(model: nn.Module, x: torch.Tensor, inputs, device: torch.device) -> torch.Tensor:
        """`inputs`: the encoded questions (a dict, or the loader's 1-tuple holding it)."""
        questions = inputs[0] if isinstance(inputs, tuple) else inputs
        return model(x, **{k: v.to(device, non_blocking=True) for k, v in questions.items()})

    def hits(self, logits, y):
        return hits(logits, y)

    @torch.no_grad()
    def logits(self, model: nn.Module, rows: np.ndarray, batch_size: int, device: torch.device, normalize,
               precision=None, tta=(), channels_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor,
                                                                                np.ndarray]]:
        """(float32 logits on the CPU, soft targets, question rows) per batch of `rows`, in the
        training precision and memory format, averaged over the test-time views `tta` (translate:
        the image and its two 1-pixel shifts, as classification's; from the cached features of
        each view when the image encoder is frozen)."""
        model.eval()
        autocast = precision.autocast() if precision is not None else nullcontext()
        chunks = [rows[s:s + batch_size] for s in range(0, len(rows), batch_size)]
        views = tta_views(tta)
        for k, (x, target, part, inputs) in enumerate(self.batches(self.store.images, chunks)):
            x = x.to(device)
            with autocast:
                if x.dtype != torch.uint8:  # cached features: the other views' are cached too
                    out = views[0][0] * self.forward(model, x, inputs, device).float()
                    for weight, features in self.view_features:
                        unique = torch.from_numpy(np.unique(self.image_of[chunks[k]]))
                        out += weight * self.forward(model, features[unique].to(device).float(), inputs,
                                                     device).float()
                else:
                    x = normalize(x)
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    out = sum(weight * self.forward(model, shift(x), inputs, device).float() for weight, shift in views)
            yield out.cpu(), target, part

    def validate(self, model, params, c) -> dict[str, float]:
        """val/loss and val/acc (the VQA accuracy) over the validation questions."""
        loss_sum, score = 0.0, 0.0
        for logits, target, part in self.logits(model, self.val_rows, params.batch_size * 2, c.device, c.normalize,
                                                c.precision, params.tta, params.channels_last):
            loss_sum += c.loss_fn(logits, target).item() * len(part)
            score += float(hits(logits, target))
        return {"val/loss": loss_sum / len(self.val_rows), "val/acc": score / len(self.val_rows)}

    def checkpoint_extra(self) -> dict:
        """What a checkpoint adds for VQA: the answer vocabulary and the question encoding."""
        return {"vqa": {"answers": self.vocab.to_dict(), "questions": self.encoding.state()}}


def tta_views(tta) -> list[tuple[float, "Callable"]]:
    """(weight, view of a normalised batch) of the test-time views: the image alone, or with
    `translate` the image (half the weight) and its shifts one pixel down-right and up-left (a
    quarter each), reflect-padded as inference.tta_logits does. (flip is refused for VQA: a
    mirror swaps left and right in the questions.)"""
    if "translate" not in tta:
        return [(1.0, _identity)]
    return [(0.5, _identity), (0.25, _shift_down_right), (0.25, _shift_up_left)]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _shift_down_right(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    return torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")[..., :h, :w]


def _shift_up_left(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")[..., 2:, 2:]


def _then(normalize, view):
    return lambda x: view(normalize(x))


def hits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Summed VQA accuracy of the top answers, as a 0-d tensor on the logits' device (no host
    sync): the soft target's value at the top answer is the VQA score of that answer. Training
    logits of vqa.heads ([B, heads, A]) answer by their mean logits here (for soft_bce the
    ensemble's answer; for cross-entropy nearly always the mean probabilities' one)."""
    if logits.ndim == 3:
        logits = logits.float().mean(1)
    return target.gather(1, logits.argmax(1)[:, None]).sum().float()
