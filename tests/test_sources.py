"""Every source on small generated files, and every kind of bad data."""

import io
import json
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vistage.data.sources import load_source
from vistage.data.split import split_table
from vistage.data.store import load_store, write_store
from vistage.errors import VistageError
from vistage.params import DataParams

from .conftest import run_env
from .stage_runner import run_stage

MODES = ["RGB", "L", "LA", "P", "RGBA", "CMYK", "I;16"]


def image_bytes(mode: str = "RGB", size=(10, 8), fmt: str = "PNG", value: int = 100) -> bytes:
    if mode == "I;16":
        img = Image.fromarray(np.full(size[::-1], value * 200, dtype=np.uint16))
    else:
        img = Image.new(mode, size, color=value if mode in ("L", "P", "1") else None)
    buf = io.BytesIO()
    img.save(buf, format="TIFF" if mode == "CMYK" else fmt)
    return buf.getvalue()


def make_tree(root: Path, layout: dict[str, int], suffix: str = ".png") -> None:
    """layout: relative class folder -> number of images (modes cycle through MODES)."""
    for folder, n in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            mode = MODES[i % len(MODES)]
            name = f"img{i}{'.tif' if mode == 'CMYK' else suffix}"
            (root / folder / name).write_bytes(image_bytes(mode, value=10 * i + 5))


def dp(**kw) -> DataParams:
    return DataParams(**kw)


def prepare(tmp_path, data_params, **kw):
    out = tmp_path / "store"
    stats = write_store(out, load_source(data_params), 8, data_params.resize, data_params.on_bad_image,
                        kw.get("workers", 1))
    return stats, load_store(out)


def archive(src: Path, dest: Path) -> Path:
    if dest.suffix == ".zip":
        with zipfile.ZipFile(dest, "w") as zf:
            for f in sorted(src.rglob("*")):
                if f.is_file():
                    zf.write(f, f.relative_to(src.parent).as_posix())
    else:
        with tarfile.open(dest, "w:gz" if dest.name.endswith(".gz") else "w") as tar:
            tar.add(src, arcname=src.name)
    return dest


# ---- folder -------------------------------------------------------------------------------

def test_folder_directory_every_mode_to_rgb(tmp_path):
    make_tree(tmp_path / "data", {"cat": 7, "dog": 4})
    (tmp_path / "data" / "README.txt").write_text("not an image, ignored")
    stats, store = prepare(tmp_path, dp(source="folder", path=str(tmp_path / "data")))
    assert store.classes == ["cat", "dog"] and store.images.shape == (11, 8, 8, 3)
    assert stats["per_class"] == {"cat": 7, "dog": 4} and stats["skipped"] == []
    assert set(store.samples["split"]) == {""}


@pytest.mark.parametrize("name", ["data.tar", "data.tar.gz", "data.zip"])
def test_folder_archive_with_wrapper_and_predefined_splits(tmp_path, name):
    make_tree(tmp_path / "src" / "wrap", {"train/cat": 4, "train/dog/images": 3, "test/cat": 2, "test/dog/images": 2})
    path = archive(tmp_path / "src" / "wrap", tmp_path / name)
    stats, store = prepare(tmp_path, dp(source="folder", path=str(path)))
    assert store.classes == ["cat", "dog"]
    assert store.samples.groupby("split").size().to_dict() == {"test": 4, "train": 7}
    assert stats["per_predefined_split"]["test"] == {"cat": 2, "dog": 2}
    assert store.samples["id"].iloc[0].startswith("wrap/")


def test_folder_parallel_equals_serial(tmp_path):
    make_tree(tmp_path / "data", {"a": 9, "b": 9})
    source = dp(source="folder", path=str(tmp_path / "data"))
    write_store(tmp_path / "one", load_source(source), 8, workers=1)
    write_store(tmp_path / "two", load_source(source), 8, workers=2)
    assert np.array_equal(load_store(tmp_path / "one").images, load_store(tmp_path / "two").images)


