"""Mixed precision: which autocast dtype to use, and a gradient scaler only where it is needed.

`auto` picks bf16 on CUDA devices that support it (no loss scaling needed), fp16 with a
GradScaler on older CUDA devices, and fp32 on the CPU and MPS, where autocast is slower than
fp32 for these convolutional models (measured: bf16 autocast on a 2-core CPU trains ResNet-18
slower than fp32). Asking for a dtype the device cannot run falls back to fp32 with a warning
rather than failing: the same params.yaml runs on a laptop and on a GPU node.
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
    if kind == "cpu" and requested == "bf16":
        return Precision("bf16", kind)  # runs (CPU autocast), though rarely faster: the user asked for it
    return Precision("fp32", kind, f"precision {requested} is not supported on {kind}: using fp32")
