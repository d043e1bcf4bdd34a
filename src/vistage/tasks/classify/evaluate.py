"""task: classify's evaluate: the scores of the logits predict wrote (vistage.evaluation)."""

from pathlib import Path

from ... import evaluation
from ..base import EvaluatePaths


def evaluate(logits: Path, paths: EvaluatePaths) -> list[str]:
    """Metrics of each split, and the per-class, confusion and reliability tables of the headline
    split; a line per split."""
    evaluation.check_predictions_task(logits, "classify")
    pred = evaluation.Predictions.load(logits)
    summary = evaluation.split_metrics(pred)
    headline = pred.of(pred.headline)
    tables = [(paths.per_class, evaluation.per_class_table(headline)),
              (paths.confusion, evaluation.confusion_rows(headline)),
              (paths.calibration, evaluation.calibration_bins(headline))]
    if paths.confusion_pairs is not None:
        tables.append((paths.confusion_pairs, evaluation.confusion_pairs(headline)))
    evaluation.write_tables(tables, paths.metrics, summary)
    return [f"{name}, {m['images']} images: accuracy {m['accuracy']:.4f}, macro F1 {m['f1_macro']:.4f}, "
            f"ECE {m['ece']:.4f}{_calibrated(m)}" for name, m in summary.items()] + evaluation.fit_note(summary)


def _calibrated(m: dict) -> str:
    return "" if m["temperature"] == 1.0 else \
        f" (temperature {m['temperature']:.3g}; {m['ece_uncalibrated']:.4f} without it)"
