"""Temperature scaling (calibrate: true): fitted on the validation logits, kept in the checkpoint,
applied wherever probabilities are served, and measured against the raw softmax in eval.json."""

import numpy as np
import pytest
import torch

from vistage.calibration import BOUNDS, fit_temperature, nll
from vistage.evaluation import Predictions, classification_metrics, expected_calibration_error


def _sampled(temperature: float, n: int = 4000, classes: int = 10, seed: int = 0):
    """Logits, and labels drawn from softmax(logits / temperature): the true temperature is known."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, classes))
    scaled = logits / temperature
    probs = np.exp(scaled - scaled.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = np.array([rng.choice(classes, p=p) for p in probs])
    return logits.astype(np.float32), labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with(true_temperature):
    logits, labels = _sampled(true_temperature)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.08)
    # and it is the minimum of the NLL, not just near the truth
    for other in (fitted * 0.9, fitted * 1.1):
        assert nll(logits, labels, fitted) < nll(logits, labels, other)


def test_no_rows_leave_the_softmax_as_it_is_and_certainty_stops_at_the_bound():
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0)) == 1.0
    separable = np.eye(3)[np.arange(30) % 3] * 5.0  # every validation image right by a wide margin
    # the NLL is flat to float64 near certainty: the search stops close to the bound, never below it
    assert BOUNDS[0] <= fit_temperature(separable, np.arange(30) % 3) < 1.5 * BOUNDS[0]


def _predictions(logits, labels, temperature=1.0) -> Predictions:
    n = len(labels)
    return Predictions(np.array([f"c{k}" for k in range(logits.shape[1])]), np.array(["test"] * n), np.arange(n),
                       np.array([f"{k}.png" for k in range(n)]), labels, logits, temperature)


def test_an_over_confident_model_scaled_by_its_fitted_temperature_is_better_calibrated():
    logits, labels = _sampled(1.0)
    over_confident = logits * 3  # what a model trained to zero loss says
    t = fit_temperature(over_confident[:2000], labels[:2000])  # "val"
    assert t == pytest.approx(3.0, rel=0.1)
    test = _predictions(over_confident[2000:], labels[2000:], t)
    scores = classification_metrics(test)
    assert scores["temperature"] == t
    assert scores["ece"] < 0.05 < 0.15 < scores["ece_uncalibrated"]
    assert scores["ece_uncalibrated"] == pytest.approx(expected_calibration_error(test.uncalibrated()), abs=1e-6)
    # the top-1 class does not move
    assert scores["accuracy"] == classification_metrics(test.uncalibrated())["accuracy"]


def test_the_predictions_file_keeps_the_temperature_and_older_files_read_as_raw(tmp_path):
    logits, labels = _sampled(1.0, n=50)
    _predictions(logits, labels, 1.7).save(tmp_path / "logits.npz")
    loaded = Predictions.load(tmp_path / "logits.npz")
    assert loaded.temperature == 1.7 and loaded.of("test").temperature == 1.7
    with np.load(tmp_path / "logits.npz") as data:
        older = {k: data[k] for k in data.files if k != "temperature"}
    np.savez(tmp_path / "older.npz", **older)
    assert Predictions.load(tmp_path / "older.npz").temperature == 1.0


def test_a_checkpoint_holds_the_temperature_of_its_weights_and_predict_serves_it(digits_model, tmp_path):
    from vistage.checkpoint import load_checkpoint
    from vistage.inference import TrainedModel
    from vistage.new_images import top_k_table

    _, out = digits_model
    state = load_checkpoint(out / "models" / "best.pt")
    assert BOUNDS[0] <= state["temperature"] <= BOUNDS[1] and state["temperature"] != 1.0
    trained = TrainedModel(out / "models" / "best.pt", torch.device("cpu"))
    assert trained.temperature == state["temperature"]
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    served = top_k_table(["a.png"], logits, ["x", "y", "z"], 3, trained.temperature)
    expected = (logits.double() / trained.temperature).softmax(1)[0, 0].item()
    assert served.loc[0, "confidence"] == pytest.approx(expected, abs=1e-5)


def test_calibrate_false_keeps_the_raw_softmax(digits_store, tmp_path):
    from .conftest import tiny_params, train_paths
    from vistage.checkpoint import load_checkpoint, load_trained
    from vistage.training import train

    train(tiny_params(epochs=1, max_steps_per_epoch=3, calibrate=False), train_paths(digits_store, tmp_path))
    assert "temperature" not in load_checkpoint(tmp_path / "models" / "best.pt")
    assert load_trained(tmp_path / "models" / "best.pt").temperature == 1.0