def test_folder_large_images_resized_by_policy(tmp_path):
    (tmp_path / "d" / "x").mkdir(parents=True)
    (tmp_path / "d" / "y").mkdir(parents=True)
    for cls in ("x", "y"):
        (tmp_path / "d" / cls / "big.jpg").write_bytes(image_bytes("RGB", (500, 375), "JPEG"))
    for policy in ("crop", "pad"):
        stats, store = prepare(tmp_path, dp(source="folder", path=str(tmp_path / "d"), resize=policy))
        assert store.images.shape == (2, 8, 8, 3) and stats["sizes_seen"] == {"500x375": 2}
    # pad leaves black bars above and below a landscape photo; crop does not
    assert store.images[0, 0].sum() == 0


def test_folder_mixed_layout_is_an_error(tmp_path):
    make_tree(tmp_path / "d", {"train/cat": 2, "dog": 2})
    with pytest.raises(VistageError, match="mixes split folders"):
        load_source(dp(source="folder", path=str(tmp_path / "d")))


def test_folder_missing_path_and_empty(tmp_path):
    with pytest.raises(VistageError, match="does not exist"):
        load_source(dp(source="folder", path=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(VistageError, match="no images found"):
        load_source(dp(source="folder", path=str(tmp_path / "empty")))


def test_archive_member_escaping_the_root_is_refused(tmp_path):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        for name in ("cls/ok.png", "cls/ok2.png", "../../etc/passwd.png"):
            data = image_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(VistageError, match=r"1 bad image\(s\): \.\./\.\./etc/passwd\.png \(refused"):
        prepare(tmp_path, dp(source="folder", path=str(path)))
    stats, store = prepare(tmp_path, dp(source="folder", path=str(path), on_bad_image="skip"))
    assert len(store.images) == 2 and stats["skipped"][0]["file"] == "../../etc/passwd.png"


# ---- csv ----------------------------------------------------------------------------------

def write_csv_data(tmp_path, rows: list[dict], n_images: int = 6) -> Path:
    (tmp_path / "img").mkdir(exist_ok=True)
    for i in range(n_images):
        (tmp_path / "img" / f"{i}.png").write_bytes(image_bytes("L", value=20 * i))
    path = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_csv_relative_paths_split_and_group_columns(tmp_path):
    rows = [{"file": f"img/{i}.png", "y": "odd" if i % 2 else "even", "part": "test" if i == 5 else "",
             "g": f"g{i // 2}"} for i in range(6)]
    path = write_csv_data(tmp_path, rows)
    stats, store = prepare(tmp_path, dp(source="csv", path=str(path), root=str(tmp_path), csv_path_column="file",
                                        csv_label_column="y", csv_split_column="part", csv_group_column="g"))
    assert store.classes == ["even", "odd"] and len(store.images) == 6
    assert store.samples["split"].tolist() == [""] * 5 + ["test"]
    assert store.samples["group"].tolist() == ["g0", "g0", "g1", "g1", "g2", "g2"]


def test_csv_paths_relative_to_a_root(tmp_path):
    write_csv_data(tmp_path, [])
    path = tmp_path / "meta" / "list.csv"
    path.parent.mkdir()
    pd.DataFrame({"path": ["0.png", "1.png"], "label": ["a", "b"]}).to_csv(path, index=False)
    _, store = prepare(tmp_path, dp(source="csv", path=str(path), root=str(tmp_path / "img")))
    assert len(store.images) == 2


def test_csv_unlabeled_set(tmp_path):
    path = write_csv_data(tmp_path, [{"path": f"img/{i}.png"} for i in range(3)])
    stats, store = prepare(tmp_path, dp(source="csv", path=str(path), root=str(tmp_path), csv_label_column=None))
    assert store.classes == [] and store.samples["label"].tolist() == [-1, -1, -1]
    assert split_table(store.samples, [], 0.2, 0.2, 0)["split"].tolist() == ["unlabeled"] * 3


def test_csv_missing_label_column_names_the_columns(tmp_path):
    path = write_csv_data(tmp_path, [{"path": "img/0.png", "class": "a"}])
    with pytest.raises(VistageError, match=r"no column 'label' \(data.csv_label_column\); columns: path, class"):
        load_source(dp(source="csv", path=str(path)))


@pytest.mark.parametrize("row,reason", [
    ({"path": "img/missing.png", "label": "a"}, "file not found"),
    ({"path": "img/1.png", "label": ""}, "empty label"),
    ({"path": "../../etc/passwd", "label": "a"}, "refused: escapes the data root"),
])
def test_csv_bad_rows_name_the_row(tmp_path, row, reason):
    path = write_csv_data(tmp_path, [{"path": "img/0.png", "label": "a"}, row])
    with pytest.raises(VistageError) as exc:
        prepare(tmp_path, dp(source="csv", path=str(path), root=str(tmp_path)))
    assert f"labels.csv row 3: {row['path']} ({reason}" in str(exc.value)
    stats, store = prepare(tmp_path, dp(source="csv", path=str(path), root=str(tmp_path), on_bad_image="skip"))
    assert len(store.images) == 1 and stats["skipped"][0]["reason"].startswith(reason.split(":")[0])


# ---- cifar --------------------------------------------------------------------------------

def write_cifar10(root: Path, per_batch: int = 4) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"c{i}".encode() for i in range(10)]
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (per_batch, 3072), dtype=np.uint8),
                 b"labels": [i % 10 for i in range(per_batch)]}
        (root / name).write_bytes(pickle.dumps(batch))
    return root


