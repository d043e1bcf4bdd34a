"""task: classify's predict: the best checkpoint run once over the test and validation images
(their logits for evaluate and report); with the model at hand, also the submission of the
unlabeled images, Grad-CAM overlays and what inference costs on this machine. Or, with
`--input`, the top-k classes of new images."""

from pathlib import Path

from ...errors import VistageError
from ...io import atomic_path
from ..base import PredictPaths


def predict(p, paths: PredictPaths) -> str:
    """Everything asked for in `paths`; a summary of what was written."""
    from ...inference import TrainedModel
    from ...runtime import resolve_device

    top_k = paths.top_k or p.predict_top_k
    if paths.input is None:
        missing = [f"--{name}" for name, value in (("store", paths.store), ("split", paths.split),
                                                   ("logits", paths.logits)) if value is None]
        if missing:
            raise VistageError(f"predict: {', '.join(missing)} needed (or --input PATH to predict new images)")
    if paths.images is not None:
        raise VistageError("predict: --images is task: vqa's (the images of a questions file); task: classify "
                           "reads its images from --input")
    if paths.model is not None:  # an exported model, through onnxruntime (checked: with --input)
        from ...served import OnnxModel

        return _predict_new_images(p, OnnxModel(paths.model), paths.input, paths.out, top_k)
    trained = TrainedModel(paths.checkpoint, resolve_device(p.device))
    if paths.input is not None:
        done = [_predict_new_images(p, trained, paths.input, paths.out, top_k)]
    else:
        done = _predict_store(p, trained, paths, top_k)
    if paths.cost is not None:
        done.append(_measure_cost(p, trained, paths.cost))
    return "; ".join(done)


def _predict_store(p, trained, paths: PredictPaths, top_k: int) -> list[str]:
    """Everything that can fail on the user's input (predict_input, its images, gradcam_layer,
    the classes) fails before the first output is written."""
    from ...data.store import load_store
    from ...evaluation import REFIT_NOTE, fit_note, predict_splits

    if paths.submission is not None and not Path(p.predict_input).exists():
        raise VistageError(f"predict_input: {p.predict_input} does not exist")
    if paths.gradcam is not None and p.gradcam_examples:
        from ...gradcam import target_layer

        target_layer(trained.model, p.gradcam_layer)
    data = load_store(paths.store)
    pred = predict_splits(trained, data, paths.split, paths.checkpoint, paths.store)
    unlabeled, summary = _submission(p, trained, data, paths.split, top_k) if paths.submission is not None \
        else (None, "")
    headline = pred.of(pred.headline)
    with atomic_path(paths.out) as tmp:
        headline.table().to_csv(tmp, index=False)
    pred.save(paths.logits)
    counts = ", ".join(f"{len(pred.of(name).index)} {name}" for name in pred.split_names)
    done = [f"{counts} images -> {paths.out} ({pred.headline}), {paths.logits}", *fit_note(pred.split_names)]
    if trained.params.get("head_refit"):
        done.insert(1, REFIT_NOTE)
    if unlabeled is not None:
        with atomic_path(paths.submission) as tmp:
            unlabeled.to_csv(tmp, index=False)
        done.append(f"{summary} -> {paths.submission}")
        if paths.submission_json is not None:
            from ...io import write_json

            answers = unlabeled.rename(columns={"id": "image", "predicted": "answer"})
            write_json(paths.submission_json, answers[["image", "answer"]].to_dict("records"))
    if paths.gradcam is not None:
        from ...gradcam import write_gradcam

        written = write_gradcam(trained, data.images, headline, paths.gradcam, p.gradcam_examples, p.gradcam_layer)
        done.append(f"{written} Grad-CAM overlays ({pred.headline}) -> {paths.gradcam}")
    return done


def _submission(p, trained, data, split: Path, top_k: int):
    """The split's unlabeled rows (their store ids), then the images at predict_input (their
    paths): (table, a summary for the log)."""
    import numpy as np
    import pandas as pd

    from ...data.split import load_split
    from ...new_images import logits_with_progress, predict_new, top_k_table

    table = load_split(split)
    rows = table.loc[table["split"] == "unlabeled", "index"].to_numpy(np.int64)
    logits, rows = logits_with_progress(trained, data.images, rows, f"{len(rows)} unlabeled images")
    from_split = top_k_table(data.samples["id"].to_numpy(str)[rows].tolist(), logits, trained.classes, top_k,
                             trained.temperature)
    new, bad = predict_new(trained, Path(p.predict_input), p.data.on_bad_image, p.data.csv_path_column, top_k,
                           option="predict_input", empty_ok=True)
    skipped = f", {len(bad)} bad files skipped (first: {bad[0][0]})" if bad else ""
    return (pd.concat([from_split, new], ignore_index=True),
            f"{len(from_split)} unlabeled images of the split, {len(new)} from {p.predict_input}{skipped}")


def _predict_new_images(p, trained, input: Path, out: Path, top_k: int) -> str:
    from ...new_images import predict_new

    table, bad = predict_new(trained, input, p.data.on_bad_image, p.data.csv_path_column, top_k)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    skipped = f", {len(bad)} bad files skipped (first: {bad[0][0]})" if bad else ""
    return f"{len(table)} images from {input}{skipped} -> {out}"


def _measure_cost(p, trained, path: Path) -> str:
    """Latency and throughput with the checkpoint's model, batch size, precision and memory format."""
    from ...cost import measure_cost
    from ...io import write_json

    trained_with = trained.params
    result = measure_cost(trained, trained_with["model"], trained_with["batch_size"],
                          p.cost_repeats, trained_with.get("precision", "auto"),
                          bool(trained_with.get("channels_last", False)))
    write_json(path, result)
    return (f"batch-1 latency p50 {result['latency_ms_p50']:.2f} ms, p95 {result['latency_ms_p95']:.2f} ms, "
            f"{result['throughput_img_s']:.0f} images/s at batch {result['batch_size']} on {result['device']} "
            f"-> {path}")
