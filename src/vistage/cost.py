"""What inference costs on this machine: batch-1 latency (p50, p95) and batched throughput, with
the device named, to weigh one architecture against another (recipe R4 chose between 216 and
412 ms per image).

These numbers depend on the machine and its load, not only on the model: they go to a file of
their own (metrics/cost.json), never into eval.json, whose diff means "the model changed".

What is timed is one forward pass from a uint8 image of the store's size already on the device:
normalisation, the resize to `input_size` when the model takes another size, and the model, under
torch.inference_mode with the precision (autocast) and memory format training used. Decoding is
not timed: it depends on the file format, not on the architecture. Warm-up runs come first (the
first calls allocate and pick kernels); every timed run ends with a device synchronisation.
"""

import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

WARMUP = 5  # untimed batch-1 runs before timing (and one untimed batch before the throughput)


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (Linux), else what the platform module says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return f"mps: Apple {platform.machine()}"
    return f"cpu: {cpu_name()} ({torch.get_num_threads()} threads)"


def _load() -> float | None:
    """The 1-minute load average when measured: on a busy machine the latencies mean less (and p95
    catches the interruptions)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # Windows
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _timed(forward, x: torch.Tensor, device: torch.device) -> float:
    """Seconds one forward pass of `x` takes, the device's queue drained before and after."""
    _sync(device)
    start = time.perf_counter()
    forward(x)
    _sync(device)
    return time.perf_counter() - start


def measure_cost(trained, model_name: str, batch_size: int, repeats: int, precision: str = "auto",
                 channels_last: bool = False) -> dict:
    """Latency of `repeats` batch-1 passes and throughput of max(2, repeats // 10) batches of
    `batch_size`, for a TrainedModel (whose model is left in the memory format it came in)."""
    from .precision import resolve_precision

    device, model = trained.device, trained.model
    run_precision = resolve_precision(precision, device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.eval().to(memory_format=fmt)

    def forward(x):
        with run_precision.autocast():
            return model(trained.normalize(x).contiguous(memory_format=fmt))

    size = trained.image_size
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3), np.uint8))
    images = images.to(device)
    try:
        with torch.inference_mode():
            one = images[:1]
            for _ in range(WARMUP):
                forward(one)
            latency = np.array([_timed(forward, one, device) for _ in range(repeats)]) * 1000
            forward(images)
            batches = max(2, repeats // 10)
            seconds = sum(_timed(forward, images, device) for _ in range(batches))
    finally:
        model.to(memory_format=torch.channels_last if getattr(trained, "channels_last", False)
                 else torch.contiguous_format)
    side = trained.normalize.size or size
    return {
        "device": device_name(device), "model": model_name, "input_size": int(side),
        "precision": run_precision.name, "channels_last": bool(channels_last),
        "params_count": int(sum(p.numel() for p in model.parameters())),
        "latency_ms_p50": round(float(np.percentile(latency, 50)), 3),
        "latency_ms_p95": round(float(np.percentile(latency, 95)), 3),
        "throughput_img_s": round(batch_size * batches / seconds, 1), "batch_size": int(batch_size),
        "repeats": int(repeats), "load_1min": _load(),
    }
