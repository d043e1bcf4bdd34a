"""task: vqa data: the sources (easy-VQA, CSV in an archive, VizWiz-style JSON with bad entries),
the store (one image, many questions) and the split grouped by image."""

import io
import json
import tarfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vistage.data.store import load_store
from vistage.errors import VistageError
from vistage.params import DataParams, VqaParams
from vistage.tasks.vqa.data import answer_lists, load_questions, vqa_split_counts, vqa_split_table, write_vqa_store
from vistage.tasks.vqa.sources import load_vqa_source


def png(value: int, size=(12, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (value, 255 - value, 7)).save(buf, format="PNG")
    return buf.getvalue()


def prepare(tmp_path, dp: DataParams, vp: VqaParams):
    stats = write_vqa_store(tmp_path / "store", load_vqa_source(dp, vp), dp)
    return stats, load_store(tmp_path / "store"), load_questions(tmp_path / "store")


def vizwiz(folder, entries: list, n_images: int = 4):
    images = folder / "images"
    images.mkdir(parents=True)
    for i in range(n_images):
        (images / f"VizWiz_{i}.png").write_bytes(png(40 * i))
    (folder / "train.json").write_text(json.dumps(entries))
    return folder


def entry(i: int, answers=("red",) * 10, **extra) -> dict:
    e = {"image": f"VizWiz_{i}.png", "question": f"what colour is thing {i}?",
         "answers": [{"answer": a, "answer_confidence": "yes"} for a in answers], "answer_type": "other",
         "answerable": 1}
    return {**e, **extra}


GOOD = [entry(0), entry(1, ["two"] * 6 + ["2"] * 4, answer_type="number"), entry(2, answerable=0,
                                                                                   answers=["unanswerable"] * 10)]
MALFORMED = [
    ("not an object", "not an object but str"),
    ({"question": "where?"}, "no image name"),
    ({"image": "VizWiz_3.png"}, "no question"),
    ({"image": "VizWiz_3.png", "question": "q", "answers": "red"}, "answers: expected a list"),
    ({"image": "VizWiz_3.png", "question": "q", "answerable": 2}, "answerable: expected 0 or 1"),
    (entry(0), "duplicate id 'VizWiz_0.png'"),
    (entry(9), "image 'VizWiz_9.png' not found"),
]


def json_params(folder, **data) -> tuple[DataParams, VqaParams]:
    return (DataParams(path=str(folder / "train.json"), root=str(folder / "images"), workers=1, image_size=8, **data),
            VqaParams(source="json"))


def test_json_entries_become_questions_with_their_images_decoded_once(tmp_path):
    folder = vizwiz(tmp_path / "vizwiz", GOOD + [entry(0, question_id="q-extra", question="is it red?")])
    stats, store, questions = prepare(tmp_path, *json_params(folder))
    assert len(store.images) == 3 and stats["questions"] == 4  # image 0 has two questions, image 3 none
    assert stats["images_without_questions"] == 1
    assert questions["image_id"].tolist() == ["VizWiz_0.png", "VizWiz_1.png", "VizWiz_2.png", "VizWiz_0.png"]
    assert questions["image"].tolist() == [0, 1, 2, 0]
    assert answer_lists(questions)[1] == ["two"] * 6 + ["2"] * 4
    assert questions["answerable"].tolist() == ["1", "1", "0", "1"]
    assert stats["per_answer_type"] == {"number": 1, "other": 3}


@pytest.mark.parametrize("bad, reason", MALFORMED, ids=[r for _, r in MALFORMED])
def test_a_malformed_entry_stops_prepare_in_one_line_naming_it(tmp_path, bad, reason):
    folder = vizwiz(tmp_path / "vizwiz", GOOD + [bad])
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "old").write_text("kept")
    with pytest.raises(VistageError) as exc:
        prepare(tmp_path, *json_params(folder))
    message = str(exc.value)
    assert "\n" not in message and "train.json entry 3" in message and reason in message
    assert "data.on_bad_image: skip" in message
    assert (tmp_path / "store" / "old").read_text() == "kept"  # the earlier store is intact


def test_with_skip_every_bad_entry_is_left_out_and_listed(tmp_path):
    folder = vizwiz(tmp_path / "vizwiz", GOOD + [bad for bad, _ in MALFORMED])
    (folder / "images" / "VizWiz_2.png").write_bytes(b"not a png")  # its question goes with it
    stats, store, questions = prepare(tmp_path, *json_params(folder, on_bad_image="skip"))
    assert len(questions) == 2 and len(store.images) == 2
    assert len(stats["skipped"]) == len(MALFORMED) + 1
    assert any(s["file"] == "VizWiz_2.png" for s in stats["skipped"])
    assert stats["questions_without_image"] == 1


