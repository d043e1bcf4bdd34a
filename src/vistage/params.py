"""The params.yaml schema: one typed, strict model of every hyperparameter.

Strict means an unknown key is an error (as in nanoGPT's configurator), so a typo such as
`lrr: 0.1` never silently trains with the default. The frequently tuned training knobs sit at
the top level so `dvc exp run -S lr=1e-4` works as written; data settings are grouped under
`data:`. Keywords (model, optimizer, ...) are checked against the registries by
`check_keywords`, which imports the component modules (and so torch) only when called.
"""

import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import VistageError, choice_error, closest
from .tasks import create_task


class _Strict(BaseModel):
    # inf and nan pass `gt=0` and similar bounds; no param has a use for them (`lr: .inf` trains
    # to a NaN loss), so every float refuses them
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


class DataParams(_Strict):
    source: str = Field("digits", description="data source keyword (`vistage list sources`)")
    # Both are dependencies of the prepare stage in dvc.yaml (${data.path}, ${data.root}): DVC hashes
    # them, so a file added, removed or edited there reruns prepare. DVC cannot template an empty
    # value, hence a real folder as the default (data/raw: where `dvc add`/`dvc import-url` put data).
    path: str = Field("data/raw", min_length=1,
                      description="the source data: folder or archive (folder), CSV file (csv), batches (cifar)")
    root: str = Field("data/raw", min_length=1,
                      description="csv: the folder the CSV's image paths are relative to and stay inside")
    csv_path_column: str = Field("path", description="csv: column of image paths")
    csv_label_column: str | None = Field("label", description="csv: column of labels (null: unlabeled)")
    csv_split_column: str | None = Field(None, description="csv: optional column of predefined splits")
    csv_group_column: str | None = Field(None, description="csv: optional column of groups kept in one split")
    image_size: int = Field(32, ge=4, le=4096, description="side of the square images in the store")
    resize: Literal["crop", "pad", "squash"] = Field(
        "crop", description="other sizes: shorter side + centre crop, pad to a square, or squash to it")
    follow_links: bool = Field(False, description="folder: read links to folders and files (also outside data.path)")
    on_bad_image: Literal["error", "skip"] = Field("error", description="unreadable images: stop, or skip and list")
    workers: int | None = Field(None, ge=1, description="decoding processes (null: one per core)")
    val_fraction: float = Field(0.15, ge=0, lt=1, description="share of the data held out for validation")
    test_fraction: float = Field(0.15, ge=0, lt=1, description="share of the data held out for testing")
    split_seed: int = Field(0, description="seed of the split, separate from the training seed")


class VqaParams(_Strict):
    """task: vqa. Question encoding, fusion and head; the image encoder is `model` as in classification."""

    # model (vqa-model)
    question_encoder: str = Field("bow", description="question encoder keyword (`vistage list question_encoders`)")
    question_finetune: bool = Field(False, description="minilm: fine-tune it (at lr * backbone_lr_scale) or keep "
                                                       "it frozen (embeddings computed once)")
    fusion: str = Field("mul", description="fusion keyword (`vistage list fusions`)")
    hidden: int = Field(512, ge=1, description="size of the fused vectors and of the head's hidden layer")
    embed_dim: int = Field(300, ge=1, description="word vector size (bow: its output; bilstm: per direction)")
    question_layers: int = Field(1, ge=1, description="bilstm and transformer layers")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout in the fusion and head (and between layers)")
    loss: str = Field("soft_bce", description="vqa loss keyword: soft_bce or cross_entropy")
    max_question_length: int = Field(30, ge=1, description="question tokens kept (the first ones)")
    min_word_count: int = Field(1, ge=1, description="word encoders: train-split count for a word to get its own "
                                                     "vector (rarer: <unk>)")
    image_grid: int = Field(0, ge=0, le=8, description="0: one pooled image vector; g: the whole image and g x g "
                                                     "regions (timm CNNs; for fusion: attention or san)")
    attention_hops: int = Field(2, ge=1, le=8, description="fusion: san: glimpses over the image, each refining the "
                                                           "query with what it saw (SAN's stacked attention)")
    heads: int = Field(1, ge=1, le=16, description="heads (question encoder, fusion, MLP) of their own random start on "
                                                   "the one image encoder, each trained on its own loss; answers "
                                                   "average their probabilities (an ensemble in one checkpoint)")

    # data (vqa-pipe)
    source: str = Field("easy-vqa", description="VQA data source keyword (`vistage list vqa_sources`)")
    questions_file: str | None = Field(
        None, description="csv/json: the questions file inside data.path (a folder or archive); "
                          "null: data.path is the questions file itself, its images under data.root")
    image_column: str = Field("image", description="csv: column of image paths")
    question_column: str = Field("question", description="csv: column of questions")
    answer_column: str | None = Field("answer", description="csv: column of answers (null: unanswered, to predict)")
    answer_type_column: str | None = Field(None, description="csv: optional column of answer types")
    top_answers: int = Field(1000, ge=1, description="answer vocabulary: the K most common train answers")
    list_answers: Literal["text", "set"] = Field(
        "text", description="a list answer (\"book, scissor\"): text, the official VQA normalization (commas dropped, "
                            "order kept); set, its items in any order, trained and scored as one answer (DAQUAR's "
                            "accuracy)")
    batch_by_image: bool = Field(False, description="train batches of whole images' questions (each image "
                                                    "encoded once per batch) instead of random questions")


