"""The export stage: the trained model as files a server runs without vistage, checked against
PyTorch on the test images.

models/export/ (one DVC output whatever `export:` lists) holds model.json, always: the classes,
the preprocessing (image size, resize rule, mean, std), the temperature and the files; and one
file per format of `export:`: model.onnx (torch.onnx.export, the torch.export-based exporter,
which torch recommends and which also exports the antialiased resize the legacy one refuses) and
model.ts (torch.jit.trace).

The exported graph takes the normalised float32 NCHW image at the store's size and returns the
logits that predict computes: the resize to `input_size` and the test-time views it was
validated with (tta) are inside it. Normalisation is left outside, with its mean and std in
model.json, as timm models and most serving code expect. Batch size is dynamic.

metrics/export.json: per format, top-1 agreement with PyTorch on every test image (the ones
that disagree listed), the largest absolute logit difference, and batch-1 latency beside eager
PyTorch's measured in the same process, same input, same moment (so the ratio compares the
runtimes, not two states of a loaded machine; cost.json stays predict's own output). A model that
a format cannot export is one warning line naming the model and the reason, recorded in both
files; the stage still succeeds, so `dvc repro` goes on with predict, evaluate and report.
"""

import contextlib
import io
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .batches import resize_batch
from .checkpoint import load_checkpoint
from .cost import device_name
from .errors import VistageError
from .inference import TrainedModel, tta_logits
from .params import EXPORT_FORMATS
from .registry import Registry
from .served import INPUT, OUTPUT, preprocess, require

FILES = {"onnx": "model.onnx", "torchscript": "model.ts"}
PACKAGES = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "torchscript": ()}
RESIZE_RULES = {
    "crop": "the centred square of the shorter side, resized to image_size x image_size (bicubic, antialiased); "
            "an image already that size is kept as it is",
    "pad": "the longer side resized to image_size (bicubic), then padded with black to a centred square",
}
VQA_NOTE = ("exporting a VQA model is not supported yet: vistage exports classifiers only (task: classify); "
            "with task: vqa, export must stay []")
WARMUP = 5
PARITY_BATCH = 256
# the exporters by format keyword, for `vistage list export_formats`; params.py checks the names
# against EXPORT_FORMATS, which keeps this module (and torch.onnx) out of the other stages
FORMATS = Registry("export")


@dataclass
class ExportPaths:
    """What the export stage reads and writes (dvc.yaml's paths)."""

    checkpoint: Path
    store: Path
    split: Path
    out: Path  # a folder: model.json and the formats' files
    metrics: Path


