"""Prepare and read benchmarks on the CIFAR-10 archive, each against a plain baseline in the same run.

1. Decoding: the prepare stage (parallel decode of ../shared/datasets/cifar10-train.tar into the
   store) against a plain loop that opens each file of the archive with PIL and converts it to a
   tensor. Images/s and peak memory (largest RSS among the process and its workers) of each.
2. Reading an epoch: batches from the prepared store (vistage.batches) against a torchvision
   ImageFolder DataLoader over the extracted files, both producing normalised float batches
   (ToTensor + Normalize).

    python bench/prepare.py [--limit 50000] [--batch-size 256] [--loader-workers 2]

Each measurement runs in its own process so its peak memory is its own.
"""

import argparse
import json
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10-train.tar"
PETS = ROOT.parent / "shared" / "datasets" / "oxford-pets-sample.tar"  # large photos, mostly 500x375
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def plain_decode(limit: int) -> dict:
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    n, start = 0, time.perf_counter()
    with tarfile.open(CIFAR) as tar:
        for member in tar:
            if n == limit:
                break
            if member.isfile() and member.name.endswith(".jpg"):
                pil_to_tensor(Image.open(tar.extractfile(member)).convert("RGB"))
                n += 1
    return {"images": n, "seconds": time.perf_counter() - start}


def plain_resize(archive: str, size: int) -> dict:
    """The loop users write for photos: open with PIL, RGB, resize the shorter side, centre-crop."""
    from PIL import Image
    from torchvision import transforms

    tf = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.PILToTensor()])
    n, start = 0, time.perf_counter()
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isfile() and member.name.lower().endswith(".jpg"):
                tf(Image.open(tar.extractfile(member)).convert("RGB"))
                n += 1
    return {"images": n, "seconds": time.perf_counter() - start}


def vistage_prepare(limit: int, out: str, archive: str = str(CIFAR), size: int = 32) -> dict:
    import torch  # noqa: F401  (prepare resizes large photos with torch; the plain loop's torchvision
    # imports torch before its clock too, so neither pays the import inside the timing)

    from vistage.data.sources import load_source
    from vistage.data.store import write_store
    from vistage.params import DataParams

    start = time.perf_counter()
    source = load_source(DataParams(source="folder", path=archive))
    source.samples = source.samples[:limit]
    stats = write_store(out, source, size)
    return {"images": stats["images"], "seconds": time.perf_counter() - start}


def store_epoch(store_dir: str, batch_size: int) -> dict:
    import numpy as np
    import torch

    from vistage.batches import Normalizer, iterate_batches
    from vistage.data.store import load_store

    store = load_store(store_dir)
    labels = store.samples["label"].to_numpy(dtype=np.int64)
    normalize = Normalizer(MEAN, STD, torch.device("cpu"))
    n, start = 0, time.perf_counter()
    for x, y, _ in iterate_batches(store.images, labels, np.arange(len(labels)), batch_size, True,
                                   torch.Generator().manual_seed(0)):
        n += len(normalize(x))
    return {"images": n, "seconds": time.perf_counter() - start}


def imagefolder_epoch(folder: str, batch_size: int, workers: int) -> dict:
    import torch
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(folder, tf), batch_size=batch_size, shuffle=True,
                                         num_workers=workers)
    n, start = 0, time.perf_counter()
    for x, _ in loader:
        n += len(x)
    return {"images": n, "seconds": time.perf_counter() - start}


def _child(func: str, *args) -> dict:
    """Run one measurement in a fresh process; return its result plus peak memory."""
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import prepare as b; "
            f"r = b.{func}(*{args!r}); r['peak_mb'] = b._peak_mb(); print(json.dumps(r))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["rate"] = result["images"] / result["seconds"]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=50_000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--loader-workers", type=int, default=2)
    args = ap.parse_args()
    if not CIFAR.is_file():
        sys.exit(f"{CIFAR} not found: this benchmark needs the shared CIFAR-10 archive")
    with tempfile.TemporaryDirectory() as tmp:
        base = _child("plain_decode", args.limit)
        ours = _child("vistage_prepare", args.limit, f"{tmp}/store")
        print(f"decode {ours['images']} CIFAR-10 JPEGs from the archive:")
        print(f"  plain PIL loop      {base['rate']:8.0f} img/s  peak {base['peak_mb']:6.0f} MB")
        print(f"  vistage prepare     {ours['rate']:8.0f} img/s  peak {ours['peak_mb']:6.0f} MB (largest process)")
        print(f"  ratio               {ours['rate'] / base['rate']:8.2f}x")
        with tarfile.open(CIFAR) as tar:
            members = [m for m in tar if m.isfile() and m.name.endswith(".jpg")][: args.limit]
            tar.extractall(tmp, members=members, filter="data")
        folder = next(Path(tmp).rglob("train"))
        read_ours = _child("store_epoch", f"{tmp}/store", args.batch_size)
        read_base = _child("imagefolder_epoch", str(folder), args.batch_size, args.loader_workers)
        print(f"one epoch of normalised batches of {args.batch_size}:")
        print(f"  ImageFolder+DataLoader(workers={args.loader_workers}) {read_base['rate']:8.0f} img/s")
        print(f"  vistage store       {read_ours['rate']:8.0f} img/s")
        print(f"  ratio               {read_ours['rate'] / read_base['rate']:8.2f}x")
        if PETS.is_file():
            photos_base = _child("plain_resize", str(PETS), 224)
            photos = _child("vistage_prepare", 10**9, f"{tmp}/pets", str(PETS), 224)
            print(f"decode {photos['images']} Oxford pets photos (mostly 500x375) to 224 px:")
            print(f"  plain PIL loop      {photos_base['rate']:8.0f} img/s  peak {photos_base['peak_mb']:6.0f} MB")
            print(f"  vistage prepare     {photos['rate']:8.0f} img/s  peak {photos['peak_mb']:6.0f} MB (largest process)")
            print(f"  ratio               {photos['rate'] / photos_base['rate']:8.2f}x")


if __name__ == "__main__":
    main()