PREDICTION_KEYS = ("predict_input", "predict_top_k", "gradcam_examples", "gradcam_layer", "cost_repeats")


class Params(_Strict):
    # reproducibility
    seed: int = Field(42, description="seed for python, numpy and torch")
    deterministic: bool = Field(True, description="use deterministic kernels (same metrics on rerun)")
    # model
    model: str = Field("simple_cnn", description="model keyword: any timm model or a vistage model")
    pretrained: bool | str = Field(False, description="false, true (timm hub or packaged weights) or a weights file")
    drop_rate: float = Field(0.0, ge=0, lt=1, description="dropout before the classifier")
    drop_path_rate: float = Field(0.0, ge=0, lt=1, description="stochastic depth (timm models with residual blocks)")
    small_stem: bool = Field(False, description="ResNet family: 3x3 stride-1 stem, no max-pool (small images)")
    input_size: int | None = Field(None, ge=4, le=4096,
                                   description="resize batches on the device to this side (null: the store's)")
    # transfer learning
    freeze: Literal["none", "backbone"] = Field("none", description="backbone: train only the classifier")
    freeze_epochs: int = Field(0, ge=0, description="with freeze: backbone, unfreeze after this many epochs (0: never)")
    backbone_lr_scale: float = Field(1.0, gt=0, le=1, description="backbone lr = lr * this (classifier: lr)")
    feature_norm: Literal["none", "power"] = Field(
        "none", description="the pooled features before the classifier: as they are, or power: each value's signed "
                            "square root, then the vector L2-normalized to unit RMS")
    head: str = Field("train", description="head keyword (`vistage list heads`): train the classifier by epochs, "
                                           "or solve it on the frozen backbone's cached features")
    head_refit: bool = Field(False, description="head: solve: once its L2 strength is chosen on val, solve the head "
                                                "again on the training and val images (LogisticRegressionCV's "
                                                "refit); best.pt has then seen val, so predict scores test only")
    # optimisation
    epochs: int = Field(15, ge=1, description="number of training epochs")
    batch_size: int = Field(64, ge=1, description="images per optimisation step (over all devices)")
    accumulate: int = Field(1, ge=1, description="batches whose gradients add up to one optimisation step")
    lr: float = Field(0.003, gt=0, description="(peak) learning rate")
    weight_decay: float = Field(0.0005, ge=0, description="weight decay (not on biases and norm layers)")
    momentum: float = Field(0.9, ge=0, lt=1, description="momentum for SGD-type optimizers")
    optimizer: str = Field("adamw", description="optimizer keyword")
    grad_clip: float = Field(0.0, ge=0, description="clip the gradient norm to this (0: off)")
    scheduler: str = Field("onecycle", description="learning-rate schedule keyword")
    warmup_epochs: float = Field(1.0, ge=0, description="warm-up length for cosine and onecycle")
    lr_factor: float = Field(0.1, gt=0, lt=1, description="decay factor for the step and plateau schedules")
    lr_patience: int = Field(3, ge=0, description="plateau: epochs without improvement before decaying")
    lr_step_epochs: int = Field(10, ge=1, description="step: epochs between decays")
    early_stopping_patience: int = Field(0, ge=0, description="stop after this many epochs without improvement (0: off)")
    val_every: int = Field(1, ge=1, description="validate every N epochs and after the last; best.pt, plateau and "
                                                 "early stopping then count validations")
    ema_decay: float = Field(0.0, ge=0, lt=1, description="model EMA decay, e.g. 0.999 (0: off)")
    loss: str = Field("cross_entropy", description="loss keyword")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing for cross-entropy")
    augment: list[str] = Field(default_factory=lambda: ["crop"], description="augmentation keywords, in order")
    mix_alpha: float = Field(1.0, gt=0, description="Beta(alpha, alpha) parameter of MixUp and CutMix")
    # speed
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="autocast dtype; auto: bf16 (or fp16) on CUDA, fp32 elsewhere")
    channels_last: bool = Field(False, description="NHWC memory format (faster convolutions on recent GPUs)")
    compile: bool = Field(False, description="torch.compile the model")
    num_workers: int = Field(2, ge=0, description="worker processes for per-sample augmentations (0: none)")
    max_steps_per_epoch: int = Field(0, ge=0, description="cap the batches per epoch (0: all; for smoke runs)")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="where to train")
    devices: int = Field(1, ge=1, description="processes for DistributedDataParallel (torchrun); 1: no DDP")
    threads: int = Field(0, ge=0, description="torch's CPU threads in train, predict and export (0: its default, one "
                         "per core); with dvc queue start -j N on a CPU, cores / N")

    # prediction and error analysis (the predict stage; not part of training)
    # DVC cannot template an empty value into a dependency: data/new is a real, empty folder by default
    predict_input: str = Field("data/new", min_length=1,
                               description="unlabeled images for reports/submission.csv: folder, archive or CSV")
    predict_top_k: int = Field(5, ge=1, description="classes listed per image (with probabilities) in the submission")
    gradcam_examples: int = Field(8, ge=0, description="Grad-CAM overlays of the most confident test mistakes, "
                                                       "plus a quarter as many correct images (0: off); task: vqa "
                                                       "with vqa.fusion: san: its attention over the image instead")
    gradcam_layer: str | None = Field(None, description="Grad-CAM target layer, a module path such as layer4 "
                                                        "(null: picked for the model)")
    cost_repeats: int = Field(30, ge=1, description="timed batch-1 runs for the latency in metrics/cost.json")

    # model export (read by the export stage only; not part of training)
    export: list[str] = Field(default_factory=list, description="formats the export stage writes beside model.json "
                                                                "(onnx, torchscript); empty: model.json only")

    # the report (read by the report stage only; not part of training)
    report_baseline_rev: str | None = Field(
        "HEAD", description="git revision whose metrics the report compares with (empty: no comparison)")

    # fast training (issue 11)
    feature_cache: bool = Field(True, description="frozen backbone, no augment but flip: compute its features once, "
                                                  "train the classifier on them")
    patch_whitening: bool = Field(False, description="models with a patch-whitening first layer (airbench): "
                                                     "initialise it from the training images' patch covariance")
    translate_pad: int = Field(2, ge=1, le=64, description="translate augmentation: reflect-pad by this many "
                                                          "pixels, crop back at a random offset")
    tta: list[Literal["flip", "translate"]] = Field(
        default_factory=list, description="test-time augmentation in validation and predict: average the logits "
                                          "over flipped and/or 1-pixel translated views")
    data_on_device: bool = Field(False, description="copy the training images (uint8) to the device once "
                                                    "instead of one batch at a time")
    freeze_norm: bool = Field(False, description="keep BatchNorm statistics as pretrained while fine-tuning "
                                                 "(small data, small batches)")
    calibrate: bool = Field(True, description="fit a temperature on the validation logits (post-hoc scaling): "
                                              "predict's probabilities mean what they say; false: raw softmax")
    data: DataParams = Field(default_factory=DataParams)

    # task
    task: str = Field("classify", description="task keyword (`vistage list tasks`): classify images, or answer "
                                               "questions about them (vqa, settings under vqa:)")
    vqa: VqaParams = Field(default_factory=VqaParams)

    def training_dict(self) -> dict[str, Any]:
        """Every param that shapes a trained model (stored in checkpoints to detect stale resumes);
        the prediction and report settings are not among them: changing one never restarts a training run."""
        return self.model_dump(mode="json", exclude=set(PREDICTION_KEYS) | {"report_baseline_rev", "export"})


