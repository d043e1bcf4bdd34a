"""`make bench`: every speed claim of vistage against its baseline, measured in one process run.

Each line is vistage's figure, the baseline's and their ratio, measured now on this machine:

  prepare     the prepare stage's decoding against a plain PIL loop (CIFAR-10 JPEGs at 32 px, and
              the Oxford pets photos to 224 px)
  train       the train stage (ResNet-18, 32 px) against the ImageFolder + PIL + DataLoader loop,
              and against the model step alone (same model, optimizer and loss) on synthetic
              inputs (target: 97% of it)
  predict     images/s over the store and batch-1 latency against eager PyTorch on ready tensors
  frozen      a frozen-backbone epoch (tf_efficientnet_lite0, 224 px) with and without the feature cache
  start-up    `vistage --help`, and a no-op `dvc repro` of the whole pipeline against a one-stage one
  gpu         time to 94% on CIFAR-10: the train stage with recipes/cifar10-gpu.yaml (only on a
              GPU, says so otherwise; --gpu-smoke: two steps of its code path on the CPU)

Results go to metrics/bench.json with the device named (CPU model, cores, GPU) and the load
average before and after, so `dvc metrics diff` follows them across commits. Sizes are small
(a few minutes in all on 2 cores); numbers vary with load: compare ratios within one run.

    python bench/suite.py [--out metrics/bench.json] [--skip frozen,startup] [--gpu-smoke]
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import prepare as prep  # noqa: E402  (bench/prepare.py)
import train_throughput as tt  # noqa: E402  (bench/train_throughput.py)

BIN = Path(sys.executable).parent


def device_info() -> dict:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": model, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "gpu": None, "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        info["bf16_native"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        info["bf16_native"] = False
    return info


def _ratio(ours: float, base: float) -> float:
    return round(ours / base, 3) if base else float("nan")


def _line(name: str, ours: float, base: float, unit: str, base_name: str, higher_better: bool = True) -> dict:
    ratio = _ratio(ours, base) if higher_better else _ratio(base, ours)
    print(f"  {name:44s} {ours:10.4g} {unit:6s} vs {base:10.4g} ({base_name})  {ratio:.2f}x", flush=True)
    return {"vistage": float(f"{ours:.4g}"), "baseline": float(f"{base:.4g}"), "unit": unit, "ratio": ratio}


def bench_prepare(tmp: Path, limit: int) -> dict:
    print("prepare (decode into the store) against a plain PIL loop:")
    out = {}
    base = prep._child("plain_decode", limit)
    ours = prep._child("vistage_prepare", limit, f"{tmp}/store")
    out["cifar_32px"] = _line(f"CIFAR-10, {ours['images']} JPEGs, 32 px", ours["rate"], base["rate"], "img/s",
                              "PIL loop")
    if prep.PETS.is_file():
        base = prep._child("plain_resize", str(prep.PETS), 224)
        ours = prep._child("vistage_prepare", 10**9, f"{tmp}/pets", str(prep.PETS), 224)
        out["pets_224px"] = _line(f"Oxford pets, {ours['images']} photos -> 224 px", ours["rate"], base["rate"],
                                  "img/s", "PIL loop")
        out["pets_224px"]["peak_mb"] = {"vistage": round(ours["peak_mb"]), "baseline": round(base["peak_mb"])}
    return out


def bench_train(tmp: Path, per_class: int, batch_size: int) -> dict:
    print(f"train stage (ResNet-18, 32 px, batch {batch_size}, {per_class * 10} images):")
    n = tt.extract_subset(tt.CIFAR, tmp / "cifar", per_class)
    params = tt.params_dict(model="resnet18", optimizer="sgd", scheduler="none", lr=0.05, epochs=1,
                            batch_size=batch_size, augment=["crop", "flip"], device="cpu", image_size=32,
                            precision="fp32")
    (tmp / "work").mkdir()
    tt.prepare_store(tmp / "cifar", tmp / "work", params)
    base, ours, fast, ceiling = [], [], [], []
    for i in range(2):  # interleaved, best of two: a burst of load hits every one of them
        base.append(tt.baseline_epoch(tmp / "cifar", batch_size, 2, 0.05))
        ours.append(tt.vistage_epoch(tmp / "work", params, f"fp32-{i}"))
        ceiling.append(tt.synthetic_epoch(params, max(3, int(n * 0.9) // batch_size)))
        fast.append(tt.vistage_epoch(tmp / "work", dict(params, precision="bf16", channels_last=True), f"bf16-{i}"))
    base, ours, fast, ceiling = max(base), max(ours), max(fast), max(ceiling)
    return {"vs_users_loop": _line("train stage fp32 / ImageFolder loop", ours, base, "img/s", "users' loop"),
            "bf16_channels_last": _line("train stage bf16+channels_last / fp32", fast, ours, "img/s", "fp32"),
            "vs_model_step": _line("train stage / model step on synthetic inputs", ours, ceiling, "img/s",
                                   "model step")}


def bench_predict(tmp: Path) -> dict:
    """The predict stage's model run (TrainedModel.logits over the store) against eager PyTorch over
    the same images already as normalised tensors; and batch-1 latency of each."""
    from vistage.data.store import load_store
    from vistage.inference import TrainedModel

    print("predict (ResNet-18 checkpoint of the train bench, 32 px):")
    ckpt = tmp / "work" / "fp32-0" / "models" / "best.pt"
    store = load_store(tmp / "work" / "data" / "prepared")
    trained = TrainedModel(ckpt, torch.device("cpu"))
    rows = np.arange(len(store.images))
    start = time.perf_counter()
    trained.logits(store.images, rows, 256)
    ours = len(rows) / (time.perf_counter() - start)
    model = trained.model.eval()
    x = trained.normalize(torch.from_numpy(np.array(store.images)))
    with torch.no_grad():
        start = time.perf_counter()
        for s in range(0, len(x), 256):
            model(x[s:s + 256])
        base = len(rows) / (time.perf_counter() - start)
        one = x[:1]
        times = []
        for i in range(30):
            t = time.perf_counter()
            model(one)
            times.append(time.perf_counter() - t)
        base_ms = 1000 * float(np.median(times[5:]))
    times = []
    for i in range(30):
        t = time.perf_counter()
        trained.logits(store.images, rows[i:i + 1], 1)
        times.append(time.perf_counter() - t)
    ours_ms = 1000 * float(np.median(times[5:]))
    return {"throughput": _line("predict over the store / eager on tensors", ours, base, "img/s", "eager"),
            "latency_batch1": _line("batch-1 latency (median)", ours_ms, base_ms, "ms", "eager", higher_better=False)}


def bench_frozen(tmp: Path, images: int, epochs: int) -> dict:
    """A frozen tf_efficientnet_lite0 at 224 px (32 px store upsampled on the device), no augment:
    wall time of `epochs` epochs with the feature cache (computed in the first) and without."""
    from vistage.params import Params
    from vistage.training import TrainPaths, train

    print(f"frozen backbone (tf_efficientnet_lite0, 224 px, {images} images, {epochs} epochs):")
    folder = tmp / "frozen"
    tt.extract_subset(tt.CIFAR, folder, images // 10)
    params = tt.params_dict(model="tf_efficientnet_lite0", pretrained=True, freeze="backbone", input_size=224,
                            augment=[], epochs=epochs, batch_size=32, device="cpu", image_size=32,
                            precision="fp32", scheduler="none")
    (tmp / "workf").mkdir()
    tt.prepare_store(folder, tmp / "workf", params)
    seconds = {}
    for cached in (True, False):
        p = Params.model_validate(dict(params, feature_cache=cached))
        start = time.perf_counter()
        train(p, TrainPaths(tmp / "workf/data/prepared", tmp / "workf/data/split.csv", tmp / f"f{cached}/models",
                            tmp / f"f{cached}/live"))
        seconds[cached] = time.perf_counter() - start
    return {"epochs_seconds": _line(f"{epochs} frozen epochs, cache on / off", seconds[True], seconds[False], "s",
                                    "no cache", higher_better=False)}


def _best_of(cmd: list[str], cwd: Path, n: int = 3) -> float:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1")
    best = float("inf")
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def bench_startup(tmp: Path) -> dict:
    """`vistage --help` against `python -c pass`; a no-op `dvc repro` of vistage's pipeline (digits,
    one epoch) against a no-op repro of a one-stage pipeline."""
    print("start-up:")
    out = {"vistage_help": _line("vistage --help / python -c pass", _best_of([str(BIN / "vistage"), "--help"], ROOT),
                                 _best_of([sys.executable, "-c", "pass"], ROOT), "s", "bare python",
                                 higher_better=False)}
    project = tmp / "project"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:  # the tracked files, without results (as tests/conftest.py copies the project)
        if (ROOT / name).is_file() and not name.startswith(("metrics/", "tests/", "bench/")) and name != "dvc.lock":
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, project / name)
    (project / "metrics").mkdir(exist_ok=True)
    params = (project / "params.yaml").read_text().replace("epochs: 15", "epochs: 1")
    (project / "params.yaml").write_text(params.replace("image_size: 32", "image_size: 8"))
    toy = tmp / "toy"
    toy.mkdir()
    (toy / "dvc.yaml").write_text("stages:\n  one:\n    cmd: echo hi > out.txt\n    outs:\n      - out.txt\n")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1")
    for folder in (project, toy):
        subprocess.run(["git", "init", "-q"], cwd=folder, env=env, check=True, capture_output=True)
        if not (folder / ".dvc").is_dir():
            subprocess.run(["dvc", "init", "-q"], cwd=folder, env=env, check=True, capture_output=True)
        for cmd in (["git", "add", "-A"], ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost",
                                           "commit", "-qm", "bench"]):  # DVCLive needs a commit
            subprocess.run(cmd, cwd=folder, env=env, check=True, capture_output=True)
        proc = subprocess.run(["dvc", "repro"], cwd=folder, env=env, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"dvc repro in {folder} failed: {proc.stderr.strip()[-2000:]}")
    out["dvc_repro_noop"] = _line("no-op dvc repro, vistage's 6 stages / 1 stage", _best_of(["dvc", "repro"], project),
                                  _best_of(["dvc", "repro"], toy), "s", "1-stage", higher_better=False)
    return out


def bench_gpu(tmp: Path, smoke: bool = False) -> dict:
    """Time to 94% on CIFAR-10: the train stage with recipes/cifar10-gpu.yaml (50,000 images, 10%
    held out) on this machine's GPU; wall time of the stage's training and its best val accuracy.
    `smoke` (no GPU needed): two steps of one epoch on the CPU, to check the code path."""
    import yaml

    from vistage.params import Params
    from vistage.training import TrainPaths, train

    recipe = yaml.safe_load((ROOT / "recipes" / "cifar10-gpu.yaml").read_text())
    recipe["data"]["path"] = str(tt.CIFAR)
    if smoke:
        recipe.update(epochs=1, max_steps_per_epoch=2, device="cpu", precision="fp32", channels_last=False)
    work = tmp / "gpu"
    work.mkdir()
    (work / "params.yaml").write_text(yaml.safe_dump(recipe))
    for stage, paths in {"prepare": ["--out", "prepared", "--metrics", "data.json"],
                         "split": ["--store", "prepared", "--out", "split.csv", "--metrics", "split.json"]}.items():
        subprocess.run([sys.executable, "-m", "vistage", stage, "--params", "params.yaml", *paths], cwd=work,
                       check=True, capture_output=True)
    params = Params.model_validate(recipe)
    start = time.perf_counter()
    result = train(params, TrainPaths(work / "prepared", work / "split.csv", work / "models", work / "live"))
    seconds = time.perf_counter() - start
    acc = float(result["best_val_acc"])
    print(f"  cifar10-gpu recipe: train stage {seconds:.1f} s, best val accuracy {acc:.4f} "
          f"({'reached' if acc >= 0.94 else 'missed'} 94%; target: 10 s on one H100)", flush=True)
    return {"cifar10_gpu": {"seconds": round(seconds, 2), "val_acc": round(acc, 4), "epochs": params.epochs,
                            "reached_94": acc >= 0.94, "smoke": smoke}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "metrics" / "bench.json"))
    ap.add_argument("--skip", default="", help="comma-separated: prepare,train,predict,frozen,startup,gpu")
    ap.add_argument("--prepare-images", type=int, default=50_000)
    ap.add_argument("--per-class", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--frozen-images", type=int, default=300)
    ap.add_argument("--frozen-epochs", type=int, default=3)
    ap.add_argument("--gpu-smoke", action="store_true", help="run the GPU benchmark's code path for two steps on the CPU")
    args = ap.parse_args()
    if not tt.CIFAR.is_file():
        sys.exit(f"{tt.CIFAR} not found: make bench needs the shared CIFAR-10 archive")
    skip = set(filter(None, args.skip.split(",")))
    results = {"device": device_info(), "load_before": list(os.getloadavg())}
    print(f"device: {results['device']['cpu']} ({results['device']['cores']} cores), "
          f"GPU: {results['device']['gpu'] or 'none'}; load average {results['load_before'][0]:.1f}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "prepare" not in skip:
            results["prepare"] = bench_prepare(tmp, args.prepare_images)
        if "train" not in skip:
            results["train"] = bench_train(tmp, args.per_class, args.batch_size)
            if "predict" not in skip:
                results["predict"] = bench_predict(tmp)
        if "frozen" not in skip:
            results["frozen"] = bench_frozen(tmp, args.frozen_images, args.frozen_epochs)
        if "startup" not in skip:
            results["startup"] = bench_startup(tmp)
        if (torch.cuda.is_available() and "gpu" not in skip) or args.gpu_smoke:
            print("gpu: time to 94% on CIFAR-10" + (" (smoke run on the CPU)" if args.gpu_smoke else "") + ":")
            results["gpu"] = bench_gpu(tmp, smoke=args.gpu_smoke)
        else:
            print("gpu: time to 94% on CIFAR-10 is measured on a GPU only: no GPU here, not measured")
    results["load_after"] = list(os.getloadavg())
    results["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"{args.out}: written ({results['seconds']:.0f} s; load average now {results['load_after'][0]:.1f})")


if __name__ == "__main__":
    main()
