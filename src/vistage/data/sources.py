"""Data sources, chosen by `data.source` in params.yaml.

A source turns the user's data into a `SourceData`: the class names and a stream of
`Sample`s, each able to produce its decoded PIL image. The prepare stage decodes every sample
once into the local store; nothing reads the source again after that.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from PIL import Image

from ..errors import VistageError
from ..registry import Registry

SOURCES = Registry("source")


@dataclass
class Sample:
    id: str  # stable identifier shown in reports and predictions (a path for file sources)
    label: str | None  # class name; None for unlabeled data
    load: Callable[[], Image.Image]
    split: str | None = None  # predefined split from the source (train/val/test), if any
    group: str | None = None  # samples of one group always land in the same split


@dataclass
class SourceData:
    classes: list[str]
    samples: list[Sample]
    description: str


@SOURCES.register("digits", help="scikit-learn's handwritten digits: 1,797 8x8 images, 10 classes (packaged)")
def digits(data_params) -> SourceData:
    import numpy as np
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 0..16 grey levels -> 0..255
    images = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)
    classes = [str(c) for c in bunch.target_names]

    def loader(i: int) -> Callable[[], Image.Image]:
        return lambda: Image.fromarray(images[i], mode="L")

    samples = [Sample(id=f"digits/{i:04d}", label=classes[t], load=loader(i)) for i, t in enumerate(bunch.target)]
    return SourceData(classes, samples, "scikit-learn digits (packaged)")


def load_source(data_params) -> SourceData:
    source = SOURCES.get(data_params.source, "data.source")(data_params)
    if not source.samples:
        raise VistageError(f"data source {data_params.source!r} at {data_params.path!r}: no images found")
    return source
