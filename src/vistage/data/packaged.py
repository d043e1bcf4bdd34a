"""The packaged sources: data sets that come with a pip package, no `data.path` needed."""

import numpy as np

from .base import SOURCES, ArrayReader, FileReader, Sample, SourceData


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
