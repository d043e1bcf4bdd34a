"""Peak memory and wall time of VQA on DAQUAR, stage by stage: prepare, train, the pipeline's
predict, and `predict --input` over new questions at the scale of DAQUAR's official test part
(5,673 questions about 654 images).

Each stage runs as its command (stages/*.py) in a process of its own, with the daquar recipe's
params (recipes/daquar.yaml; --epochs cuts training: only prepare and predict need a full
checkpoint's shape, not its accuracy). Per stage: wall time, user and system CPU time, and peak
resident memory (the largest process's, as `/usr/bin/time -v` reports: wait4's ru_maxrss).

The official test part is not in ../shared (on purpose: it judges the model), so the --input set
is built from the shared train part: `--images` of its photos, all their questions, repeated in
turn up to `--questions`. Prediction cost depends on how many images and questions there are,
not on which.

Baselines, measured in the same run:
  floor        a process that loads the checkpoint and answers one chunk of images and one batch
               of questions: the memory any predict needs. The target is predict near it.
  old loop     (--old-loop) the loop predict ran before it streamed, the training's validation
               loop (VqaTraining.logits: each batch of 256 questions puts its images through the
               encoder together), over the pipeline's test and validation questions; it also
               checks that both give the same answers. It needs several GB (7.9 GB measured).

    python bench/vqa_memory.py [--work DIR] [--epochs 2] [--images 654] [--questions 5673] [--old-loop]
        [--variant "precision=bf16 channels_last=true" ...]

`--variant`: the recipe with these params changed, its train and both predicts measured again in
the same run (on the same store), with the ratios of their wall time and peak memory to the
recipe's: how a setting changes the cost, on this machine, under the same load.

Numbers vary with the machine's load (printed before and after): compare within one run.
"""

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAQUAR = ROOT.parent / "shared" / "datasets" / "daquar-train.tar"


