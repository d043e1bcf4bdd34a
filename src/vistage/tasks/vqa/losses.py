"""VQA losses, by keyword (`vqa.loss`): each takes (logits [B, A], soft targets [B, A]) to a scalar.

Soft targets are the VQA score of each answer for the question (min(1, humans who gave it / 3);
one-hot for single-answer data sets), built by the data side.
"""

from collections.abc import Callable

import torch
from torch import nn

from ...registry import Registry

VQA_LOSSES = Registry("vqa.loss")


class SoftBCE(nn.Module):
    """Binary cross-entropy with logits on every answer against its soft score, summed over the
    answers and averaged over the batch: the mean over B x A times A, as the VQA papers scale it
    (Teney et al. 2018, "Tips and tricks for VQA"; R1's criterion). Each answer is an independent
    yes/no, so two answers that both score 1 are both rewarded."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        bce = nn.functional.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
        return bce * logits.shape[1]


class MostCommonCE(nn.Module):
    """Cross-entropy on the best-scoring answer of each question (the most common human answer;
    ties: the lower id, the more common in training), with label_smoothing. A question none of whose
    answers is in the vocabulary (an all-zero target row) teaches nothing and is left out."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        best, labels = targets.max(dim=1)
        labels = labels.masked_fill(best <= 0, -100)  # cross_entropy's ignore_index
        if (labels < 0).all():
            return logits.sum() * 0.0  # nothing to learn from in this batch; keeps the graph
        return nn.functional.cross_entropy(logits, labels, label_smoothing=self.label_smoothing, ignore_index=-100)


@VQA_LOSSES.register(help="BCE with logits against the soft VQA scores, times the number of answers (R1)")
def soft_bce(params) -> nn.Module:
    return SoftBCE()


@VQA_LOSSES.register(help="cross-entropy on the most common answer (with label_smoothing)")
def cross_entropy(params) -> nn.Module:
    return MostCommonCE(params.label_smoothing)


class EachHead(nn.Module):
    """vqa.heads > 1 (model.VqaHeads): training logits [B, heads, A] get the sum of each head's
    loss, so each head's gradient is the one it would get alone, whatever the optimizer; the
    ensemble's eval logits [B, A] get the loss itself (val/loss is the ensemble's)."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.ndim == 2:
            return self.loss(logits, targets)
        return sum(self.loss(logits[:, k], targets) for k in range(logits.shape[1]))


def vqa_loss(params) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss `vqa.loss` names, as a module: loss(logits [B, A], soft targets [B, A]) -> scalar
    (with vqa.heads, each head's summed: EachHead)."""
    loss = VQA_LOSSES.get(params.vqa.loss, "vqa.loss")(params)
    return loss if params.vqa.heads == 1 else EachHead(loss)
