import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vistage.data.images import fit, to_rgb
from vistage.data.sources import ArrayReader, Sample, SourceData
from vistage.data.split import split_table
from vistage.data.store import load_store, write_store
from vistage.errors import VistageError


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "RGB", "1", "F"])
def test_every_mode_becomes_rgb(mode):
    img = Image.new(mode, (5, 4))
    out = to_rgb(img)
    assert out.mode == "RGB" and out.size == (5, 4)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    arr = np.array([[0, 1000], [30000, 65535]], dtype=np.uint16)
    out = np.asarray(to_rgb(Image.fromarray(arr)))
    assert out[1, 1, 0] == 255 and 0 < out[1, 0, 0] < 255


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (6, 3))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90
    img.info["exif"] = exif.tobytes()
    img = Image.open(_roundtrip(img, exif))
    assert to_rgb(img).size == (3, 6)


def _roundtrip(img, exif):
    import io

    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    buf.seek(0)
    return buf


def test_fit_keeps_pixels_at_matching_size_and_resizes_otherwise():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(fit(img, 8)), np.asarray(img))
    assert fit(Image.new("RGB", (500, 375)), 64).size == (64, 64)
    assert fit(Image.new("RGB", (500, 375)), 64, "pad").size == (64, 64)


def test_resize_policies_keep_or_cut_the_sides_of_a_wide_image():
    from vistage.data.images import to_store_array

    wide = np.zeros((20, 60, 3), dtype=np.uint8)
    wide[:, :10] = (255, 0, 0)  # a red band on the left, cut off by a centre crop
    crop, pad, squash = (to_store_array(Image.fromarray(wide), 16, policy) for policy in ("crop", "pad", "squash"))
    assert crop[:, 0, 0].max() < 50  # the band is outside the centred square
    assert squash[:, 0, 0].min() > 200 and squash[:, 0, 1].max() < 50  # the whole height, squashed not cut
    assert squash.shape == pad.shape == (16, 16, 3) and pad[0, :, :].max() == 0  # pad: black bars above


def _source(n_per_class: dict[str, int]) -> SourceData:
    samples, pixels = [], []
    for cls, n in n_per_class.items():
        for i in range(n):
            pixels.append(np.full((6, 6), (i * 7) % 255, dtype=np.uint8))
            samples.append(Sample(f"{cls}/{i}.png", cls, len(samples)))
    return SourceData(sorted(n_per_class), samples, ArrayReader(np.stack(pixels)), "test")


def test_store_roundtrip(tmp_path):
    stats = write_store(tmp_path / "store", _source({"a": 3, "b": 2}), 4, workers=1)
    store = load_store(tmp_path / "store")
    assert store.images.shape == (5, 4, 4, 3) and store.images.dtype == np.uint8
    assert store.classes == ["a", "b"]
    assert store.samples["label"].tolist() == [0, 0, 0, 1, 1]
    assert stats["per_class"] == {"a": 3, "b": 2} and stats["sizes_seen"] == {"6x6": 5}