def test_cifar_batches_from_folder_and_archive(tmp_path):
    root = write_cifar10(tmp_path / "cifar-10-batches-py")
    stats, store = prepare(tmp_path, dp(source="cifar", path=str(root)))
    assert len(store.images) == 24 and store.classes[0] == "c0"
    assert store.samples.groupby("split").size().to_dict() == {"test": 4, "train": 20}
    # pixels are kept exactly when image_size matches (the batch is CHW-planar)
    batch = pickle.loads((root / "data_batch_1").read_bytes())
    first = batch[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    out = write_store(tmp_path / "s32", load_source(dp(source="cifar", path=str(root))), 32, workers=1)
    assert out["images"] == 24 and np.array_equal(load_store(tmp_path / "s32").images[0], first)
    tgz = archive(root, tmp_path / "cifar-10-python.tar.gz")
    _, from_archive = prepare(tmp_path, dp(source="cifar", path=str(tgz)))
    assert np.array_equal(from_archive.images, store.images)


def test_cifar_refuses_pickles_that_run_code(tmp_path):
    root = write_cifar10(tmp_path / "c")

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": Evil()}))
    with pytest.raises(VistageError, match="refusing to load builtins.print"):
        load_source(dp(source="cifar", path=str(root)))


def test_cifar_missing_path_says_how_to_fetch_it(tmp_path):
    with pytest.raises(VistageError, match="dvc import-url https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"):
        load_source(dp(source="cifar", path=str(tmp_path / "none")))


# ---- bad images ---------------------------------------------------------------------------

BAD_FILES = {
    "zero.png": b"",
    "text.png": b"this is not an image",
    "truncated.jpg": image_bytes("RGB", (64, 64), "JPEG")[:300],
    "corrupt.png": image_bytes()[:40] + b"\x00" * 200,
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_each_kind_of_bad_image_is_caught(tmp_path, name):
    make_tree(tmp_path / "d", {"a": 2, "b": 2})
    (tmp_path / "d" / "a" / name).write_bytes(BAD_FILES[name])
    with pytest.raises(VistageError, match=rf"1 bad image\(s\): a/{name} \("):
        prepare(tmp_path, dp(source="folder", path=str(tmp_path / "d")))


def test_decompression_bomb_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a 40x40 image then counts as a bomb
    make_tree(tmp_path / "d", {"a": 1, "b": 1})
    (tmp_path / "d" / "a" / "bomb.png").write_bytes(image_bytes("L", (40, 40)))
    with pytest.raises(VistageError, match=r"a/bomb.png \(DecompressionBomb"):
        prepare(tmp_path, dp(source="folder", path=str(tmp_path / "d")))


def test_bad_images_error_names_first_files_and_count_and_keeps_old_store(tmp_path):
    make_tree(tmp_path / "d", {"a": 3, "b": 3})
    write_store(tmp_path / "store", load_source(dp(source="folder", path=str(tmp_path / "d"))), 8, workers=1)
    before = (tmp_path / "store" / "images.npy").read_bytes()
    for name, data in BAD_FILES.items():
        (tmp_path / "d" / "b" / name).write_bytes(data)
    with pytest.raises(VistageError) as exc:
        prepare(tmp_path, dp(source="folder", path=str(tmp_path / "d")), workers=2)
    message = str(exc.value)
    assert message.startswith("prepare: 4 bad image(s): b/corrupt.png (") and "..." in message
    assert "on_bad_image: skip" in message and "\n" not in message
    assert (tmp_path / "store" / "images.npy").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "store"]  # no temporary leftovers
    stats, store = prepare(tmp_path, dp(source="folder", path=str(tmp_path / "d"), on_bad_image="skip"))
    assert len(store.images) == 6 and [s["file"] for s in stats["skipped"]] == [f"b/{n}" for n in sorted(BAD_FILES)]
    assert store.samples["index"].tolist() == list(range(6))


def test_only_bad_images_is_an_error_even_when_skipping(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "a" / "x.png").write_bytes(b"")
    with pytest.raises(VistageError, match="no usable images"):
        prepare(tmp_path, dp(source="folder", path=str(tmp_path / "d"), on_bad_image="skip"))


def test_prepare_cli_bad_data_exit_2_outputs_intact(tmp_path, write_params):
    make_tree(tmp_path / "d", {"a": 3, "b": 3})
    params = write_params({"data": {"source": "folder", "path": str(tmp_path / "d"), "workers": 1}})
    cmd = [sys.executable, "-m", "vistage", "prepare", "--params", str(params), "--out", "data/prepared",
           "--metrics", "metrics/data.json"]
    assert run_stage(cmd, tmp_path, run_env()).returncode == 0
    data_json = (tmp_path / "metrics" / "data.json").read_text()
    (tmp_path / "d" / "a" / "broken.png").write_bytes(b"nope")
    proc = run_stage(cmd, tmp_path, run_env())
    assert proc.returncode == 2 and "a/broken.png" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "metrics" / "data.json").read_text() == data_json
    assert json.loads(data_json)["images"] == 6


