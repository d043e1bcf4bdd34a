"""task: classify: one class per image.

    data.py      prepare (a source of data.source into the store) and split (stratified by class)
    training.py  the training hooks: batches of the store (per-sample augmentations, data kept on the
                 device, the frozen backbone's cached features), validation with test-time views
    predict.py   the test and validation logits, the submission, Grad-CAM and the inference cost
    evaluate.py  accuracy, F1, calibration, confusion (vistage.evaluation)
    report.py    the report's sections
"""

from ..base import EvaluatePaths, PredictPaths, ReportLayout, Task


class ClassifyTask(Task):
    name = "classify"
    unread = {"vqa.": ("warning", "the vqa: settings are task: vqa's")}

    def prepare(self, params, out, metrics) -> str:
        from .data import prepare

        return prepare(params, out, metrics)

    def split(self, params, store, out, metrics) -> str:
        from .data import split

        return split(params, store, out, metrics)

    def training(self, params, store, split):
        from .training import ClassifyTraining

        return ClassifyTraining(params, store, split)

    def predict(self, params, paths: PredictPaths) -> str:
        from .predict import predict

        return predict(params, paths)

    def evaluate(self, params, logits, paths: EvaluatePaths) -> list[str]:
        from .evaluate import evaluate

        return evaluate(logits, paths)

    def report_layout(self, params) -> ReportLayout:
        from .report import SECTIONS

        return ReportLayout("vistage report", params.data.source, SECTIONS)
