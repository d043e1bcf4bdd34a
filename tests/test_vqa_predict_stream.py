"""VQA predict streams: each image through the encoder once, in chunks of bounded size, the
questions answered in bounded batches, whatever the number of questions; and it answers as the
training's validation loop (what predict ran before) does."""

import numpy as np
import pytest
import torch

from .test_vqa_pipeline import trained, vqa_params, vqa_store  # noqa: F401  (module fixtures)


def _predictor(vqa_store, trained):  # noqa: F811
    from vistage.precision import resolve_precision
    from vistage.tasks.vqa.predict import Predictor

    device = torch.device("cpu")
    run = Predictor(trained / "models" / "best.pt", vqa_store / "prepared", device)
    return run.model, run.task, run.normalize, resolve_precision(run.params.precision, device), run.params


class Sizes:
    """The batch sizes a module was called with (dim 0 of its first input)."""

    def __init__(self, module: torch.nn.Module):
        self.calls: list[int] = []
        module.register_forward_hook(lambda _, args, __: self.calls.append(len(args[0])))


@pytest.mark.parametrize("repeat", [1, 8])
def test_predict_encodes_each_image_once_and_holds_one_chunk_and_one_batch(vqa_store, trained, repeat):  # noqa: F811
    """60 images, 120 questions, asked `repeat` times over in shuffled order: the encoder sees each
    image exactly once, never more than a chunk at a time, and the head never more than a batch:
    what is held does not grow with the number of questions."""
    from vistage.tasks.vqa.stream import answer_questions

    model, task, normalize, precision, params = _predictor(vqa_store, trained)
    encoder, head = Sizes(model.backbone), Sizes(model.head)
    rows = np.random.default_rng(0).permutation(np.tile(np.arange(len(task.questions)), repeat))
    top, confidence = answer_questions(model, task, rows, batch_size=16, device=torch.device("cpu"),
                                       normalize=normalize, precision=precision, image_chunk=7)
    images = len(np.unique(task.image_of))
    assert sum(encoder.calls) == images == 60 and max(encoder.calls) == 7 and len(encoder.calls) == 9
    assert len(head.calls) >= len(rows) / 16 and max(head.calls) <= 16 and sum(head.calls) == len(rows)
    assert len(top) == len(confidence) == len(rows) and ((0 < confidence) & (confidence <= 1)).all()
    # the same question asked twice gets the same answer, wherever it fell
    first = {}
    for r, answer in zip(rows, top):
        assert first.setdefault(r, answer) == answer


def test_streamed_answers_are_the_validation_loops(vqa_store, trained):  # noqa: F811
    """The answers and confidences predict gives are those of VqaTraining.logits (the loop the
    training validates with, which predict ran before it streamed), in the order asked."""
    from vistage.tasks.vqa.stream import answer_questions

    model, task, normalize, precision, params = _predictor(vqa_store, trained)
    rows = np.random.default_rng(1).permutation(len(task.questions))
    top, confidence = answer_questions(model, task, rows, 32, torch.device("cpu"), normalize, precision,
                                       params.tta, params.channels_last, image_chunk=5)
    logits = torch.cat([out for out, _, _ in task.logits(model, rows, 32, torch.device("cpu"), normalize, precision,
                                                          params.tta, params.channels_last)])
    expected_conf, expected_top = logits.softmax(1).max(1)
    assert (top == expected_top.numpy()).all()
    np.testing.assert_allclose(confidence, expected_conf.numpy(), rtol=1e-5, atol=1e-6)


def test_a_memory_mapped_store_is_read_through_a_mapping_of_its_own(tmp_path):
    """read_images copies the rows out and leaves the store's own mapping untouched."""
    from vistage.tasks.vqa.stream import read_images

    store = np.lib.format.open_memmap(tmp_path / "images.npy", mode="w+", dtype=np.uint8, shape=(5, 4, 4, 3))
    store[:] = np.arange(5, dtype=np.uint8)[:, None, None, None]
    store.flush()
    images = np.load(tmp_path / "images.npy", mmap_mode="r")
    got = read_images(images, np.array([3, 1]))
    assert not isinstance(got, np.memmap) and got.flags["C_CONTIGUOUS"]
    assert (got[:, 0, 0, 0] == [3, 1]).all() and (read_images(np.asarray(images), np.array([4]))[0] == 4).all()


def test_the_predict_command_with_input_predicts_new_questions(vqa_store, trained, tmp_path):  # noqa: F811
    """`python stages/predict.py --input`: the command publishes its outputs at its end, and the
    scratch store of the new questions must not wait for that (it did: questions.csv missing)."""
    import sys

    import pandas as pd

    from .conftest import ROOT, run

    raw = vqa_store / "raw"
    run([sys.executable, "stages/predict.py", "--params", str(trained / "params.yaml"), "--checkpoint",
         str(trained / "models" / "best.pt"), "--input", str(raw / "qa.json"), "--images", str(raw / "images"),
         "--out", str(tmp_path / "predictions.csv")], ROOT)
    table = pd.read_csv(tmp_path / "predictions.csv", keep_default_na=False)
    # every question of the file answered, scored against its human answers (given: split test)
    assert len(table) == 120 and table["answer"].ne("").all() and set(table["split"]) == {"test"}
    assert table["expected"].isin(["red", "green", "blue", "yes", "no"]).all()
