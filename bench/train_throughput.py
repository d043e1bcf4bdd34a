"""Train-stage throughput against the plain loop our users wrote, same model, data and run.

Baseline: torchvision ImageFolder + PIL transforms (RandomCrop(pad 4), flip, ToTensor,
Normalize) + DataLoader + a plain loop. vistage: `vistage prepare` of the same folder, then the
train stage's own loop (`vistage.training.train`), whose logged throughput is images/s over
the whole epoch, data path included. Both: timm ResNet-18, 10 classes, SGD, same batch size.

    python bench/train_throughput.py [--per-class 256] [--batch-size 128] [--workers 2]

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


def vistage_epoch(folder: Path, work: Path, batch_size: int, lr: float) -> float:
    from vistage.params import Params
    from vistage.training import TrainPaths, train

    params = Params().model_dump()
    params.update(model="resnet18", optimizer="sgd", scheduler="none", lr=lr, epochs=1,
                  batch_size=batch_size, augment=["crop", "flip"], device="cpu")
    params["data"].update(source="folder", path=str(folder), image_size=32, val_fraction=0.05, test_fraction=0.05)
    params_file = work / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    for stage in ("prepare", "split"):
        subprocess.run([sys.executable, "-m", "vistage", stage, "--params", str(params_file),
                        *(["--metrics", str(work / f"{stage}.json")])],
                       cwd=work, check=True, capture_output=True)
    result = train(Params.model_validate(params), TrainPaths(work / "data/prepared", work / "data/split.csv",
                                                             work / "models", work / "live"))
    return result["throughput"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-class", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the baseline")
    args = ap.parse_args()
    if not CIFAR.is_file():
        sys.exit(f"{CIFAR} not found: this benchmark needs the shared CIFAR-10 archive")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = extract_subset(CIFAR, tmp / "cifar", args.per_class)
        print(f"CIFAR-10 subset: {n} images, ResNet-18 at 32 px, batch {args.batch_size}, "
              f"{torch.get_num_threads()} torch threads, device cpu")
        lr = 0.05
        base_w = baseline_epoch(tmp / "cifar", args.batch_size, args.workers, lr)
        print(f"baseline ImageFolder+DataLoader(workers={args.workers}): {base_w:8.1f} img/s")
        base_0 = baseline_epoch(tmp / "cifar", args.batch_size, 0, lr)
        print(f"baseline ImageFolder+DataLoader(workers=0): {base_0:8.1f} img/s")
        (tmp / "work").mkdir()
        ours = vistage_epoch(tmp / "cifar", tmp / "work", args.batch_size, lr)
        print(f"vistage train stage:                      {ours:8.1f} img/s")
        print(f"ratio vistage / baseline(workers={args.workers}): {ours / base_w:.2f}x")
        print(f"ratio vistage / baseline(workers=0): {ours / base_0:.2f}x")


if __name__ == "__main__":
    main()