class Served(nn.Module):
    """What the exported graph computes from a normalised NCHW image of the store's size: the
    resize to `input_size` and the model over the test-time views, as predict does."""

    def __init__(self, model: nn.Module, size: int | None, tta: tuple[str, ...]):
        super().__init__()
        self.model, self.size, self.tta = model, size, tuple(tta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tta_logits(self.model, resize_batch(x, self.size), self.tta)


def export_model(p, paths: ExportPaths) -> str:
    """model.json and the formats of `export:` in paths.out, parity and latency in paths.metrics."""
    from .io import atomic_dir, write_json

    formats = list(dict.fromkeys(p.export))  # listed twice is exported once
    from .tasks import create_task

    if not create_task(p.task).exportable:
        if formats:
            raise VistageError(f"export: {VQA_NOTE}")
        with atomic_dir(paths.out) as tmp:
            _write_card(tmp, {"vistage_version": _version(), "task": p.task, "supported": False, "note": VQA_NOTE,
                              "formats": {}})
        write_json(paths.metrics, {"task": p.task, "formats": []})
        return f"{paths.out}/model.json (task: {p.task}: {VQA_NOTE.split(':')[0]})"
    for name in formats:
        require(PACKAGES[name], f"export: {name}")
    return _export_classifier(p, paths, formats)


def _export_classifier(p, paths: ExportPaths, formats: list[str]) -> str:
    from .io import atomic_dir, write_json

    device = torch.device("cpu")  # the exporters trace on the CPU; parity compares fp32 with fp32
    trained = TrainedModel(paths.checkpoint, device)
    state = load_checkpoint(paths.checkpoint)
    temperature, norm = _temperature(state), state["normalize"]  # mean and std as trained, not as float32
    model = trained.model.to(memory_format=torch.contiguous_format)  # the exported graph takes plain NCHW
    served = Served(model, trained.normalize.size, trained.params.get("tta", ())).eval()
    name = trained.params["model"]
    store, rows, split = _test_rows(paths, trained.params)
    exported, runs, failed = {}, {}, {}
    with atomic_dir(paths.out) as tmp:
        for fmt in formats:
            try:
                exported[fmt] = FORMATS.get(fmt, "export")(served, trained.image_size, tmp / FILES[fmt])
                runs[fmt] = runner(fmt, tmp / FILES[fmt])  # a file its runtime cannot load fails here
            except Exception as exc:  # an op the exporter refuses: one line, and the pipeline goes on
                exported.pop(fmt, None)
                failed[fmt] = f"model {name!r} cannot be exported to {fmt}: {_reason(exc)}"
                print(f"warning: export: {failed[fmt]}", file=sys.stderr)
                (tmp / FILES[fmt]).unlink(missing_ok=True)
        metrics = _measure(p, trained, norm, served, store, rows, split, runs)
        metrics.update({fmt: {"exported": False, "error": why} for fmt, why in failed.items()})
        _write_card(tmp, model_card(trained, norm, exported, failed, temperature))
    write_json(paths.metrics, metrics)
    return _summary(paths, formats, metrics, failed)


def _write_card(folder: Path, card: dict) -> None:
    """model.json into the folder being written (published with it, as one output)."""
    import json

    (folder / "model.json").write_text(json.dumps(card, indent=2) + "\n")


def _version() -> str:
    from . import __version__

    return __version__


def _temperature(state: dict) -> float:
    """The temperature fitted after training (post-hoc calibration), where the checkpoint holds
    one; 1.0 otherwise (softmax(logits / 1) is the plain softmax)."""
    value = state.get("temperature")
    if value is None and isinstance(state.get("info"), dict):
        value = state["info"].get("temperature")
    return float(value) if value is not None else 1.0


def _test_rows(paths: ExportPaths, params: dict):
    """(store, the store rows of the test images, or of the validation ones without a test split,
    or of the training ones without either (evaluation.scored_splits; val is training with
    head_refit), its name)."""
    from .data.split import load_split
    from .data.store import load_store
    from .evaluation import eval_rows, held_out

    split = held_out(load_split(paths.split), params)
    name, rows = next(iter(eval_rows(split, paths.split).items()))  # the headline split
    return load_store(paths.store), np.sort(rows).astype(np.int64), name


def _reason(exc: Exception) -> str:
    """The line of an exporter's error that says what failed (torch.onnx's first line is a
    generic "Failed to convert"; its exception summary names the operator)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1]
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    line = re.sub(r"^<class '[\w.]+'>: ", "", line)
    return f"{type(exc).__name__}: {line[:300]}" if not line.startswith(type(exc).__name__) else line[:300]


def _quiet():
    """The exporters' progress lines and tracer warnings kept out of the stage's log."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


@FORMATS.register(help=EXPORT_FORMATS["onnx"])
def onnx(served: nn.Module, size: int, path: Path) -> dict:
    """model.onnx by torch.onnx.export (torch.export-based), weights inside, batch dynamic."""
    import onnx as onnx_package

    example = torch.zeros(2, 3, size, size)  # 2: a batch of 1 would be specialised to a constant
    with _quiet(), torch.no_grad():
        torch.onnx.export(served, (example,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, external_data=False, dynamo=True)
    imports = onnx_package.load(str(path), load_external_data=False).opset_import
    opset = next(o.version for o in imports if o.domain in ("", "ai.onnx"))
    return {"file": FILES["onnx"], "opset": int(opset), "runtime": "onnxruntime",
            "exporter": f"torch.onnx.export (torch.export-based), torch {torch.__version__}"}


@FORMATS.register(help=EXPORT_FORMATS["torchscript"])
def torchscript(served: nn.Module, size: int, path: Path) -> dict:
    """model.ts by torch.jit.trace (timm's CNNs trace; scripting needs annotations they lack)."""
    example = torch.zeros(2, 3, size, size)
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(served, example)
        torch.jit.save(traced, str(path))
    return {"file": FILES["torchscript"], "runtime": "torch.jit.load (PyTorch, no vistage or timm)",
            "exporter": f"torch.jit.trace, torch {torch.__version__}"}


def runner(fmt: str, path: Path):
    """A function from a float32 NCHW batch (numpy) to its logits (numpy), running the exported file."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # as many threads as eager PyTorch: a fair ratio
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda x: session.run([OUTPUT], {INPUT: x})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": the format asked for
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return run


def eager(served: nn.Module):
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return served(torch.from_numpy(x)).numpy()

    return run


def latency_ms(runs: dict, x: np.ndarray, repeats: int) -> dict[str, tuple[float, float]]:
    """(p50, p95) milliseconds of `repeats` calls on `x` of each runner, after WARMUP untimed ones.
    The runners take turns, call by call, so a change in the machine's load (other processes on
    a shared CPU) weighs on all of them alike and their ratio stays meaningful."""
    times = {name: [] for name in runs}
    for repeat in range(WARMUP + repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run(x)
            if repeat >= WARMUP:
                times[name].append(time.perf_counter() - start)
    ms = {name: np.array(t) * 1000 for name, t in times.items()}
    return {name: (round(float(np.percentile(t, 50)), 3), round(float(np.percentile(t, 95)), 3))
            for name, t in ms.items()}


def parity(run, trained, norm: dict, images: np.ndarray, rows: np.ndarray, ids: np.ndarray) -> dict:
    """The exported model against PyTorch's predict path (trained.logits: uint8 store rows,
    normalised in torch) on `rows`: top-1 agreement, the images that disagree, max |logit diff|."""
    disagree, worst = [], 0.0
    for start in range(0, len(rows), PARITY_BATCH):
        batch = rows[start:start + PARITY_BATCH]
        reference, order = trained.logits(images, batch, batch_size=PARITY_BATCH)
        out = run(preprocess(images[order], norm["mean"], norm["std"]))
        reference = reference.numpy()
        worst = max(worst, float(np.abs(out - reference).max()))
        differ = out.argmax(1) != reference.argmax(1)
        disagree += [{"id": str(ids[r]), "pytorch": int(a), "exported": int(b)}
                     for r, a, b in zip(order[differ], reference.argmax(1)[differ], out.argmax(1)[differ])]
    return {"top1_agreement": round(1 - len(disagree) / len(rows), 6), "disagreements": len(disagree),
            "max_abs_logit_diff": float(f"{worst:.3g}"), "disagreeing_images": disagree}


def _measure(p, trained, norm: dict, served, store, rows, split: str, runs: dict) -> dict:
    """metrics/export.json: parity on `rows` and batch-1 latency of each exported file (`runs`: format ->
    runner) and of eager PyTorch."""
    import os

    metrics = {"model": trained.params["model"], "formats": list(runs), "split": split, "images": int(len(rows))}
    if not runs:
        return metrics
    ids = store.samples["id"].to_numpy(str)
    one = preprocess(store.images[rows[:1]], norm["mean"], norm["std"])
    latency = latency_ms({"eager": eager(served), **runs}, one, p.cost_repeats)
    metrics.update({"device": device_name(torch.device("cpu")), "threads": torch.get_num_threads(),
                    "load_1min": round(os.getloadavg()[0], 2),
                    "repeats": p.cost_repeats, "eager_latency_ms_p50": latency["eager"][0],
                    "eager_latency_ms_p95": latency["eager"][1]})
    for fmt, run in runs.items():
        p50, p95 = latency[fmt]
        metrics[fmt] = {"exported": True, **parity(run, trained, norm, store.images, rows, ids),
                        "latency_ms_p50": p50, "latency_ms_p95": p95,
                        "speedup_vs_eager": round(latency["eager"][0] / p50, 3) if p50 else None}
    return metrics


def model_card(trained, norm: dict, exported: dict, failed: dict, temperature: float) -> dict:
    """model.json: what a server needs to feed the exported model and read its output."""
    size, classes = trained.image_size, trained.classes
    resize = (trained.params.get("data") or {}).get("resize", "crop")
    card = {
        "vistage_version": _version(), "task": "classify", "model": trained.params["model"], "classes": classes,
        "input": {"name": INPUT, "dtype": "float32", "layout": "NCHW", "shape": ["batch", 3, size, size],
                  "dynamic_batch": True},
        "preprocessing": {
            "image_size": size, "resize": resize, "resize_rule": RESIZE_RULES[resize], "color": "RGB",
            "mean": list(norm["mean"]), "std": list(norm["std"]),
            "formula": "x = (rgb / 255 - mean) / std per channel, as float32, transposed to (batch, 3, "
                       "image_size, image_size)"},
        "in_the_graph": {"resize_to": trained.normalize.size,
                         "test_time_augmentation": list(trained.params.get("tta", ()))},
        "output": {"name": OUTPUT, "shape": ["batch", len(classes)], "order": "the order of classes"},
        "temperature": temperature,
        "probabilities": "softmax(logits / temperature)",
        "formats": exported,
        "trained_epochs": trained.epoch,
    }
    if failed:
        card["failed"] = failed
    return card


def _summary(paths: ExportPaths, formats: list[str], metrics: dict, failed: dict) -> str:
    done = [f"{paths.out}/model.json"]
    for fmt in formats:
        if fmt in failed:
            done.append(f"{fmt}: not exported")
            continue
        m = metrics[fmt]
        done.append(f"{paths.out}/{FILES[fmt]}: top-1 agrees with PyTorch on {m['top1_agreement']:.2%} of "
                    f"{metrics['images']} {metrics['split']} images, max |logit diff| {m['max_abs_logit_diff']:.2g}, "
                    f"batch-1 {m['latency_ms_p50']:.2f} ms (eager PyTorch {metrics['eager_latency_ms_p50']:.2f} ms)")
    return "; ".join(done) + f" -> {paths.metrics}"