def measure(name: str, cmd: list[str], env: dict) -> dict:
    """Run `cmd` from the project root: wall seconds, user and system CPU seconds, peak RSS (MB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: {name} failed ({proc.returncode}): {' '.join(cmd)}\n{output[-3000:]}")
    result = {"wall_s": round(wall, 1), "user_s": round(usage.ru_utime, 1), "sys_s": round(usage.ru_stime, 1),
              "peak_mb": round(usage.ru_maxrss / 1024), "said": output.strip().splitlines()[-1] if output.strip() else ""}
    print(f"  {name:34s} {result['wall_s']:7.1f} s wall  {result['user_s']:7.1f} s user  {result['sys_s']:6.1f} s sys"
          f"  {result['peak_mb']:6d} MB peak", flush=True)
    return result


def write_params(work: Path, epochs: int, changes: dict | None = None) -> Path:
    """The daquar recipe on the defaults, reading the shared archive, `epochs` epochs, with `changes`.
    The split is the one the recipe measures on (test_fraction 0.2; the recipe itself trains on
    every image), with a tenth of val, so the pipeline's predict answers the 2,037 test and val
    questions it always has here."""
    import yaml

    sys.path.insert(0, str(ROOT / "src"))
    from vistage.recipes import load_recipe, merge

    recipe = load_recipe("daquar", ROOT / "recipes")
    recipe["data"].update(path=str(DAQUAR), test_fraction=0.2, val_fraction=0.1)
    params = merge(merge(yaml.safe_load((ROOT / "params.yaml").read_text()), recipe), {"epochs": epochs, **(changes or {})})
    work.mkdir(parents=True, exist_ok=True)
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def new_questions(work: Path, images: int, questions: int) -> Path:
    """QA.csv over the first `images` photos of the shared train part (in qa.csv's order) and their
    questions, cycled to `questions` rows; the photos extracted beside it."""
    folder = work / "new"
    with tarfile.open(DAQUAR) as tar:
        rows = list(csv.DictReader(io.StringIO(tar.extractfile("daquar-train/qa.csv").read().decode("utf-8"))))
        chosen = list(dict.fromkeys(r["image"] for r in rows))[:images]
        asked = [r for r in rows if r["image"] in set(chosen)]
        for name in chosen:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(tar.extractfile(f"daquar-train/{name}").read())
    with open(folder / "QA.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "question", "answer"])
        writer.writeheader()
        writer.writerows(asked[k % len(asked)] for k in range(questions))
    return folder / "QA.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, help="folder for the store, checkpoint and predictions (default: a temporary one)")
    ap.add_argument("--epochs", type=int, default=2, help="train epochs (the recipe has 25; memory does not depend on it)")
    ap.add_argument("--images", type=int, default=654)
    ap.add_argument("--questions", type=int, default=5673)
    ap.add_argument("--old-loop", action="store_true", help="also the loop predict ran before (needs several GB)")
    ap.add_argument("--variant", dest="variants", action="append", default=[],
                    help='"key=value key=value": train and predict again with these params, ratios to the recipe')
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args()
    if not DAQUAR.is_file():
        raise SystemExit(f"error: {DAQUAR}: not found (the shared DAQUAR train part)")
    with tempfile.TemporaryDirectory(prefix="vqa-memory-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = run(work, args)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


def run(work: Path, args) -> dict:
    import yaml

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    py, params = sys.executable, write_params(work, args.epochs)
    store, split, models = work / "data" / "prepared", work / "data" / "split.csv", work / "models"
    qa = new_questions(work, args.images, args.questions)
    print(f"DAQUAR, daquar recipe, {args.epochs} epochs; load average {os.getloadavg()[0]:.1f}, "
          f"{len(os.sched_getaffinity(0))} cores")
    out = {"load_before": round(os.getloadavg()[0], 2)}
    out["prepare"] = measure("prepare (795 photos -> 480 px)", [py, "stages/prepare.py", "--params", str(params),
                             "--out", str(store), "--metrics", str(work / "data.json")], env)
    subprocess.run([py, "stages/split.py", "--params", str(params), "--store", str(store), "--out", str(split),
                    "--metrics", str(work / "split.json")], cwd=ROOT, env=env, check=True, capture_output=True)
    out.update(train_and_predict(work, params, store, split, qa, args, env))
    checkpoint = str(work / "models" / "best.pt")
    out["floor"] = measure("floor: model + one chunk + one batch", [py, __file__, "--floor", checkpoint, str(store),
                           str(split)], env)
    ratio = out["predict_input"]["peak_mb"] / out["floor"]["peak_mb"]
    print(f"  predict --input peak / floor: {ratio:.2f}x")
    if args.old_loop:
        out["old_loop"] = measure("old loop (validation batches)", [py, __file__, "--old-loop-of", checkpoint,
                                  str(store), str(split), str(work / "logits.npz")], env)
        print(f"  old loop / streamed predict: {out['old_loop']['peak_mb'] / out['predict']['peak_mb']:.1f}x peak "
              f"memory, {out['old_loop']['wall_s'] / out['predict']['wall_s']:.1f}x wall; {out['old_loop']['said']}")
    for k, variant in enumerate(args.variants):
        changes = {key: yaml.safe_load(v) for key, v in (pair.split("=", 1) for pair in variant.split())}
        print(f"variant {variant}:")
        there = work / f"variant{k}"
        figures = train_and_predict(there, write_params(there, args.epochs, changes), store, split, qa, args, env)
        for stage, f in figures.items():
            print(f"  {stage:14s} {f['wall_s'] / out[stage]['wall_s']:.2f}x wall, "
                  f"{f['peak_mb'] / out[stage]['peak_mb']:.2f}x peak of the recipe's")
        out[f"variant {variant}"] = figures
    out["load_after"] = round(os.getloadavg()[0], 2)
    print(f"load average after: {out['load_after']:.1f}")
    return out


def train_and_predict(work: Path, params: Path, store: Path, split: Path, qa: Path, args, env: dict) -> dict:
    """train, the pipeline's predict and predict --input, each measured, their outputs under `work`."""
    py, models, out = sys.executable, work / "models", {}
    out["train"] = measure(f"train ({args.epochs} epochs, features once)", [py, "stages/train.py", "--params",
                           str(params), "--store", str(store), "--split", str(split), "--models", str(models),
                           "--live", str(work / "live")], env)
    checkpoint = str(models / "best.pt")
    out["predict"] = measure("predict (test + val questions)", [py, "stages/predict.py", "--params", str(params),
                             "--checkpoint", checkpoint, "--store", str(store), "--split", str(split),
                             "--out", str(work / "predictions.csv"), "--logits", str(work / "logits.npz")], env)
    out["predict_input"] = measure(f"predict --input ({args.questions} q, {args.images} images)",
                                   [py, "stages/predict.py", "--params", str(params), "--checkpoint", checkpoint,
                                    "--input", str(qa), "--images", str(qa.parent),
                                    "--out", str(work / "new-predictions.csv")], env)
    return out


# -- the baselines, each run in a process of its own (`measure`) ------------------------------------

def _predictor(checkpoint: str, store: str):
    import numpy as np
    import torch

    from vistage.data.store import load_store
    from vistage.precision import resolve_precision
    from vistage.tasks.vqa.data import load_questions
    from vistage.tasks.vqa.predict import load_vqa_model
    from vistage.tasks.vqa.training import VqaTraining

    device = torch.device("cpu")
    model, vocab, encoding, normalize, params = load_vqa_model(Path(checkpoint), device)
    task = VqaTraining(params, load_questions(store), np.zeros(0, np.int64), vocab, encoding)
    task.store = load_store(store)
    return model, task, normalize, resolve_precision(params.precision, device), params, device


def floor(checkpoint: str, store: str, split: str) -> None:
    """Answer the questions of the first chunk of test images, one batch of them: what predict
    holds at its peak, and nothing more."""
    import numpy as np

    from vistage.data.split import load_split
    from vistage.tasks.vqa.stream import answer_questions, image_chunk_size

    model, task, normalize, precision, params, device = _predictor(checkpoint, store)
    rows = load_split(split).query("split == 'test'")["index"].to_numpy()
    images = np.unique(task.image_of[rows])[:image_chunk_size(task.store.images.shape[1])]
    rows = rows[np.isin(task.image_of[rows], images)][:256]
    answer_questions(model, task, rows, 256, device, normalize, precision, params.tta, params.channels_last)
    print(f"{len(rows)} questions about {len(np.unique(task.image_of[rows]))} images")


def old_loop(checkpoint: str, store: str, split: str, streamed: str) -> None:
    """The test and validation questions through VqaTraining.logits in batches of 256 (what
    predict ran before), and whether its answers are those the streamed predict saved."""
    import numpy as np

    from vistage.data.split import load_split
    from vistage.tasks.vqa.metrics import VqaPredictions

    model, task, normalize, precision, params, device = _predictor(checkpoint, store)
    table = load_split(split)
    rows = table[table["split"].isin(("test", "val"))]["index"].to_numpy()
    top, confidence = [], []
    for logits, _, _ in task.logits(model, rows, 256, device, normalize, precision, params.tta, params.channels_last):
        conf, ids = logits.softmax(1).max(1)
        top.append(ids.numpy())
        confidence.append(conf.numpy())
    answers = np.array(task.vocab.answers)[np.concatenate(top)]
    pred = VqaPredictions.load(streamed)
    at = {r: k for k, r in enumerate(pred.index)}
    order = np.array([at[r] for r in rows])
    same = int((pred.answers[order] == answers).sum())
    gap = float(np.abs(pred.confidence[order] - np.concatenate(confidence)).max())
    print(f"same answers {same} of {len(rows)}, largest confidence difference {gap:.1e}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--floor":
        floor(*sys.argv[2:5])
    elif len(sys.argv) > 1 and sys.argv[1] == "--old-loop-of":
        old_loop(*sys.argv[2:6])
    else:
        main()
