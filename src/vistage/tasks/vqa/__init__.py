"""task: vqa: answer questions about images.

    sources.py, data.py   VQA sources (vqa.source), the store plus questions.csv, the split grouped by image
    answers.py, questions.py   answer normalization, the official VQA accuracy, question tokens (no torch)
    model.py, losses.py, features.py   question encoders, fusions, the answer head, losses, cached image features
    training.py  the training hooks: batches of questions and their images, validation with test-time views
    predict.py, stream.py   the answers of the test, validation and unanswered questions (each image encoded
                 once), the submission
    attention.py  where vqa.fusion: san looked: the report's overlays
    metrics.py   VQA accuracy, per answer type, answerability
    report.py    the report's sections
"""

from ..base import EvaluatePaths, PredictPaths, ReportLayout, Task

MIXES = ("mixup", "cutmix", "mixup_cutmix")
_NOT_GRADCAM = "Grad-CAM and the inference cost are task: classify's; vqa.fusion: san shows its own attention"


class VqaTask(Task):
    name = "vqa"
    exportable = False  # the export stage writes classifiers only (its model.json says so)
    keyword_registries = {
        "vqa.source": ("vistage.tasks.vqa.sources", "VQA_SOURCES"),
        "vqa.question_encoder": ("vistage.tasks.vqa.model", "QUESTION_ENCODERS"),
        "vqa.fusion": ("vistage.tasks.vqa.model", "FUSIONS"),
        "vqa.loss": ("vistage.tasks.vqa.losses", "VQA_LOSSES"),
    }
    unread = {
        "data.source": ("warning", "its data source is vqa.source"),
        "data.csv_path_column": ("warning", "the questions file's columns are vqa.image_column, vqa.question_column, "
                                            "vqa.answer_column"),
        "data.csv_label_column": ("warning", "the answers are vqa.answer_column"),
        "data.csv_split_column": ("warning", "the questions keep their source's split"),
        "data.csv_group_column": ("warning", "questions are grouped by image"),
        "loss": ("warning", "its loss is vqa.loss"),
        "head": ("error", "its head is the fusion and MLP, trained by epochs"),
        "head_refit": ("error", "its head is the fusion and MLP, trained by epochs (head: solve is classify's)"),
        "feature_norm": ("error", "the image vector feeds the fusion as it is (normalizing it lost 0.4-1.5 points "
                                  "on DAQUAR: recipes/README.md)"),
        "mix_alpha": ("warning", "mixing is refused with task: vqa"),
        "data_on_device": ("warning", "VQA batches read each question's image from the store, or its cached "
                                      "features"),
        "predict_top_k": ("warning", "the submission holds one answer per question"),
        "gradcam_layer": ("warning", _NOT_GRADCAM),
        "cost_repeats": ("warning", _NOT_GRADCAM),
        "calibrate": ("warning", "its answer scores are per-answer sigmoids (vqa.loss soft_bce) or the softmax as "
                                 "trained; a temperature is fitted for task: classify only"),
        "export": ("error", "exporting a VQA model is not supported yet: vistage exports classifiers only; set "
                            "export: []"),
    }

    def contradictions(self, params) -> tuple[list[str], list[str]]:
        errors, warnings = [], []
        mixed = [name for name in params.augment if name in MIXES]
        if mixed:
            errors.append(f"augment: {mixed[0]!r} does not work with task: vqa (mixing two images leaves no answer "
                          "to the question); the others do")
        if "flip" in params.tta:
            errors.append("tta: 'flip' does not work with task: vqa (a mirrored image swaps left and right in the "
                          "questions); translate does")
        if params.label_smoothing and params.vqa.loss != "cross_entropy":
            warnings.append(f"label_smoothing: {params.label_smoothing} is read by vqa.loss: cross_entropy only "
                            f"(vqa.loss is {params.vqa.loss})")
        if params.vqa.question_finetune and params.vqa.question_encoder != "minilm":
            warnings.append(f"vqa.question_finetune: true is read by vqa.question_encoder: minilm only (the "
                            f"{params.vqa.question_encoder} encoder always trains)")
        hops = type(params.vqa).model_fields["attention_hops"].default
        if params.vqa.attention_hops != hops and params.vqa.fusion != "san":
            warnings.append(f"vqa.attention_hops: {params.vqa.attention_hops} is read by vqa.fusion: san only "
                            f"(vqa.fusion is {params.vqa.fusion})")
        examples = type(params).model_fields["gradcam_examples"].default
        if params.gradcam_examples != examples and params.vqa.fusion != "san":
            warnings.append(f"gradcam_examples: {params.gradcam_examples} is read by vqa.fusion: san only (its "
                            f"attention overlays; vqa.fusion is {params.vqa.fusion})")
        return errors, warnings

    def prepare(self, params, out, metrics) -> str:
        from .data import prepare

        return prepare(params, out, metrics)

    def split(self, params, store, out, metrics) -> str:
        from .data import split

        return split(params, store, out, metrics)

    def training(self, params, store, split):
        from .training import VqaTraining

        return VqaTraining.load(params, store, split)

    def predict(self, params, paths: PredictPaths) -> str:
        from .predict import predict

        return predict(params, paths)

    def evaluate(self, params, logits, paths: EvaluatePaths) -> list[str]:
        from .metrics import evaluate

        return evaluate(logits, paths, params.vqa.list_answers)

    def report_layout(self, params) -> ReportLayout:
        from .report import SECTIONS

        return ReportLayout("vistage report: visual question answering", params.vqa.source, SECTIONS)