def test_test_json_without_answers_is_unanswered_and_split_unlabeled(tmp_path):
    entries = [{"image": f"VizWiz_{i}.png", "question": "what is it?"} for i in range(4)]
    folder = vizwiz(tmp_path / "vizwiz", entries)
    _, _, questions = prepare(tmp_path, *json_params(folder))
    assert answer_lists(questions) == [None] * 4 and (questions["label"] == -1).all()
    table = vqa_split_table(questions, 0.15, 0.15, 0)
    assert (table["split"] == "unlabeled").all()


def daquar_like(path, rows: list[tuple[str, str, str]], n_images: int = 6):
    with tarfile.open(path, "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for i in range(n_images):
            add(f"daquar/images/image{i}.png", png(30 * i))
        table = pd.DataFrame(rows, columns=["image", "question", "answer"])
        add("daquar/qa.csv", table.to_csv(index=False).encode())
    return path


def test_csv_in_an_archive_keeps_a_list_answer_as_one_answer(tmp_path):
    rows = [(f"images/image{i % 6}.png", f"what is on the table {i}", "book, scissor, papers" if i == 0 else "lamp")
            for i in range(12)]
    tar = daquar_like(tmp_path / "daquar.tar", rows)
    dp = DataParams(path=str(tar), workers=1, image_size=8)
    stats, store, questions = prepare(tmp_path, dp, VqaParams(source="csv", questions_file="qa.csv"))
    assert len(store.images) == 6 and len(questions) == 12
    assert answer_lists(questions)[0] == ["book, scissor, papers"]
    assert questions["image_id"][0] == "daquar/images/image0.png"


def test_csv_errors_are_one_line(tmp_path):
    tar = daquar_like(tmp_path / "daquar.tar", [("images/image0.png", "q", "a"), ("images/nope.png", "q", "a"),
                                                 ("images/image1.png", "q", "")])
    dp = DataParams(path=str(tar), workers=1, image_size=8)
    with pytest.raises(VistageError, match=r"2 bad question\(s\): .*qa.csv row 3 \(image 'images/nope.png' not found"):
        prepare(tmp_path, dp, VqaParams(source="csv", questions_file="qa.csv"))
    with pytest.raises(VistageError, match="vqa.questions_file: 'answers.csv' not found in"):
        load_vqa_source(dp, VqaParams(source="csv", questions_file="answers.csv"))
    with pytest.raises(VistageError, match="no column 'answer_text' \\(vqa.answer_column\\)"):
        load_vqa_source(dp, VqaParams(source="csv", questions_file="qa.csv", answer_column="answer_text"))


def questions_table(images_per_split: dict[str, int], per_image: int = 5) -> pd.DataFrame:
    rows, image = [], 0
    for split, n in images_per_split.items():
        for _ in range(n):
            rows += [{"image": image, "split": split, "label": 0, "group": str(image)} for _ in range(per_image)]
            image += 1
    frame = pd.DataFrame(rows)
    frame.insert(0, "index", np.arange(len(frame)))
    return frame


def test_the_split_is_grouped_by_image_and_keeps_the_predefined_test_part():
    questions = questions_table({"train": 80, "test": 20})
    table = vqa_split_table(questions, 0.2, 0.15, seed=3)
    assert (table["split"][questions["split"] == "test"] == "test").all()  # the official test part stays
    for image, rows in table.groupby(questions["image"]):
        assert rows["split"].nunique() == 1, f"image {image} is in two splits"
    counts = vqa_split_counts(table, questions)
    assert counts["test"] == {"questions": 100, "images": 20}
    assert 10 <= counts["val"]["images"] <= 22 and counts["train"]["images"] + counts["val"]["images"] == 80
    assert table.equals(vqa_split_table(questions, 0.2, 0.15, seed=3))  # seeded


def test_the_split_carves_test_and_val_by_image_when_nothing_is_predefined():
    table = vqa_split_table(questions_table({"": 60}), 0.2, 0.2, seed=0)
    assert set(table["split"]) == {"train", "val", "test"}
    assert all(table.groupby(table["index"] // 5)["split"].nunique() == 1)


def test_predefined_parts_sharing_an_image_are_refused():
    questions = questions_table({"train": 4, "test": 2})
    questions.loc[0, "split"] = "test"  # one question of image 0 in the test part
    with pytest.raises(VistageError, match="1 image\\(s\\) have questions in both train and test"):
        vqa_split_table(questions, 0.0, 0.0, 0)


def test_easy_vqa_keeps_its_official_parts(tmp_path):
    source = load_vqa_source(DataParams(), VqaParams())
    assert len(source.samples) == 5000 and len(source.questions) == 48248
    by_split = pd.Series([q.split for q in source.questions]).value_counts().to_dict()
    assert by_split == {"train": 38575, "test": 9673}
    assert {s.id.split("/")[0] for s in source.samples} == {"train", "test"}
