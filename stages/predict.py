"""predict: run the best checkpoint once over the test and validation images; keep their logits
for evaluate and report."""

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
            input: Annotated[Path | None, typer.Option(help="instead: new images to predict (a folder or archive "
                                                            "of images, or a CSV of paths)")] = None,
            top_k: Annotated[int, typer.Option(help="with --input: the classes listed per image", min=1)] = 5,
            submission: Annotated[Path | None, typer.Option(help="submission JSON to write: [{image, answer}] of "
                                                                 "the headline split (VizWiz's format; task: vqa: "
                                                                 "the unanswered questions when there are any)")]
            = None,
            images: Annotated[Path | None, typer.Option(help="task: vqa with --input QUESTIONS.json/.csv: the folder "
                                                             "or archive of their images (default: the file's "
                                                             "folder)")] = None,
            ) -> None:
    """One row per test image (id, label, predicted class, confidence, correct; the validation
    images when there is no test split), and the raw logits of the test and validation images.

    With --input: one row per new image (id, predicted class, confidence, the top-k classes and
    their probabilities), decoded and resized as the checkpoint's store was.

    task: vqa: one row per test question (and per unanswered question): its answer, confidence,
    the expected answer and its VQA score; the submission JSON; what evaluate scores. With --input
    QUESTIONS.json (VizWiz's test file, no answers needed) or .csv and --images: those questions."""
    from vistage.io import atomic_path
    from vistage.params import load_params
    from vistage.vqa.predict import predict_new_questions, predict_questions, write_outputs  # both tasks: one deps set

    p = load_params(params, keywords=())
    if input is not None and p.task == "vqa":
        pred = predict_new_questions(checkpoint, input, images, p)
        return typer.echo(f"predict: {write_outputs(pred, out, submission)}")
    if input is not None:
        return _predict_new_images(p, checkpoint, input, out, top_k)
    missing = [f"--{name}" for name, value in (("store", store), ("split", split), ("logits", logits)) if value is None]
    if missing:
        from vistage.errors import VistageError

        raise VistageError(f"predict: {', '.join(missing)} needed (or --input PATH to predict new images)")
    if p.task == "vqa":
        pred = predict_questions(checkpoint, store, split, p.device)
        pred.save(logits)
        return typer.echo(f"predict: {write_outputs(pred, out, submission)}, {logits}")
    from vistage.evaluation import predict_splits

    pred = predict_splits(checkpoint, store, split, p.device)
    headline = pred.of(pred.headline)
    with atomic_path(out) as tmp:
        headline.table().to_csv(tmp, index=False)
    if submission is not None:
        from vistage.io import write_json

        answers = headline.classes[headline.predicted]
        write_json(submission, [{"image": i, "answer": a} for i, a in zip(headline.ids.tolist(), answers.tolist())])
    pred.save(logits)
    counts = ", ".join(f"{len(pred.of(name).index)} {name}" for name in pred.split_names)
    typer.echo(f"predict: {counts} images -> {out} ({pred.headline}), {logits}")


def _predict_new_images(p, checkpoint: Path, input: Path, out: Path, top_k: int) -> None:
    from vistage.io import atomic_path
    from vistage.new_images import predict_images

    table, bad = predict_images(checkpoint, input, p.device, p.data.on_bad_image, p.data.csv_path_column, top_k)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    skipped = f", {len(bad)} bad files skipped (first: {bad[0][0]})" if bad else ""
    typer.echo(f"predict: {len(table)} images from {input}{skipped} -> {out}")


app = single_command(predict)

if __name__ == "__main__":
    run(app)
