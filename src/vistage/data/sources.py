"""Data sources, chosen by `data.source` in params.yaml: `load_source(data_params)`.

Importing this module imports every source module, each of which registers its sources in
SOURCES (defined, with the types they share, in base.py).
"""

from ..errors import VistageError
from . import cifar, csv_source, folder, packaged  # noqa: F401  (they fill SOURCES)
from .base import (SOURCES, SPLIT_NAMES, ArrayReader, FileReader, Reader, Sample, SourceData, is_image_name,
                   require_path)

__all__ = ["SOURCES", "SPLIT_NAMES", "ArrayReader", "FileReader", "Reader", "Sample", "SourceData", "is_image_name",
           "load_source", "require_path"]


def load_source(data_params) -> SourceData:
    source = SOURCES.get(data_params.source, "data.source")(data_params)
    if not source.samples and not source.bad:
        where = f" at {data_params.path}" if data_params.path else ""
        raise VistageError(f"data source {data_params.source!r}{where}: no images found")
    return source