def test_rewriting_a_store_replaces_it_whole(tmp_path):
    write_store(tmp_path / "store", _source({"a": 3, "b": 2}), 4)
    write_store(tmp_path / "store", _source({"x": 2}), 4)
    assert load_store(tmp_path / "store").classes == ["x"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no temporary leftovers


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(VistageError, match="run `vistage prepare` first"):
        load_store(tmp_path / "nothing")


def _samples(counts):
    labels = np.repeat(np.arange(len(counts)), counts)
    return pd.DataFrame({"index": np.arange(len(labels)), "label": labels})


def test_split_is_stratified_disjoint_and_seeded():
    samples = _samples([50, 30, 20])
    a = split_table(samples, ["x", "y", "z"], 0.2, 0.2, seed=3)
    b = split_table(samples, ["x", "y", "z"], 0.2, 0.2, seed=3)
    c = split_table(samples, ["x", "y", "z"], 0.2, 0.2, seed=4)
    assert a.equals(b) and not a.equals(c)
    assert a["split"].value_counts().to_dict() == {"train": 60, "val": 20, "test": 20}
    joined = a.merge(samples, on="index")
    for split in ("train", "val", "test"):
        assert set(joined.loc[joined["split"] == split, "label"]) == {0, 1, 2}
    # the class proportions hold in every split (within one image)
    test_counts = joined[joined["split"] == "test"]["label"].value_counts().sort_index().tolist()
    assert all(abs(n - e) <= 1 for n, e in zip(test_counts, [10, 6, 4]))


def test_split_refuses_too_few_images_for_the_classes():
    with pytest.raises(VistageError, match="fewer than the 3 classes"):
        split_table(_samples([4, 4, 4]), ["x", "y", "z"], 0.1, 0.1, seed=0)


def test_split_refuses_a_class_with_one_image():
    with pytest.raises(VistageError, match="class 'z' has fewer than 2 images"):
        split_table(_samples([20, 20, 1]), ["x", "y", "z"], 0.2, 0.2, seed=0)


def test_large_jpeg_decodes_at_reduced_size_with_nearly_the_same_pixels():
    """PIL's draft decodes a 1600x1200 JPEG at 1/8 scale for a 64 px store: the reported size is
    the file's, and the result is close to a full decode resized the same way."""
    import io

    import numpy as np
    from PIL import Image

    from vistage.data.decode import decode_one
    from vistage.data.images import to_store_array

    yy, xx = np.mgrid[0:1200, 0:1600]
    photo = np.stack([xx % 256, yy % 256, (xx + yy) // 12 % 256], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG", quality=90)
    reduced, seen = decode_one(buf.getvalue(), 64, "crop")
    full = to_store_array(Image.open(io.BytesIO(buf.getvalue())), 64, "crop")
    assert seen == "1600x1200" and reduced.shape == full.shape == (64, 64, 3)
    assert np.abs(reduced.astype(int) - full.astype(int)).mean() < 6  # of 255


def _jpeg(arr, **save) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90, **save)
    return buf.getvalue()


def _photo(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("shape", [(375, 500), (500, 375), (100, 80), (1200, 1600)],
                         ids=["landscape", "portrait", "small", "large-at-quarter-scale"])
def test_turbo_jpeg_decoding_matches_pil(shape, monkeypatch):
    """simplejpeg's decode (at 1/4 scale for the 1600x1200 photo, as PIL's draft) gives the picture
    PIL's decoder gives, within JPEG noise; PIL alone (no simplejpeg) still decodes."""
    from vistage.data import decode

    payload = _jpeg(_photo(*shape))
    fast, seen = decode.decode_one(payload, 224, "crop")
    monkeypatch.setattr(decode, "simplejpeg", None)
    plain, seen_plain = decode.decode_one(payload, 224, "crop")
    assert seen == seen_plain == f"{shape[1]}x{shape[0]}" and fast.shape == plain.shape == (224, 224, 3)
    assert np.abs(fast.astype(int) - plain.astype(int)).mean() < 3  # of 255


def test_turbo_jpeg_decoding_leaves_rotated_and_broken_files_to_pil_and_greys_grey():
    from vistage.data.decode import decode_one

    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6  # rotate 90: PIL's path applies it
    rotated = _jpeg(_photo(300, 400), exif=exif)
    assert decode_one(rotated, 224, "pad")[0][:, :20].max() == 0  # pad: the rotated photo stands upright
    grey = _jpeg(_photo(300, 400)[..., 0])
    arr, _ = decode_one(grey, 224, "crop")
    assert arr.shape == (224, 224, 3) and (arr[..., 0] == arr[..., 2]).all()
    plain = _jpeg(_photo(300, 400))
    with pytest.raises(OSError):  # truncated: an error from PIL, as before
        decode_one(plain[: len(plain) // 2], 224, "crop")


def _png_tree(root, layout):
    import numpy as np
    from PIL import Image

    for folder, n in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / folder / f"{i}.png")


def _folder_params(path, **kw):
    from vistage.params import DataParams

    return DataParams(source="folder", path=str(path), **kw)


def test_a_linked_folder_stops_prepare_unless_links_are_followed(tmp_path):
    """Users link a test/ folder in from elsewhere: never skipped without a word."""
    import os

    import pytest

    from vistage.data.sources import load_source
    from vistage.errors import VistageError

    _png_tree(tmp_path / "data", {"train/cat": 3, "train/dog": 3})
    _png_tree(tmp_path / "elsewhere", {"cat": 2, "dog": 2})
    os.symlink(tmp_path / "elsewhere", tmp_path / "data" / "test")
    with pytest.raises(VistageError) as err:
        load_source(_folder_params(tmp_path / "data"))
    assert str(err.value).startswith(f"{tmp_path / 'data' / 'test'}: a link to a folder; set data.follow_links: true")
    followed = load_source(_folder_params(tmp_path / "data", follow_links=True))
    assert sorted(s.split for s in followed.samples).count("test") == 4 and len(followed.samples) == 10


def test_a_link_loop_is_read_once(tmp_path):
    import os

    from vistage.data.sources import load_source

    _png_tree(tmp_path / "data", {"cat": 2, "dog": 2})
    os.symlink(tmp_path / "data", tmp_path / "data" / "cat" / "again")  # points back up
    assert len(load_source(_folder_params(tmp_path / "data", follow_links=True)).samples) == 4


def test_empty_class_folders_are_reported_not_dropped_silently(tmp_path):
    import json
    import sys

    import yaml

    from .conftest import default_params, merged, run_env
    from .stage_runner import run_stage

    _png_tree(tmp_path / "data", {"cat": 3, "dog": 3})
    (tmp_path / "data" / "bird").mkdir()
    (tmp_path / "data" / "fish" / "images").mkdir(parents=True)
    params = merged(default_params(), {"data": {"source": "folder", "path": str(tmp_path / "data"), "workers": 1}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = run_stage([sys.executable, "-m", "stages.prepare", "--params", "params.yaml", "--out", "prepared",
                      "--metrics", "data.json"], tmp_path, run_env())
    assert proc.returncode == 0, proc.stderr
    assert "2 folders without images left out" in proc.stdout
    assert json.loads((tmp_path / "data.json").read_text())["empty_folders"] == ["bird", "fish"]
