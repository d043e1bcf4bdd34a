"""Data sources, chosen by `data.source` in params.yaml.

A source lists the user's data as `Sample`s (id, label, predefined split, group) plus a
`reader` that returns each sample's payload: the encoded file bytes, or an array of pixels for
sources that hold them already. The prepare stage reads payloads in order in the main process
(sequential I/O suits archives and network drives) and decodes them in worker processes, once.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import VistageError
from ..registry import Registry

SOURCES = Registry("source")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}


@dataclass
class Sample:
    id: str  # stable identifier shown in reports and predictions (a path for file sources)
    label: str | None  # class name; None for unlabeled data
    ref: object = None  # what the source's reader needs to find the payload
    split: str | None = None  # predefined split from the source (train/val/test), if any
    group: str | None = None  # samples of one group always land in the same split


class Reader:
    """Gives the payload of each sample, in sample order. Payload: bytes or a uint8 array."""

    def payloads(self, samples: list[Sample]) -> Iterator[bytes | np.ndarray]:
        for sample in samples:
            yield self.read(sample.ref)

    def read(self, ref) -> bytes | np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class ArrayReader(Reader):
    def __init__(self, images: np.ndarray):
        self.images = images

    def read(self, ref) -> np.ndarray:
        return self.images[ref]


class FileReader(Reader):
    def read(self, ref) -> bytes:
        return Path(ref).read_bytes()


@dataclass
class SourceData:
    classes: list[str]
    samples: list[Sample]
    reader: Reader
    description: str
    # files the source itself refused while listing (missing CSV files, empty labels, ...)
    bad: list[tuple[str, str]] = field(default_factory=list)


def require_path(data_params, what: str) -> Path:
    if not data_params.path:
        raise VistageError(f"params.yaml: data.path: the {data_params.source!r} source needs {what}")
    path = Path(data_params.path).expanduser()
    if not path.exists():
        raise VistageError(f"params.yaml: data.path: {str(path)!r} does not exist")
    return path


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


@SOURCES.register(help="scikit-learn's handwritten digits: 1,797 8x8 images, 10 classes (packaged)")
def digits(data_params) -> SourceData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 0..16 grey levels -> 0..255
    images = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)
    classes = [str(c) for c in bunch.target_names]
    samples = [Sample(id=f"digits/{i:04d}", label=classes[t], ref=i) for i, t in enumerate(bunch.target)]
    return SourceData(classes, samples, ArrayReader(images), "scikit-learn digits (packaged)")


@SOURCES.register("easy-vqa", help="easy-VQA's 5,000 64x64 shape images (packaged), labelled by shape")
def easy_vqa_shapes(data_params) -> SourceData:
    """The images of the easy-VQA package as a 3-class shape classifier, with its train/test parts
    as predefined splits; the VQA task itself reads the questions (a separate task)."""
    import easy_vqa

    shapes = {"circle", "rectangle", "triangle"}
    samples = []
    for split, questions, paths in (("train", easy_vqa.get_train_questions(), easy_vqa.get_train_image_paths()),
                                    ("test", easy_vqa.get_test_questions(), easy_vqa.get_test_image_paths())):
        shape_of = {}
        for answer, image_id in zip(questions[1], questions[2]):
            if answer in shapes:
                shape_of[image_id] = answer
        for image_id in sorted(paths):
            if image_id in shape_of:
                samples.append(Sample(f"easy-vqa/{split}/{image_id}.png", shape_of[image_id], paths[image_id], split,
                                      group=f"{split}/{image_id}"))
    return SourceData(sorted(shapes), samples, FileReader(), "easy-VQA images by shape (packaged)")


def load_source(data_params) -> SourceData:
    source = SOURCES.get(data_params.source, "data.source")(data_params)
    if not source.samples and not source.bad:
        where = f" at {data_params.path}" if data_params.path else ""
        raise VistageError(f"data source {data_params.source!r}{where}: no images found")
    return source


# the file-based sources register themselves in SOURCES on import
from . import cifar, csv_source, folder  # noqa: E402, F401
