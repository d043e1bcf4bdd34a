"""task: vqa's report: the sections of its page, around the shared ones (reporting/sections.py): the VQA metrics
per split and per answer type, answerability, their change since the baseline revision, the
learning curves, a gallery of wrong answers (image, question, expected, predicted, confidence,
score), most confident first, and with vqa.fusion: san, where the model looked for each question
(the predict stage's attention overlays)."""

import numpy as np

from ...reporting.blocks import Card, Gallery, Section, Table, Text
from ...reporting.charts import png_bytes
from ...reporting.sections import (change_section, curves_section, overlay_section, params_section, read_csv,
                                   read_json, metrics_by_split, scores_heading, store_images, training_section)

WRONG_ANSWERS = 24


# eval.json's nested scores (metrics.py), each a table of its own under the split's own scores
NESTED = (("VQA accuracy per answer type", "per_answer_type.", "answer type"),
          ("Questions whose answer is one item, not a list (DAQUAR's published figures are on these)",
           "single_answer.", "metric"),
          ("Answerability", "answerability.", "metric"))


def vqa_metrics_section(params, inputs) -> Section:
    splits = metrics_by_split(read_json(inputs.metrics))
    blocks = []

    def shown(key: str, prefix: str) -> bool:  # "": the split's own scores (wups_0.9 has a dot of its own)
        return key.startswith(prefix) if prefix else not any(key.startswith(n) for _, n, _ in NESTED)

    for title, prefix, name in (("", "", "metric"), *NESTED):
        keys = sorted({k for m in splits.values() for k in m if shown(k, prefix)})
        if keys:
            rows = [[k[len(prefix):], *(m.get(k, "") for m in splits.values())] for k in keys]
            blocks += ([Text(title)] if title else []) + [Table([name, *splits], rows)]
    title, note = scores_heading(splits)
    return Section(title, note + blocks)


def wrong_answers_section(params, inputs) -> Section | None:
    if not inputs.predictions.is_file():
        return None
    predictions = read_csv(inputs.predictions, ("question", "answer", "confidence", "expected", "score", "image_index"),
                       dtype=str)
    answered = predictions[predictions["expected"] != ""]
    wrong = answered[answered["score"].astype(float) < 1]
    if answered.empty or wrong.empty:
        return Section("Wrong answers", [Text(f"All {len(answered)} answers right." if len(answered) else
                                              "No answered questions to compare with.")])
    shown = wrong.assign(confidence=wrong["confidence"].astype(float)).sort_values(
        "confidence", ascending=False, kind="stable").head(WRONG_ANSWERS)
    images = store_images(inputs.store)
    cards = [Card(png_bytes(np.asarray(images[int(r.image_index)])) if images is not None else None, r.question,
                  r.expected, r.answer, r.confidence, note=f"score {float(r.score):.2f}") for r in shown.itertuples()]
    text = f"{len(wrong)} of {len(answered)} answers not fully right; the {len(cards)} most confident:"
    return Section("Wrong answers", [Text(text), Gallery("wrong_answer", cards)])


def attention_section(params, inputs) -> Section | None:
    """The predict stage's attention overlays (attention.py), with vqa.fusion: san only: other
    fusions do not look at places."""
    if inputs.gradcam is None or params.vqa.fusion != "san":
        return None
    hops = params.vqa.attention_hops
    intro = (f"Each question's image beside the attention of the last of {hops} hop{'s' * (hops > 1)} over the "
             "image's cells (vqa.fusion: san): red cells weigh most in the answer.")
    return overlay_section(inputs.gradcam, "Where the model looked", intro,
                           (("mistake", "Most confident wrong answers:"), ("correct", "Right answers:")),
                           "attention", "No examples (gradcam_examples: 0, or no answered test questions).")


SECTIONS = [vqa_metrics_section, change_section, training_section, curves_section, wrong_answers_section,
            attention_section, params_section]
