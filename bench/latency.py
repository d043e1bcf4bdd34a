"""Inference cost of several architectures on this machine, as the predict stage measures it for
the trained model (vistage.cost.measure_cost: batch-1 latency p50/p95 after warm-up, batched
throughput, torch.inference_mode, fp32), to weigh them before training any (recipe R4 compared
216 and 412 ms per image). Untrained weights: the cost does not depend on their values.

    python bench/latency.py [simple_cnn:32 resnet18:224 tf_efficientnet_lite0:224] [--repeats 30] [--threads 1]

Each MODEL:SIZE is timed from a uint8 image of SIZE px. Prints one line per model and the
1-minute load average before and after: numbers on a busy machine are pessimistic, and the
ratios between models measured in one run are what count.
"""

import argparse
import os
from types import SimpleNamespace

import torch

from vistage.batches import Normalizer
from vistage.cost import measure_cost
from vistage.models import build_model


def cost_of(name: str, size: int, repeats: int, batch_size: int) -> dict:
    torch.manual_seed(0)
    device = torch.device("cpu")
    trained = SimpleNamespace(model=build_model(name, 10).eval(), device=device, image_size=size,
                              normalize=Normalizer([0.5] * 3, [0.25] * 3, device))
    return measure_cost(trained, name, batch_size, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=["simple_cnn:32", "resnet18:224", "tf_efficientnet_lite0:224"])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default); 1 avoids the stalls of threads that wait on each "
                             "other when other processes hold the cores")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for spec in args.models:
        name, _, size = spec.partition(":")
        c = cost_of(name, int(size or 32), args.repeats, args.batch_size)
        print(f"{name:>24} @ {c['input_size']:>3} px  p50 {c['latency_ms_p50']:8.2f} ms  p95 {c['latency_ms_p95']:8.2f} ms"
              f"  {c['throughput_img_s']:8.1f} img/s (batch {c['batch_size']})  {c['params_count']:>10,} params"
              f"  load {c['load_1min']}  [{c['device']}]")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
