"""head: solve: the classifier solved on cached features (head_solve.py), its params rules, and a
run of the engine with it."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from vistage.checkpoint import load_checkpoint
from vistage.errors import VistageError
from vistage.head_solve import HeadData, fit, refit_head, solve_head
from vistage.params import load_params
from vistage.training import _kept_note, train

from .conftest import tiny_params, train_paths


def _blobs(n: int, seed: int, d: int = 32, k: int = 4, spread: float = 1.0):
    """Gaussian blobs around fixed class centres: separable up to the noise."""
    centres = np.random.default_rng(0).normal(size=(k, d)) * 0.7
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = centres[y] + spread * rng.normal(size=(n, d))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


@pytest.mark.slow  # scikit-learn's import and fits: about 8 s on a loaded 2-core machine
def test_fit_reaches_scikit_learns_optimum():
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(200, 1)
    x_test, _ = _blobs(500, 3)
    for c in (0.01, 1.0):
        head = torch.nn.Linear(x.shape[1], 4)
        objective = fit(head, x, y, c)
        clf = LogisticRegression(C=c, max_iter=5000, tol=1e-9).fit(x.numpy(), y.numpy())
        w, b = torch.tensor(clf.coef_, dtype=torch.float32), torch.tensor(clf.intercept_, dtype=torch.float32)
        theirs = F.cross_entropy(x @ w.T + b, y) + (w * w).sum() / (2 * c * len(y))
        assert objective == pytest.approx(theirs.item(), rel=1e-5)  # the same objective, at the same minimum
        # near the minimum the objective is flat along some directions (the unpenalised biases most):
        # the weights agree closely, the predictions on unseen points all but exactly
        assert torch.allclose(head.weight, w, atol=1e-2)
        with torch.no_grad():
            agree = (head(x_test).argmax(1) == (x_test @ w.T + b).argmax(1)).float().mean().item()
        assert agree >= 0.99


def test_solve_picks_c_on_val_and_is_deterministic():
    x, y = _blobs(120, 1, spread=2.0)  # noisy: weak regularisation overfits 120 images in 32 dimensions
    xv, yv = _blobs(400, 2, spread=2.0)
    data = HeadData(x, y, [xv], yv)
    heads = [torch.manual_seed(0) and torch.nn.Linear(32, 4) for _ in range(2)] + [torch.nn.Linear(32, 4)]
    a, b, other = (solve_head(head, data) for head in heads)
    assert a.c == b.c and torch.equal(heads[0].weight, heads[1].weight)  # the same run, the same head
    # the solve starts from zero weights: another random init (another seed) gives the very same head
    assert other.c == a.c and torch.equal(heads[2].weight, heads[0].weight)
    assert torch.equal(heads[2].bias, heads[0].bias)
    assert a.val_loss == min(loss for _, _, loss in a.tried)
    assert 0 < [t[0] for t in a.tried].index(a.c) < len(a.tried) - 1  # inside the grid: neither end
    assert (heads[0](xv).argmax(1) == yv).float().mean().item() == pytest.approx(a.val_acc)
    assert a.val_acc > 0.6  # chance: 0.25


def _params_file(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_unknown_head_keyword_is_a_did_you_mean_error(tmp_path):
    with pytest.raises(VistageError, match=r"head: 'solv' is not valid; did you mean 'solve'"):
        load_params(_params_file(tmp_path, "head: solv\n"))


@pytest.mark.parametrize("text, why", [
    ("head: solve\n", "set freeze: backbone"),
    ("head: solve\nfreeze: backbone\nfeature_cache: false\n", "set feature_cache: true"),
    ("head: solve\nfreeze: backbone\naugment: [crop]\n", r"augment: \['crop'\] changes every epoch"),
    ("head: solve\nfreeze: backbone\nfreeze_epochs: 3\naugment: []\n", "set freeze_epochs: 1"),
    ("head: solve\nfreeze: backbone\naugment: []\nepochs: 5\n", "freeze_epochs: 0 with epochs: 1"),
])
def test_head_solve_without_a_feature_cache_is_one_line_error(tmp_path, text, why):
    with pytest.raises(VistageError, match=why) as exc:
        load_params(_params_file(tmp_path, text))
    assert "\n" not in str(exc.value) and "head: solve" in str(exc.value)


@pytest.mark.parametrize("text, why", [
    ("head_refit: true\n", "head_refit: true refits the head that head: solve solved, and head is train"),
    ("head: solve\nhead_refit: true\nfreeze: backbone\naugment: []\nfreeze_epochs: 1\nepochs: 3\n",
     r"could not be judged on val: set head_refit: false to fine-tune"),
])
def test_head_refit_without_a_solve_to_refit_is_one_line_error(tmp_path, text, why):
    with pytest.raises(VistageError, match=why) as exc:
        load_params(_params_file(tmp_path, text))
    assert "\n" not in str(exc.value)


def test_refit_solves_the_head_again_on_train_and_val_at_the_chosen_c():
    x, y = _blobs(120, 1, spread=2.0)
    xv, yv = _blobs(60, 2, spread=2.0)
    head = torch.nn.Linear(32, 4)
    solved = solve_head(head, HeadData(x, y, [xv], yv))
    before = head.weight.detach().clone()
    both = HeadData(torch.cat([x, xv]), torch.cat([y, yv]), [xv], yv)
    refit = refit_head(head, both, solved.c)
    assert refit.c == solved.c and refit.vectors == 180
    assert not torch.allclose(head.weight, before, atol=1e-3)  # 60 more images move it
    # the minimum of the same objective on the 180 images: a solve from zeros lands where the warm start did
    cold = torch.nn.Linear(32, 4)
    with torch.no_grad():
        cold.weight.zero_(), cold.bias.zero_()
    assert fit(cold, both.train_x, both.train_y, solved.c) == pytest.approx(
        fit(head, both.train_x, both.train_y, solved.c), rel=1e-4)


def test_head_solve_with_task_vqa_is_refused(tmp_path):
    text = "task: vqa\nhead: solve\nfreeze: backbone\naugment: []\nepochs: 1\n"
    with pytest.raises(VistageError, match="head: 'solve' is not read with task: vqa"):
        load_params(_params_file(tmp_path, text))


def test_kept_note_says_which_model_won():
    solved = {"head_C": 0.1, "head_val_acc": 0.9, "best_val_acc": 0.9, "epochs_trained": 3, "best_epoch": 1}
    assert "fine-tuning did not beat the solved head's val acc 0.9000 (C=0.1)" in _kept_note(solved)
    assert "fine-tuned epoch 3, val acc 0.9500" in _kept_note({**solved, "best_epoch": 3, "best_val_acc": 0.95})
    assert _kept_note({"best_val_acc": 0.9}) == ""


@pytest.mark.slow
def test_train_with_head_solve_learns_digits_and_keeps_the_head(digits_store, tmp_path):
    # the small CNN's random, frozen features: the solved head alone must learn, then one fine-tuning
    # epoch at a tiny lr cannot beat it, so best.pt must be the solved head's epoch
    # val_every: 2 validates after the last epoch only, but the solve epoch is validated all the same
    params = tiny_params(freeze="backbone", head="solve", augment=[], freeze_epochs=1, epochs=2, lr=1e-6,
                         val_every=2)
    result = train(params, train_paths(digits_store, tmp_path))
    assert result["head_val_acc"] > 0.8 and result["best_val_acc"] == pytest.approx(result["head_val_acc"])
    assert result["best_epoch"] == 1 and load_checkpoint(tmp_path / "models" / "best.pt")["epoch"] == 1
    assert result["head_C"] > 0 and result["features_s"] > 0


def test_a_per_batch_schedule_spans_the_epochs_that_train(digits_store, tmp_path):
    # the solved epoch takes no step: the triangular schedule sized over all 3 epochs would end two
    # thirds of the way down (0.535 x lr); sized over the 2 fine-tuning epochs it ends at its floor
    params = tiny_params(freeze="backbone", head="solve", augment=[], freeze_epochs=1, epochs=3, lr=1e-3,
                         scheduler="triangular", warmup_epochs=1, max_steps_per_epoch=4)
    result = train(params, train_paths(digits_store, tmp_path))
    assert result["lr"] == pytest.approx(0.07 * params.lr)


def test_a_resumed_run_keeps_the_solved_heads_record(digits_store, tmp_path, monkeypatch):
    import vistage.training as training

    params = tiny_params(freeze="backbone", head="solve", augment=[], freeze_epochs=1, epochs=2, lr=1e-6,
                         max_steps_per_epoch=2)
    paths = train_paths(digits_store, tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill after the solved epoch's checkpoint

    with monkeypatch.context() as patch:
        patch.setattr(training, "_train_epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train(params, paths)
    resumed = train(params, paths)
    assert resumed["epochs_trained"] == 2 and resumed["head_C"] > 0 and resumed["best_epoch"] == 1
    assert "best.pt: the solved head" in _kept_note(resumed)


def test_a_refit_head_keeps_its_held_out_val_scores_and_predict_scores_test_only(digits_store, tmp_path):
    from vistage.data.store import load_store
    from vistage.evaluation import predict_splits
    from vistage.inference import TrainedModel

    runs = {}
    for refit in (False, True):
        params = tiny_params(freeze="backbone", head="solve", head_refit=refit, augment=[], epochs=1)
        runs[refit] = (train(params, train_paths(digits_store, tmp_path / str(refit))), tmp_path / str(refit))
    (plain, _), (refit, out) = runs[False], runs[True]
    # val chose C and scored the head before the refit: the same C and val figures as without it
    assert refit["head_C"] == plain["head_C"] and refit["best_val_acc"] == pytest.approx(plain["best_val_acc"])
    split = pd.read_csv(digits_store / "split.csv")
    assert refit["head_refit_vectors"] == (split["split"].isin(["train", "val"])).sum()
    assert "refit on train + val (head_refit)" in _kept_note(refit)
    weights = [load_checkpoint(o / "models" / "best.pt")["model"] for _, o in runs.values()]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # the refit head
    # best.pt has seen val: predict scores the test split alone
    checkpoint = out / "models" / "best.pt"
    pred = predict_splits(TrainedModel(checkpoint, torch.device("cpu")), load_store(digits_store / "prepared"),
                          digits_store / "split.csv", checkpoint, digits_store / "prepared")
    assert list(pred.split_names) == ["test"]
    # and without a test split, what it scores is a fit (the training images, val among them), named so
    no_test = split.assign(split=split["split"].replace("test", "train"))
    no_test.to_csv(tmp_path / "no-test.csv", index=False)
    pred = predict_splits(TrainedModel(checkpoint, torch.device("cpu")), load_store(digits_store / "prepared"),
                          tmp_path / "no-test.csv", checkpoint, digits_store / "prepared")
    assert list(pred.split_names) == ["train"] and len(pred.index) == len(split)
