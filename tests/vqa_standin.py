"""A stand-in for vqa-model's `vistage.vqa.model` and `vistage.vqa.losses` (the interface of
notes/vqa-contract.md), used only while those modules are absent, so the pipeline wiring is
tested on its own. `install()` does nothing when the real modules import."""

import importlib
import sys
import types

import torch
from torch import nn

from vistage.vqa.questions import QuestionVocab

MAX_LEN = 12


class QuestionEncoding:
    def __init__(self, vocab: QuestionVocab):
        self.vocab = vocab

    @classmethod
    def fit(cls, params, train_questions):
        return cls(QuestionVocab.build(train_questions, params.vqa.min_word_count))

    def state(self) -> dict:
        return self.vocab.to_dict()

    @classmethod
    def from_state(cls, state):
        return cls(QuestionVocab.from_dict(state))

    def encode(self, questions):
        ids, lengths = self.vocab.encode_batch(list(questions), MAX_LEN)
        return {"tokens": torch.from_numpy(ids), "lengths": torch.from_numpy(lengths)}


class StandIn(nn.Module):
    def __init__(self, n_words: int, n_answers: int, width: int = 16):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten())
        self.words = nn.EmbeddingBag(n_words, width, mode="mean", padding_idx=0)
        self.classifier = nn.Linear(width, n_answers)

    def forward(self, images, tokens, lengths):
        return self.classifier(self.backbone(images) * self.words(tokens))


def create_vqa_model(params, encoding, n_answers):
    return StandIn(len(encoding.vocab), n_answers)


def vqa_loss(params):
    def loss(logits, target):
        return nn.functional.binary_cross_entropy_with_logits(logits, target) * target.shape[1]

    return loss


def install() -> None:
    try:
        importlib.import_module("vistage.vqa.model")
        importlib.import_module("vistage.vqa.losses")
        return
    except ImportError:
        pass
    model = types.ModuleType("vistage.vqa.model")
    model.QuestionEncoding, model.create_vqa_model = QuestionEncoding, create_vqa_model
    losses = types.ModuleType("vistage.vqa.losses")
    losses.vqa_loss = vqa_loss
    sys.modules["vistage.vqa.model"], sys.modules["vistage.vqa.losses"] = model, losses
