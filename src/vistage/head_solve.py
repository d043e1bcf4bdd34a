"""`head`: how the classifier on a frozen backbone is fitted.

`head: train` (the default) trains it by epochs with `optimizer`, as every other layer trains.
`head: solve` fits it to its optimum on the frozen backbone's cached features (feature_cache.py) in
one pass: full-batch L-BFGS on

    mean cross-entropy over the training images + ||W||^2 / (2 C n)

(W: the classifier's weight matrices, biases unpenalised; n: training feature vectors, two an
image with augment: [flip]), which is
scikit-learn's LogisticRegression objective divided by C n, so C means what it means there. Each C
of a small log grid is solved in turn, from the strongest regularisation to the weakest, each
starting from the previous optimum (a warm start: the path is cheap), and the C whose head has
the lowest cross-entropy on the validation split is kept (LogisticRegressionCV with
scoring="neg_log_loss"). Not the highest accuracy: on a small validation split accuracy moves in
steps of one image and ties across half the grid, and the tie then falls to the strongest L2, whose
head is far too unsure of itself. Measured on the pets sample's 5 folds (recipes/README.md), the
cross-entropy's choice scored the same test accuracy as the accuracy's (88.1%) with an expected
calibration error of 0.08, against 0.58 with accuracy ties going to the stronger L2 (the probe's
rule) and 0.31 with them going to the lower loss. For a linear classifier the objective is convex,
so in exact arithmetic the result would be its optimum whatever the start; in float32, at weak L2
(C of 10 and more, the nearly separable features of a few images a class) L-BFGS stops short of it
by enough that two random starts moved one pets test image of 74 (even float64 with a 1e-9
gradient tolerance, 5-25x slower, had not converged). So the solve starts from zero weights, as
scikit-learn does: the solved head is a function of the features alone, the same for every seed.

`head_refit: true` then solves the head once more at the chosen C on the training and validation
images together (from the solved head: a warm start), as LogisticRegressionCV refits on all its
folds: the validation images chose C, and then train the head too. On 50 Tiny ImageNet classes
(40 images a class instead of 30) that scored 76.1% against 75.5% over 5 folds' 2,500 test images,
up on 4 folds of 5; on the pets sample (8 photos a breed instead of 6) 91.1% against 90.8%, one
photo of 370 (recipes/README.md). The val scores of the run are the head's before the refit, when
val was held out.
"""

import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .registry import Registry

HEADS = Registry("head")

# 1e-3 .. 1e2 in half decades. On lite0's features the val cross-entropy chose 3-100 on the pets
# folds (100, the top, on 2 of 5) and 0.3-1 on 50 Tiny ImageNet classes; the val accuracy chose
# 0.001-10 (recipes/README.md)
C_GRID = tuple(10.0 ** (e / 2) for e in range(-6, 5))
MAX_ITER = 500  # L-BFGS iterations per C; warm-started solves converge in far fewer


@HEADS.register(help="the classifier trains by epochs with `optimizer`, as the rest of the model (default)")
def train(params):
    return None  # no solver: the engine's epochs train it


@HEADS.register(help="frozen backbone on cached features: the classifier solved by full-batch L-BFGS, "
                     "its L2 strength chosen on val (then fine-tuning, with freeze_epochs: 1)")
def solve(params):
    return solve_head


@dataclass
class HeadData:
    """What the solve reads: the cached features of the training images (every cached view:
    with augment: [flip] the mirrored ones too) and of the validation images (the views that
    validation averages, as tta says)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_views: list[torch.Tensor]
    val_y: torch.Tensor
    features_s: float = 0.0  # how long computing the cached features took


@dataclass
class Solved:
    c: float  # the L2 strength kept (scikit-learn's C)
    val_acc: float
    val_loss: float
    train_loss: float  # mean cross-entropy, without the penalty
    train_acc: float
    seconds: float
    tried: list[tuple[float, float, float]] = field(default_factory=list)  # (C, val acc, val loss) per C

    def line(self) -> str:
        return (f"head solved on cached features (L-BFGS, {len(self.tried)} L2 strengths in {self.seconds:.1f}s): "
                f"C={self.c:.3g} chosen on val (lowest val loss), val acc {self.val_acc:.4f}, "
                f"val loss {self.val_loss:.4f}, train acc {self.train_acc:.4f}")


def fit(head: nn.Module, x: torch.Tensor, y: torch.Tensor, c: float, max_iter: int = MAX_ITER) -> float:
    """Minimise the module docstring's objective over `head`'s parameters, from where they are;
    returns its value at the end."""
    params = [p for p in head.parameters() if p.requires_grad]
    weights = [p for p in params if p.ndim > 1]  # biases unpenalised, as weight_decay and scikit-learn do
    penalty = 1.0 / (2.0 * c * len(y))
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-6,
                            tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y) + penalty * sum((w * w).sum() for w in weights)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
        return closure().detach().item()


@dataclass
class Refit:
    c: float
    vectors: int  # the feature vectors it was solved on (every cached view of the train and val images)
    train_acc: float  # on those
    seconds: float

    def line(self) -> str:
        return (f"head refit on the train and val images (head_refit): C={self.c:.3g}, {self.vectors} feature "
                f"vectors, {self.seconds:.1f}s, their acc {self.train_acc:.4f}; best.pt has seen val")


def refit_head(head: nn.Module, data: HeadData, c: float) -> Refit:
    """Solve `head` (solved at C on the training images) once more at the same C on `data`'s
    training vectors, which hold the validation images' too (module docstring)."""
    started = time.perf_counter()
    was_training = head.training
    head.eval()
    fit(head, data.train_x, data.train_y, c)
    train_acc, _ = scores(head, [data.train_x], data.train_y)
    head.train(was_training)
    return Refit(c, len(data.train_y), train_acc, time.perf_counter() - started)


@torch.no_grad()
def scores(head: nn.Module, views: list[torch.Tensor], y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the logits averaged over `views`, as validation computes them."""
    logits = sum(head(v).float() for v in views) / len(views)
    return (logits.argmax(1) == y).float().mean().item(), F.cross_entropy(logits, y).item()


def solve_head(head: nn.Module, data: HeadData, grid: tuple[float, ...] = C_GRID) -> Solved:
    """Solve `head` for each C of `grid` (ascending), keep the best on val (module docstring) and
    leave its weights in `head`."""
    started = time.perf_counter()
    was_training = head.training
    head.eval()  # no dropout: the objective is the deterministic one
    with torch.no_grad():  # from zero weights, as scikit-learn starts: the random init never shows (below)
        for p in head.parameters():
            if p.requires_grad:
                p.zero_()
    best, best_state, tried = None, None, []
    for c in sorted(grid):
        fit(head, data.train_x, data.train_y, c)
        acc, loss = scores(head, data.val_views, data.val_y)
        tried.append((c, acc, loss))
        if best is None or loss < best[2]:
            best, best_state = (c, acc, loss), {k: v.clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    train_acc, train_loss = scores(head, [data.train_x], data.train_y)
    head.train(was_training)
    return Solved(best[0], best[1], best[2], train_loss, train_acc, time.perf_counter() - started, tried)