# ---- splits -------------------------------------------------------------------------------

def _table(labels, split=None, group=None):
    n = len(labels)
    return pd.DataFrame({"index": np.arange(n), "label": labels, "split": split or [""] * n,
                         "group": group or [""] * n})


def test_predefined_test_split_is_kept_and_val_carved_from_train():
    labels = [i % 3 for i in range(60)]
    split = ["test" if i >= 45 else "train" for i in range(60)]
    out = split_table(_table(labels, split), ["a", "b", "c"], 0.2, 0.2, 0)
    assert (out["split"][45:] == "test").all()
    assert out["split"][:45].value_counts().to_dict() == {"train": 36, "val": 9}


def test_groups_never_straddle_splits():
    rng = np.random.default_rng(0)
    groups = [f"img{i // 4}" for i in range(400)]  # four questions per image
    labels = [int(x) for x in rng.integers(0, 3, 400)]
    out = split_table(_table(labels, group=groups), ["a", "b", "c"], 0.2, 0.2, 1)
    per_group = pd.DataFrame({"group": groups, "split": out["split"]}).groupby("group")["split"].nunique()
    assert (per_group == 1).all()
    shares = out["split"].value_counts(normalize=True)
    assert 0.1 < shares["test"] < 0.3 and 0.1 < shares["val"] < 0.3
    assert out.equals(split_table(_table(labels, group=groups), ["a", "b", "c"], 0.2, 0.2, 1))
