"""A frozen image encoder's forward time per image in fp32 and bf16, each with and without
channels_last, measured in alternation in one run (ratios to fp32 are what to compare: machines
of one kind differ by up to 40%, and a shared one drifts within a run).

    python bench/encoder_precision.py                                   # lite0 at 224 px (pets-transfer)
    python bench/encoder_precision.py --size 480 --batch 8              # the daquar recipe's photos

bf16 pays off on a CPU with AVX512-BF16 or AMX (the train stage says when it is emulated).
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

VARIANTS = ("fp32", "fp32 channels_last", "bf16", "bf16 channels_last")


def per_image_ms(model: torch.nn.Module, x: torch.Tensor, variant: str, batches: int) -> float:
    channels_last = "channels_last" in variant
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model, x = model.to(memory_format=fmt), x.contiguous(memory_format=fmt)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.startswith("bf16")):
        model(x[:2])  # warm-up: oneDNN picks its kernels for the layout
        started = time.perf_counter()
        for _ in range(batches):
            model(x)
    return (time.perf_counter() - started) / (batches * len(x)) * 1000


def main() -> None:
    from vistage.models import build_from_params
    from vistage.params import Params

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tf_efficientnet_lite0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=3, help="batches per pass")
    ap.add_argument("--passes", type=int, default=2, help="alternating passes over the variants")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = build_from_params(Params.model_validate({"model": args.model, "pretrained": args.model.startswith(
        "tf_efficientnet_lite")}), 10).eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    times = {v: [] for v in VARIANTS}
    for _ in range(args.passes):
        for variant in VARIANTS:
            times[variant].append(per_image_ms(model, x, variant, args.batches))
    base = sum(times["fp32"]) / args.passes
    print(f"{args.model} at {args.size} px, batches of {args.batch}, {args.threads} thread(s):")
    for variant, t in times.items():
        print(f"  {variant:20s} {sum(t) / len(t):7.1f} ms an image  {sum(t) / len(t) / base:.2f}x fp32")


if __name__ == "__main__":
    main()
