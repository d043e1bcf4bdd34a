"""Train-stage throughput against the plain loop our users wrote, same model, data and run.

Baseline: torchvision ImageFolder + PIL transforms (RandomCrop(pad 4), flip, ToTensor,
Normalize) + DataLoader + a plain loop. vistage: `vistage prepare` of the same folder, then the
train stage's own loop (`vistage.training.train`), whose logged throughput is images/s over
the whole epoch, data path included. Both: timm ResNet-18, 10 classes, SGD, same batch size.

    python bench/train_throughput.py [--per-class 256] [--batch-size 128] [--workers 2] [--data-path]

On a GPU (or with --data-path) it also measures ResNet-50 at 224 px with mixed precision and
channels_last: the train stage on real data (32 px store, upsampled on the device) against the
same model step on synthetic inputs already on the device; the data path should hold the GPU
back by less than 10%. A CPU smoke run of that code path:
`--data-path --big-model resnet18 --big-size 64 --big-batch 32 --per-class 40 --repeat 1`.

Reads ../shared/datasets/cifar10-train.tar (exits with a message when absent). Prints images/s
of each and the ratios; numbers vary with machine load, ratios within one run are what count.
"""

import argparse
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10-train.tar"


def extract_subset(tar_path: Path, dest: Path, per_class: int) -> int:
    """Write the first `per_class` images of every class as an ImageFolder tree."""
    counts: dict[str, int] = {}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 4 or parts[-3] != "train":
                continue
            cls = parts[-2]
            if counts.get(cls, 0) >= per_class:
                continue
            counts[cls] = counts.get(cls, 0) + 1
            out = dest / cls / parts[-1]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(member).read())
    return sum(counts.values())


