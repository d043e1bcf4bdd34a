"""predict: run the best checkpoint once over the test and validation rows and keep what evaluate and
report read; with the model at hand, also the submission, Grad-CAM overlays and the inference cost."""

from pathlib import Path
from typing import Annotated

import typer

from vistage.command import ParamsFile, run, single_command

Opt = typer.Option


def predict(params: ParamsFile,
            # optional for --model; `out` stays second and required (Typer reads the Ellipsis so)
            checkpoint: Annotated[Path | None, Opt(help="the checkpoint to predict with (or --model)")] = None,
            out: Annotated[Path, Opt(help="predictions table to write (CSV: one row per test image or "
                                          "question)")] = ...,
            store: Annotated[Path | None, Opt(help="the prepared store to read")] = None,
            split: Annotated[Path | None, Opt(help="the split table to read")] = None,
            logits: Annotated[Path | None, Opt(help="what evaluate scores, to write (.npz: the test and "
                                                    "validation rows)")] = None,
            submission: Annotated[Path | None, Opt(help="with --store: predictions of the unlabeled rows (CSV: "
                                                        "the split's and those at params predict_input)")] = None,
            gradcam: Annotated[Path | None, Opt(help="with --store: Grad-CAM overlays to write (a folder; task: "
                                                     "vqa: vqa.fusion: san's attention)")] = None,
            cost: Annotated[Path | None, Opt(help="inference latency and throughput to write (JSON)")] = None,
            input: Annotated[Path | None, Opt(help="instead: new data to predict (images: a folder, archive or CSV "
                                                   "of paths; task: vqa: a questions .json or .csv)")] = None,
            top_k: Annotated[int | None, Opt(help="classes listed per new image (default: params predict_top_k)",
                                             min=1)] = None,
            submission_json: Annotated[Path | None, Opt(help="with --store: the submission as [{image, answer}] "
                                                             "(VizWiz's format)")] = None,
            images: Annotated[Path | None, Opt(help="task: vqa with --input: the folder or archive of its images "
                                                    "(default: the file's folder)")] = None,
            model: Annotated[Path | None, Opt(help="with --input, instead of --checkpoint: an exported model.onnx "
                                                   "(model.json beside it), run by onnxruntime")] = None,
            ) -> None:
    """Predictions of the test images or questions (the validation ones when there is no test
    split, the training ones when neither) and what evaluate scores; the submission of the
    unlabeled rows; Grad-CAM overlays of the most confident test mistakes (vqa.fusion: san: its
    attention over the image); the inference cost on this machine. With --input: new data,
    decoded and resized as the checkpoint's store was; with --model, by the exported ONNX model."""
    from vistage.params import load_params
    from vistage.runtime import use_threads
    from vistage.tasks import PredictPaths, create_task

    p = load_params(params, keywords=())
    use_threads(p.threads)  # with dvc queue start -j N on a CPU: cores / N each
    paths = PredictPaths(checkpoint, out, store, split, logits, submission, submission_json, gradcam, cost, input,
                         images, top_k, model)
    paths.check_model()
    typer.echo(f"predict: {create_task(p.task).predict(p, paths)}")


app = single_command(predict)

if __name__ == "__main__":
    run(app)
