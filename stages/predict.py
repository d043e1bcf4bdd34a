"""predict: run the best checkpoint once over the test and validation images and keep their
logits for evaluate and report; with the model at hand, also predict the unlabeled images (a
submission), draw Grad-CAM overlays and measure what inference costs on this machine."""

from pathlib import Path
from typing import Annotated

import typer

from vistage.command import ParamsFile, run, single_command


def predict(params: ParamsFile,
            checkpoint: Annotated[Path, typer.Option(help="the checkpoint to predict with")],
            out: Annotated[Path, typer.Option(help="predictions table to write (CSV, one row per image)")],
            store: Annotated[Path | None, typer.Option(help="the prepared store to read")] = None,
            split: Annotated[Path | None, typer.Option(help="the split table to read")] = None,
            logits: Annotated[Path | None, typer.Option(help="logits, labels, splits and class names of the test "
                                                             "and validation images to write (.npz)")] = None,
            submission: Annotated[Path | None, typer.Option(
                help="with --store: predictions of the unlabeled images to write (CSV: the split's unlabeled rows "
                     "and the images at params predict_input)")] = None,
            gradcam: Annotated[Path | None, typer.Option(
                help="with --store: folder of Grad-CAM overlays to write (PNGs and index.csv)")] = None,
            cost: Annotated[Path | None, typer.Option(
                help="inference latency and throughput on this machine to write (JSON)")] = None,
            input: Annotated[Path | None, typer.Option(help="instead: new images to predict (a folder or archive "
                                                            "of images, or a CSV of paths)")] = None,
            top_k: Annotated[int | None, typer.Option(
                help="the classes listed per new image (default: params predict_top_k)", min=1)] = None,
            ) -> None:
    """One row per test image (id, label, predicted class, confidence, correct; the validation
    images when there is no test split), and the raw logits of the test and validation images;
    optionally the submission of the unlabeled images, Grad-CAM overlays of the most confident
    test mistakes (and a few correct images), and the inference cost on this machine.

    With --input: one row per new image (id, predicted class, confidence, the top-k classes and
    their probabilities), decoded and resized as the checkpoint's store was."""
    from vistage.inference import TrainedModel
    from vistage.params import load_params
    from vistage.runtime import resolve_device

    p = load_params(params, keywords=())
    top_k = top_k or p.predict_top_k
    if input is None:
        missing = [f"--{name}" for name, value in (("store", store), ("split", split), ("logits", logits))
                   if value is None]
        if missing:
            from vistage.errors import VistageError

            raise VistageError(f"predict: {', '.join(missing)} needed (or --input PATH to predict new images)")
    trained = TrainedModel(checkpoint, resolve_device(p.device))
    if input is not None:
        _predict_new_images(p, trained, input, out, top_k)
    else:
        _predict_store(p, trained, checkpoint, store, split, out, logits, submission, gradcam, top_k)
    if cost is not None:
        _measure_cost(p, trained, cost)


def _predict_store(p, trained, checkpoint: Path, store: Path, split: Path, out: Path, logits: Path,
                   submission: Path | None, gradcam: Path | None, top_k: int) -> None:
    """Everything that can fail on the user's input (predict_input, its images, gradcam_layer,
    the classes) fails before the first output is written."""
    from vistage.data.store import load_store
    from vistage.errors import VistageError
    from vistage.evaluation import predict_splits
    from vistage.io import atomic_path

    if submission is not None and not Path(p.predict_input).exists():
        raise VistageError(f"predict_input: {p.predict_input} does not exist")
    if gradcam is not None and p.gradcam_examples:
        from vistage.gradcam import target_layer

        target_layer(trained.model, p.gradcam_layer)
    data = load_store(store)
    pred = predict_splits(trained, data, split, checkpoint, store)
    unlabeled, summary = _submission(p, trained, data, split, top_k) if submission is not None else (None, "")
    headline = pred.of(pred.headline)
    with atomic_path(out) as tmp:
        headline.table().to_csv(tmp, index=False)
    pred.save(logits)
    counts = ", ".join(f"{len(pred.of(name).index)} {name}" for name in pred.split_names)
    typer.echo(f"predict: {counts} images -> {out} ({pred.headline}), {logits}")
    if unlabeled is not None:
        with atomic_path(submission) as tmp:
            unlabeled.to_csv(tmp, index=False)
        typer.echo(f"predict: {summary} -> {submission}")
    if gradcam is not None:
        from vistage.gradcam import write_gradcam

        written = write_gradcam(trained, data.images, headline, gradcam, p.gradcam_examples, p.gradcam_layer)
        typer.echo(f"predict: {written} Grad-CAM overlays ({pred.headline}) -> {gradcam}")


def _submission(p, trained, data, split: Path, top_k: int):
    """The split's unlabeled rows (their store ids), then the images at predict_input (their
    paths): (table, a summary for the log)."""
    import numpy as np
    import pandas as pd

    from vistage.data.split import load_split
    from vistage.new_images import logits_with_progress, predict_new, top_k_table

    table = load_split(split)
    rows = table.loc[table["split"] == "unlabeled", "index"].to_numpy(np.int64)
    logits, rows = logits_with_progress(trained, data.images, rows, f"{len(rows)} unlabeled images")
    from_split = top_k_table(data.samples["id"].to_numpy(str)[rows].tolist(), logits, trained.classes, top_k)
    new, bad = predict_new(trained, Path(p.predict_input), p.data.on_bad_image, p.data.csv_path_column, top_k,
                           option="predict_input", empty_ok=True)
    skipped = f", {len(bad)} bad files skipped (first: {bad[0][0]})" if bad else ""
    return (pd.concat([from_split, new], ignore_index=True),
            f"{len(from_split)} unlabeled images of the split, {len(new)} from {p.predict_input}{skipped}")


def _predict_new_images(p, trained, input: Path, out: Path, top_k: int) -> None:
    from vistage.io import atomic_path
    from vistage.new_images import predict_new

    table, bad = predict_new(trained, input, p.data.on_bad_image, p.data.csv_path_column, top_k)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    skipped = f", {len(bad)} bad files skipped (first: {bad[0][0]})" if bad else ""
    typer.echo(f"predict: {len(table)} images from {input}{skipped} -> {out}")


def _measure_cost(p, trained, path: Path) -> None:
    """Latency and throughput with the checkpoint's model, batch size, precision and memory format."""
    from vistage.cost import measure_cost
    from vistage.io import write_json

    trained_with = trained.params
    result = measure_cost(trained, trained_with["model"], trained_with["batch_size"],
                          p.cost_repeats, trained_with.get("precision", "auto"),
                          bool(trained_with.get("channels_last", False)))
    write_json(path, result)
    typer.echo(f"predict: batch-1 latency p50 {result['latency_ms_p50']:.2f} ms, p95 {result['latency_ms_p95']:.2f} "
               f"ms, {result['throughput_img_s']:.0f} images/s at batch {result['batch_size']} on "
               f"{result['device']} -> {path}")


app = single_command(predict)

if __name__ == "__main__":
    run(app)
