"""The Task interface: everything that differs between classifying images and answering
questions about them, and nothing the engine shares.

A Task is light (no torch on import): the data stages call it without loading the model code.
Per stage it supplies

    prepare(params, out, metrics) -> str          decode the source into the store (summary line)
    split(params, store, out, metrics) -> str     assign train/val/test rows
    training(params, store, split) -> TaskTraining   the data and hooks of one training run
    predict(params, paths) -> str                 run a checkpoint (PredictPaths: what to write)
    evaluate(params, logits, paths) -> list[str]  score what predict wrote
    report_layout(params) -> ReportLayout         the report's sections, title and data source

and it declares the settings it does not read (`unread`): `refusals(params)` turns a non-default
value of one into an error or a one-line warning, so no setting is ever silently ignored.

TaskTraining holds one run's data (the store, its train and validation rows) and the hooks the
training loop calls in place of asking which task runs: the model and loss, what happens once the
components exist (caches, loaders), the epoch's batches and how a batch reaches the model, the
summed accuracy of a batch, validation, and what a checkpoint adds.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..errors import VistageError, shown_value


@dataclass
class PredictPaths:
    """What the predict stage reads and writes (dvc.yaml's paths; None: not asked for)."""

    checkpoint: Path | None  # None only with `model`
    out: Path
    store: Path | None = None
    split: Path | None = None
    logits: Path | None = None
    submission: Path | None = None
    submission_json: Path | None = None
    gradcam: Path | None = None
    cost: Path | None = None
    input: Path | None = None  # new data to predict instead of the store's test and val rows
    images: Path | None = None  # with input (vqa): the folder or archive of its images
    top_k: int | None = None  # classes listed per new image (default: params predict_top_k)
    model: Path | None = None  # with input, instead of checkpoint: an exported model.onnx (served.py)

    def check_model(self) -> None:
        """A checkpoint, or an exported model with --input: one of the two."""
        if self.model is None and self.checkpoint is None:
            raise VistageError("predict: --checkpoint needed (or --model with --input, for an exported model)")
        if self.model is not None and (self.checkpoint is not None or self.input is None):
            raise VistageError("predict: --model runs an exported model on new images: give it with --input, "
                               "without --checkpoint")
        if self.model is not None and self.cost is not None:
            raise VistageError("predict: --cost times the checkpoint; the export stage times the exported model "
                               "(metrics/export.json)")


@dataclass
class EvaluatePaths:
    """What the evaluate stage writes."""

    metrics: Path
    per_class: Path
    confusion: Path
    calibration: Path
    confusion_pairs: Path | None = None


@dataclass
class ReportLayout:
    title: str
    source: str  # the data source keyword the subtitle names
    sections: list  # reporting.sections.SectionBuilder, in page order


class Task:
    name: ClassVar[str]
    # settings this task does not read: dotted key (or "group." for a whole group) -> (level, why);
    # level "error" when a set value can only be a mistake, "warning" when it is merely unused
    unread: ClassVar[dict[str, tuple[str, str]]] = {}
    # registries of the task's own keywords: dotted key -> (module, attribute), imported when checked
    keyword_registries: ClassVar[dict[str, tuple[str, str]]] = {}
    # whether the export stage can write this task's model for serving (export.py)
    exportable: ClassVar[bool] = True

    def reads(self, key: str) -> bool:
        """Whether this task reads the setting `key` (dotted)."""
        return not any(key == u or (u.endswith(".") and key.startswith(u)) for u in self.unread)

    def prepare(self, params, out: Path, metrics: Path) -> str:
        raise NotImplementedError

    def split(self, params, store: Path, out: Path, metrics: Path) -> str:
        raise NotImplementedError

    def training(self, params, store: Path, split: Path) -> "TaskTraining":
        raise NotImplementedError

    def predict(self, params, paths: PredictPaths) -> str:
        raise NotImplementedError

    def evaluate(self, params, logits: Path, paths: EvaluatePaths) -> list[str]:
        raise NotImplementedError

    def report_layout(self, params) -> ReportLayout:
        raise NotImplementedError

    def report(self, params, inputs, out: Path, markdown: Path | None = None, markdown_files: Path | None = None
               ) -> str:
        """The report stage: the page of this task's layout as HTML (and markdown); what was written."""
        from ..reporting.sections import build_report, write_report

        write_report(build_report(params, inputs, self.report_layout(params)), out, markdown, markdown_files)
        return f"{out}" + (f", {markdown}" if markdown else "")

    def contradictions(self, params) -> tuple[list[str], list[str]]:
        """(errors, warnings) about settings that this task reads but that cannot work together."""
        return [], []

    def refusals(self, params) -> tuple[list[str], list[str]]:
        """(errors, warnings): every setting of `unread` that differs from its default, and the
        task's own contradictions."""
        errors, warnings = self.contradictions(params)
        now, defaults = params.model_dump(mode="json"), type(params)().model_dump(mode="json")
        for key, (level, why) in self.unread.items():
            for name, value in _set_values(now, defaults, key):
                line = f"{name}: {shown_value(value)} is not read with task: {self.name} ({why})"
                (errors if level == "error" else warnings).append(line)
        return errors, warnings


def _set_values(now: dict, defaults: dict, key: str) -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of the settings under `key` whose value in `now` (params dumped as JSON)
    differs from `defaults`."""
    for part in key.rstrip(".").split("."):
        defaults, now = defaults[part], now[part]
    if key.endswith("."):  # a whole group
        for name, value in now.items():
            if value != defaults[name]:
                yield f"{key}{name}", value
    elif now != defaults:
        yield key, now


class TaskTraining:
    """One training run's data and the hooks the engine calls (see the module's docstring).

    Rows are what the split assigns (images, or questions); `train_images` are the store rows of
    the training images (normalisation statistics and patch whitening are computed on them)."""

    store: Any  # data.store.Store
    train_rows: Any  # np.ndarray
    val_rows: Any
    train_images: Any
    num_classes: int  # the width of mixed one-hot targets (MixUp/CutMix)

    def build(self, params) -> tuple[Any, Any]:
        """(model, loss function), drawing the model's initial weights from the seeded RNG."""
        raise NotImplementedError

    def image_model(self, model):
        """The part of the model that takes the stored images alone (patch whitening, size check)."""
        return model

    def setup(self, params, c) -> None:
        """Once the engine's components `c` exist (training.Components): caches and loaders."""

    def head_on_features(self, params, c, frozen: bool):
        """The module to train instead of the whole model while the backbone is `frozen`, when its
        features are cached; None: train c.model (the cache, if any, is released when thawed)."""
        return None

    def head_data(self, params, with_val: bool = False):
        """head: solve: the cached features and labels the classifier is solved on
        (head_solve.HeadData; `with_val`: the validation images' among them, for head_refit); None
        when this task caches none."""
        return None

    def epoch_batches(self, params, generator, drop_last: bool, rank: int, world: int) -> list:
        raise NotImplementedError

    def loader(self, batches: list, params, c, worker_seed: int, on_features: bool) -> Iterator[tuple]:
        """(x, y, rows, *inputs) per batch: uint8 NHWC images (normalised and augmented by the
        engine) or feature vectors; targets; store or question rows; the model's other inputs."""
        raise NotImplementedError

    def forward(self, module, x, inputs: tuple, device):
        return module(x)

    def hits(self, logits, y):
        """Summed accuracy of a batch as a 0-d tensor on the logits' device (no host sync)."""
        return (logits.argmax(1) == y).sum().float()

    def validate(self, model, params, c) -> dict[str, float]:
        """{"val/loss": ..., "val/acc": ...} of `model` on the validation rows."""
        raise NotImplementedError

    def checkpoint_extra(self) -> dict:
        """What a checkpoint holds beyond the engine's fields (e.g. VQA's vocabularies)."""
        return {}