def baseline_epoch(folder: Path, batch_size: int, workers: int, lr: float) -> float:
    import timm
    from torchvision import datasets, transforms

    torch.manual_seed(0)
    tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(folder, tf), batch_size=batch_size, shuffle=True,
                                         num_workers=workers, drop_last=True)
    model = timm.create_model("resnet18", num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    seen, start = 0, time.perf_counter()
    for x, y in loader:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
    return seen / (time.perf_counter() - start)


def prepare_store(folder: Path, work: Path, params: dict) -> None:
    params["data"].update(source="folder", path=str(folder), val_fraction=0.05, test_fraction=0.05)
    params_file = work / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    stages = {"prepare": ["--out", "data/prepared", "--metrics", "data.json"],
              "split": ["--store", "data/prepared", "--out", "data/split.csv", "--metrics", "split.json"]}
    for stage, paths in stages.items():
        proc = subprocess.run([sys.executable, "-m", "vistage", stage, "--params", str(params_file), *paths],
                              cwd=work, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"vistage {stage} failed: {proc.stderr.strip()}")


def vistage_epoch(work: Path, params: dict, run: str) -> float:
    """One epoch of the train stage's own loop; its logged throughput covers the whole epoch,
    data path included."""
    from vistage.params import Params
    from vistage.training import TrainPaths, train

    result = train(Params.model_validate(params), TrainPaths(work / "data/prepared", work / "data/split.csv",
                                                             work / run / "models", work / run / "live"))
    return result["throughput"]


def synthetic_epoch(params: dict, steps: int) -> float:
    """The same model, optimizer (the train stage's own factory: timm's Nesterov SGD with weight
    decay off biases and norms), loss, precision and memory format on random inputs already on the
    device: the speed of the model step alone, the ceiling for any data path."""
    from vistage.losses import LOSSES
    from vistage.models import build_from_params
    from vistage.optim import OPTIMIZERS
    from vistage.params import Params
    from vistage.precision import resolve_precision
    from vistage.runtime import resolve_device

    p = Params.model_validate(params)
    device = resolve_device(p.device)
    precision = resolve_precision(p.precision, device)
    model = build_from_params(p, 10).to(device, memory_format=torch.channels_last if p.channels_last
                                        else torch.preserve_format).train()
    opt = OPTIMIZERS.get(p.optimizer, "optimizer")(model, p.lr, p.weight_decay, p.momentum, p.backbone_lr_scale)
    loss_fn = LOSSES.get(p.loss, "loss")(p)
    scaler = precision.scaler()
    size = p.input_size or p.data.image_size
    x = torch.randn(p.batch_size, 3, size, size, device=device)
    if p.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (p.batch_size,), device=device)

    def step():
        with precision.autocast():
            loss = loss_fn(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.item()  # one sync per step, as the train stage does

    for _ in range(3):  # warm-up (cuDNN autotuning, allocator)
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * p.batch_size / (time.perf_counter() - start)


def cpu_comparison(tmp: Path, args) -> None:
    n = extract_subset(CIFAR, tmp / "cifar", args.per_class)
    print(f"CIFAR-10 subset: {n} images, ResNet-18 at 32 px, batch {args.batch_size}, "
          f"{torch.get_num_threads()} torch threads, device cpu, best of {args.repeat}")
    lr = 0.05
    params = params_dict(model="resnet18", optimizer="sgd", scheduler="none", lr=lr, epochs=1,
                         batch_size=args.batch_size, augment=["crop", "flip"], device="cpu", image_size=32,
                         precision="fp32")
    (tmp / "work").mkdir()
    prepare_store(tmp / "cifar", tmp / "work", params)
    fast = dict(params, precision="bf16", channels_last=True)
    base_w, base_0, ours, ours_fast = [], [], [], []
    for i in range(args.repeat):  # interleaved, so a burst of load on the machine hits all of them
        base_w.append(baseline_epoch(tmp / "cifar", args.batch_size, args.workers, lr))
        base_0.append(baseline_epoch(tmp / "cifar", args.batch_size, 0, lr))
        ours.append(vistage_epoch(tmp / "work", params, f"run{i}"))
        ours_fast.append(vistage_epoch(tmp / "work", fast, f"fast{i}"))
    steps = max(3, int(n * 0.9) // args.batch_size)
    ceiling = synthetic_epoch(params, steps)
    base_w, base_0, ours, ours_fast = max(base_w), max(base_0), max(ours), max(ours_fast)
    print(f"baseline ImageFolder+DataLoader(workers={args.workers}):  {base_w:8.1f} img/s")
    print(f"baseline ImageFolder+DataLoader(workers=0):  {base_0:8.1f} img/s")
    print(f"vistage train stage, fp32:                   {ours:8.1f} img/s  "
          f"ratio {ours / base_w:.2f}x (workers={args.workers}), {ours / base_0:.2f}x (workers=0)")
    print(f"vistage train stage, bf16 + channels_last:   {ours_fast:8.1f} img/s  "
          f"ratio {ours_fast / base_w:.2f}x (workers={args.workers}), {ours_fast / base_0:.2f}x (workers=0)")
    print(f"model step alone, fp32, synthetic inputs:    {ceiling:8.1f} img/s  "
          f"(the fp32 ceiling: {ceiling / base_w:.2f}x the baseline)")
    print("target: 1.5x the baseline")


def params_dict(image_size: int, **training) -> dict:
    from vistage.params import Params

    params = Params().model_dump()
    params.update(training)
    params["data"]["image_size"] = image_size
    return params


def data_path_comparison(tmp: Path, args) -> None:
    """ResNet-50 at 224 px with mixed precision: real data through the train stage against
    synthetic inputs on the device. The store holds 32 px CIFAR images, upsampled to 224 on the
    device (input_size), as recipe R3 did; the data path must keep up (target 90%+)."""
    n = extract_subset(CIFAR, tmp / "cifar224", args.per_class)
    params = params_dict(model=args.big_model, optimizer="sgd", scheduler="none", lr=0.01, epochs=1,
                         batch_size=args.big_batch, augment=["crop", "flip"], input_size=args.big_size,
                         precision="auto", channels_last=True, deterministic=False, image_size=32)
    (tmp / "work224").mkdir()
    prepare_store(tmp / "cifar224", tmp / "work224", params)
    steps = max(3, int(n * 0.9) // args.big_batch)
    synthetic = synthetic_epoch(params, steps)
    real = max(vistage_epoch(tmp / "work224", params, f"run{i}") for i in range(args.repeat))
    from vistage.precision import resolve_precision
    from vistage.runtime import resolve_device

    device = resolve_device("auto")
    print(f"{args.big_model} at {args.big_size} px, batch {args.big_batch}, "
          f"{resolve_precision('auto', device).name}, channels_last, device {device}: {n} images")
    print(f"synthetic inputs on the device: {synthetic:8.1f} img/s")
    print(f"vistage train stage, real data: {real:8.1f} img/s")
    print(f"real / synthetic: {real / synthetic:.0%}  (target 90%+)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-class", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the baseline")
    ap.add_argument("--repeat", type=int, default=2, help="measurements of each; the best counts")
    ap.add_argument("--data-path", action="store_true",
                    help="also real vs synthetic inputs for --big-model (the GPU check; runs on a GPU by default)")
    ap.add_argument("--big-model", default="resnet50")
    ap.add_argument("--big-size", type=int, default=224)
    ap.add_argument("--big-batch", type=int, default=256)
    args = ap.parse_args()
    if not CIFAR.is_file():
        sys.exit(f"{CIFAR} not found: this benchmark needs the shared CIFAR-10 archive")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cpu_comparison(tmp, args)
        if args.data_path or torch.cuda.is_available():
            data_path_comparison(tmp, args)


if __name__ == "__main__":
    main()
