"""The `cifar` source: CIFAR-10/100 python batches from a local folder or the original
`cifar-10-python.tar.gz` / `cifar-100-python.tar.gz` archive (fetch it the DVC way:
`dvc import-url https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz data/raw/`). The batches are pickles: they are read with an unpickler that only
builds numpy arrays and plain containers, so a crafted file cannot run code."""

import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import VistageError
from .base import SOURCES, ArrayReader, Sample, SourceData

_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(data: bytes, where: str) -> dict:
    try:
        obj = _ArraysOnly(io.BytesIO(data), encoding="latin1").load()
    except Exception as exc:
        raise VistageError(f"{where}: not a CIFAR python batch ({_first_line(exc)})") from None
    if not isinstance(obj, dict):
        raise VistageError(f"{where}: not a CIFAR python batch (a {type(obj).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _field(batch: dict, key: str, where: str):
    if key not in batch:
        raise VistageError(f"{where}: not a CIFAR python batch (no {key!r}; it has {', '.join(map(str, batch))})")
    return batch[key]


def _images(batch: dict, where: str) -> np.ndarray:
    """The batch's images as (N, 32, 32, 3) uint8: rows of 3072 values (R, G, B planes of 32x32)."""
    try:
        data = np.asarray(_field(batch, "data", where))
    except (TypeError, ValueError) as exc:
        raise VistageError(f"{where}: not a CIFAR python batch (data: {_first_line(exc)})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or not np.issubdtype(data.dtype, np.integer):
        raise VistageError(f"{where}: data is {data.dtype} {tuple(data.shape)}, expected rows of 3072 uint8 "
                           "values (3 x 32 x 32)")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise VistageError(f"{where}: data holds values outside 0..255")
    return data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _labels(batch: dict, key: str, n_images: int, n_classes: int, where: str) -> list[int]:
    labels = _field(batch, key, where)
    try:
        labels = [int(v) for v in labels]
    except (TypeError, ValueError) as exc:
        raise VistageError(f"{where}: {key}: not a list of class numbers ({_first_line(exc)})") from None
    if len(labels) != n_images:
        raise VistageError(f"{where}: {len(labels)} {key} for {n_images} images")
    for j, label in enumerate(labels):
        if not 0 <= label < n_classes:
            raise VistageError(f"{where}: image {j} has label {label}, outside the {n_classes} classes of the "
                               "meta file")
    return labels


def _read_files(path: Path) -> dict[str, bytes]:
    """Name -> bytes of the batch files, from a folder or the original archive."""
    if path.is_dir():
        return {f.name: f.read_bytes() for f in path.rglob("*") if f.is_file() and not f.name.endswith(".html")}
    try:
        with tarfile.open(path) as tar:
            return {Path(m.name).name: tar.extractfile(m).read() for m in tar if m.isfile()}
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:  # EOFError: a cut gzip stream
        raise VistageError(f"{path}: not a readable CIFAR archive ({_first_line(exc)})") from None


@SOURCES.register(help="CIFAR-10/100 python batches (folder or cifar-*-python.tar.gz); train/test kept")
def cifar(dp) -> SourceData:
    path = Path(dp.path).expanduser()
    if not path.exists():
        raise VistageError(f"params.yaml: data.path: {str(path)!r} does not exist (fetch CIFAR-10 with `dvc "
                           "import-url https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz data/raw/`)")
    files = _read_files(path)
    if "data_batch_1" in files:  # CIFAR-10
        parts = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        meta, label_key, names_key = "batches.meta", "labels", "label_names"
    elif "train" in files and "meta" in files:  # CIFAR-100
        parts = {"train": ["train"], "test": ["test"]}
        meta, label_key, names_key = "meta", "fine_labels", "fine_label_names"
    else:
        raise VistageError(f"{path}: no CIFAR batches found (expected data_batch_1..5 and test_batch, or train/test)")
    label_names = _field(_unpickle(files[meta], f"{path}/{meta}"), names_key, f"{path}/{meta}")
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in label_names]
    arrays, samples = [], []
    for split, names in parts.items():
        for name in names:
            if name not in files:
                raise VistageError(f"{path}: {name} is missing")
            where = f"{path}/{name}"
            batch = _unpickle(files[name], where)
            data = _images(batch, where)
            for j, label in enumerate(_labels(batch, label_key, len(data), len(classes), where)):
                samples.append(Sample(f"{name}/{j}", classes[label], len(samples), split))
            arrays.append(data)
    return SourceData(classes, samples, ArrayReader(np.concatenate(arrays)), f"CIFAR batches {path}")