def _suggest_key(model: type[BaseModel], key: str) -> str:
    hint = closest(key, model.model_fields)
    return f"; did you mean {hint[0]!r}?" if hint else ""


def _submodel(loc: tuple) -> type[BaseModel]:
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            break
        model = field.annotation
    return model


def _format_error(path: Path, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join(str(p) for p in loc)
    more = f" (and {err.error_count() - 1} more problem(s))" if err.error_count() > 1 else ""
    if first["type"] == "extra_forbidden":
        parent = _submodel(loc)
        valid = ", ".join(parent.model_fields)
        return (f"{path}: unknown key {key!r}{_suggest_key(parent, str(loc[-1]))} "
                f"valid keys here: {valid}{more}")
    return f"{path}: {key}: {first['input']!r} is not valid: {first['msg'].lower()}{more}"


# params key -> (module, registry) it is checked against; imported only when checked
KEYWORD_REGISTRIES = {
    "model": ("vistage.models", "MODELS"),
    "optimizer": ("vistage.optim", "OPTIMIZERS"),
    "scheduler": ("vistage.optim", "SCHEDULERS"),
    "loss": ("vistage.losses", "LOSSES"),
    "head": ("vistage.head_solve", "HEADS"),
    "augment": ("vistage.augment", "AUGMENTATIONS"),
    "data.source": ("vistage.data.sources", "SOURCES"),
}
# a task adds its own (tasks/base.py: Task.keyword_registries); the data stages check the sources
DATA_KEYWORDS = ("data.source", "vqa.source")
# the formats of `export:` (vistage/export.py writes them). Checked here, in every stage, from this
# list rather than a registry module: a registry would put the exporter's code into train's deps
EXPORT_FORMATS = {"onnx": "ONNX, for onnxruntime and most serving runtimes (model.onnx)",
                  "torchscript": "TorchScript, for PyTorch without vistage or timm (model.ts)"}


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; DVC (ruamel) refuses the file. Refuse it here too,
    so a stage never trains with a value the pipeline cannot even read."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_mapping(path: Path, missing: str = "not found") -> dict:
    """A YAML file that must hold a mapping (an empty file is an empty one); one-line errors."""
    if not path.is_file():
        raise VistageError(f"{path}: {missing}")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise VistageError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise VistageError(f"{path}: expected a mapping of keys to values, got {type(raw).__name__}")
    return raw


def check_fractions(params: Params, where: str | Path) -> None:
    """Cross-field rule the per-field schema cannot say: something must be left to train on."""
    if params.data.val_fraction + params.data.test_fraction >= 1:
        raise VistageError(f"{where}: data.val_fraction + data.test_fraction must be below 1, got "
                           f"{params.data.val_fraction} + {params.data.test_fraction}")


def check_export(params: Params, where: str | Path) -> None:
    """Every format of `export:` is a known one (a did-you-mean error, as for the keywords)."""
    for name in params.export:
        if name not in EXPORT_FORMATS:
            raise choice_error("export", name, EXPORT_FORMATS, where=str(where))


def contradictions(params: Params, where: str | Path) -> list[str]:
    """Settings that contradict each other: an error when they can only be a mistake, a returned
    one-line warning when the run is legitimate but a setting does nothing in it."""
    p, errors, warnings = params, [], []
    if p.freeze == "none" and p.freeze_epochs:
        errors.append(f"freeze_epochs: {p.freeze_epochs} does nothing with freeze: none (set freeze: backbone "
                      "for a two-stage run, or freeze_epochs: 0)")
    if p.freeze == "backbone" and p.freeze_epochs >= p.epochs:
        errors.append(f"freeze_epochs: {p.freeze_epochs} is not below epochs: {p.epochs}, so the backbone never "
                      "unfreezes (freeze_epochs: 0 is a linear probe)")
    if p.freeze_norm and p.pretrained is False:
        errors.append("freeze_norm: true keeps BatchNorm statistics as pretrained, but pretrained: false trains "
                      "from scratch: they would stay at their initial values (set freeze_norm: false)")
    if p.model == "simple_cnn" and p.drop_path_rate:
        errors.append("drop_path_rate: simple_cnn has no stochastic depth (set drop_path_rate: 0)")
    errors += _head_solve_errors(p)
    if errors:
        raise VistageError(f"{where}: {errors[0]}")
    solve_only = p.head == "solve" and not p.freeze_epochs  # one solve, no optimizer step: no schedule to warn of
    if p.scheduler in ("onecycle", "cosine") and p.warmup_epochs >= p.epochs and not solve_only:
        warnings.append(f"warmup_epochs: {p.warmup_epochs} is not below epochs: {p.epochs}; "
                        + ("onecycle warms up over half the run instead" if p.scheduler == "onecycle"
                           else "the cosine decay never starts"))
    if p.scheduler == "step" and p.lr_step_epochs >= p.epochs:
        warnings.append(f"lr_step_epochs: {p.lr_step_epochs} is not below epochs: {p.epochs}: the step schedule "
                        "never decays the learning rate")
    if p.early_stopping_patience >= p.epochs:
        warnings.append(f"early_stopping_patience: {p.early_stopping_patience} is not below epochs: {p.epochs}: "
                        "training can never stop early")
    if p.freeze == "backbone" and not p.freeze_epochs and p.backbone_lr_scale != 1:
        warnings.append(f"backbone_lr_scale: {p.backbone_lr_scale} does nothing in a linear probe (freeze: "
                        "backbone, freeze_epochs: 0): the backbone never trains")
    task_errors, task_warnings = create_task(p.task, str(where)).refusals(p)  # what this task does not read
    if task_errors:
        raise VistageError(f"{where}: {task_errors[0]}")
    return [f"{where}: {w}" for w in warnings + task_warnings]


def _head_solve_errors(p: Params) -> list[str]:
    """head: solve fits the classifier on cached features of a frozen backbone in one pass (the
    first epoch): anything that prevents the cache, or frozen epochs after the solve, is a mistake."""
    if p.head_refit and p.head != "solve" and create_task(p.task).reads("head"):
        return [f"head_refit: true refits the head that head: solve solved, and head is {p.head}: set head: solve, "
                "or head_refit: false"]
    if p.head != "solve" or not create_task(p.task).reads("head"):  # a task that has no such head refuses it
        return []
    from .feature_cache import CACHEABLE_AUGMENT  # imports torch: only with head: solve, whose stage trains

    if p.freeze != "backbone":
        return ["head: solve fits the classifier on a frozen backbone's cached features: set freeze: backbone "
                "(with freeze_epochs: 1 to fine-tune everything after the solve)"]
    if not p.feature_cache:
        return ["head: solve needs the frozen backbone's cached features: set feature_cache: true"]
    if other := [a for a in p.augment if a not in CACHEABLE_AUGMENT]:
        return [f"head: solve needs cached features, which augment: {other} changes every epoch "
                "(set augment: [] or [flip])"]
    if p.devices > 1:
        return ["head: solve runs on one process (the features are cached once): set devices: 1"]
    if p.freeze_epochs > 1 or (p.freeze_epochs == 0 and p.epochs > 1):
        return [f"head: solve makes the frozen stage one epoch (the solve), so freeze_epochs: {p.freeze_epochs} "
                f"with epochs: {p.epochs} would repeat it: set freeze_epochs: 1 to fine-tune after it, or "
                "freeze_epochs: 0 with epochs: 1 for a linear probe"]
    if p.head_refit and p.freeze_epochs:
        return ["head_refit: true trains the head on the val images too, so the fine-tuning after the solve "
                "(freeze_epochs: 1) could not be judged on val: set head_refit: false to fine-tune, or "
                "freeze_epochs: 0 with epochs: 1"]
    return []


def load_params(path: str | Path = "params.yaml", keywords: tuple[str, ...] | None = None) -> Params:
    """Read and validate params.yaml; raise VistageError with one line on any problem.

    Every stage validates the whole file (types, ranges, unknown keys) and the task keyword;
    `keywords` names the registry keywords the calling stage uses, checked too (None: every one,
    the task's included: the training stage). Checking the model or optimizer imports torch and
    timm, which the data stages do not need.
    """
    path = Path(path)
    raw = read_mapping(path, missing="params file not found")
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise VistageError(_format_error(path, err)) from None
    check_fractions(params, path)
    check_export(params, path)
    create_task(params.task, str(path))  # an unknown task is the usual one-line error
    check_keywords(params, keywords, where=str(path))
    if keywords is None or "model" in keywords:  # the stages that train: the training settings must agree
        for warning in contradictions(params, path):
            print(f"warning: {warning}", file=sys.stderr)
    return params


def check_keywords(params: Params, keywords: tuple[str, ...] | None = None, where: str = "params.yaml") -> None:
    """Check the named keyword params (None: all) against their registries: the shared ones and
    the task's; a keyword of a group the task does not read is not checked."""
    import importlib

    task = create_task(params.task, where)
    registries = {**KEYWORD_REGISTRIES, **task.keyword_registries}
    for key in registries if keywords is None else keywords:
        if key not in registries or not task.reads(key):
            continue
        module, attr = registries[key]
        registry = getattr(importlib.import_module(module), attr)
        value = params.model_dump()
        for part in key.split("."):
            value = value[part]
        for name in value if isinstance(value, list) else [value]:
            registry.check(name, key, where)
    if keywords is None or "augment" in keywords:
        from .augment import check_augment

        check_augment(params.augment, where)
