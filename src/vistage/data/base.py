"""What every data source shares: the SOURCES registry, `Sample`, readers and `SourceData`.

A source lists the user's data as `Sample`s (id, label, predefined split, group) plus a
`reader` that returns each sample's payload: the encoded file bytes, or an array of pixels for
sources that hold them already. The prepare stage reads payloads in order in the main process
(sequential I/O suits archives and network drives) and decodes them in worker processes, once.

The source modules (packaged.py, folder.py, csv_source.py, cifar.py) import this module and
register their sources in SOURCES; sources.py imports them all, so look keywords up through
`vistage.data.sources` (SOURCES imported from here holds only the modules imported so far).
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
    # folders without a single image (an empty class folder): left out, and reported by prepare
    empty_folders: list[str] = field(default_factory=list)


def require_path(data_params, what: str) -> Path:
    if not data_params.path:
        raise VistageError(f"params.yaml: data.path: the {data_params.source!r} source needs {what}")
    path = Path(data_params.path).expanduser()
    if not path.exists():
        raise VistageError(f"params.yaml: data.path: {str(path)!r} does not exist")
    return path


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)
