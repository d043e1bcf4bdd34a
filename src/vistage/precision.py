"""Mixed precision: which autocast dtype to use, and a gradient scaler only where it is needed.

`auto` picks bf16 on CUDA devices that support it (no loss scaling needed), fp16 with a
GradScaler on older CUDA devices, and fp32 on the CPU and MPS. On the CPU, bf16 is fast only
where the CPU has native bf16 instructions (AVX512-BF16, AMX): on such a 2-core machine
`make bench` measured ResNet-18 at 32 px 1.05x and 1.22x faster with `precision: bf16` and
`channels_last: true` than in fp32 in two runs, and on another machine of the same kind no
faster (0.96x): it varies by CPU. Without them bf16 is emulated and slower. `auto` keeps fp32
on the CPU so that results are exact and the same on every CPU, and `cpu_bf16_hint` tells the
user when the faster setting is available. Asking for a dtype the device cannot run falls back
to fp32 with a warning rather than failing: the same params.yaml runs on a laptop and a GPU node.
"""

from contextlib import nullcontext
from dataclasses import dataclass

import torch


@dataclass
class Precision:
    name: str  # fp32, bf16, fp16: what actually runs
    device_type: str
    note: str = ""

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> "torch.amp.GradScaler":
        # fp16 gradients underflow without loss scaling; bf16 and fp32 need none (disabled = no-op)
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16" and self.device_type == "cuda")


def resolve_precision(requested: str, device: torch.device) -> Precision:
    kind = device.type
    if kind == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if requested == "auto":
            return Precision("bf16" if bf16_ok else "fp16", kind)
        if requested == "bf16" and not bf16_ok:
            return Precision("fp16", kind, "bf16 is not supported on this GPU: using fp16 with loss scaling")
        return Precision(requested, kind)
    if requested in ("auto", "fp32"):
        return Precision("fp32", kind)
    if kind == "cpu" and requested == "bf16":  # runs (CPU autocast): the user asked for it
        slow = "" if cpu_bf16_native() else ("this CPU has no native bf16 instructions (AVX512-BF16, AMX): "
                                             "bf16 is emulated here and slower than precision: fp32")
        return Precision("bf16", kind, slow)
    return Precision("fp32", kind, f"precision {requested} is not supported on {kind}: using fp32")


def cpu_bf16_hint(requested: str, device: torch.device) -> str:
    """A one-line hint when this CPU runs bf16 natively but fp32 was chosen."""
    if device.type != "cpu" or requested not in ("auto", "fp32") or not cpu_bf16_native():
        return ""
    return ("this CPU runs bf16 natively: precision: bf16 with channels_last: true may train convolutional "
            f"models faster; the gain varies by CPU (none on some){_measured_here()}; fp32 is kept for exact, "
            "portable results")


def cpu_bf16_native() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX), not emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _measured_here(path: str = "metrics/bench.json") -> str:
    """What `make bench` measured for bf16 on this CPU model, if it ran here; else how to measure."""
    import json
    from pathlib import Path

    try:
        bench = json.loads(Path(path).read_text())
        ratio = bench["train"]["bf16_channels_last"]["ratio"]
        cpu = bench["device"]["cpu"]
        here = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), None)
    except (OSError, ValueError, KeyError, TypeError):
        return ": measure yours with `make bench`"
    if cpu != here:
        return f": measure yours with `make bench` ({path} is from another CPU, {cpu})"
    return (f": `make bench` measured {ratio:.2f}x fp32 for ResNet-18 at 32 px on a CPU of this model ({cpu}, "
            f"{path}); rerun it here to know yours")
