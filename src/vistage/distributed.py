"""DistributedDataParallel through torchrun.

`devices: N` in params.yaml makes the train stage re-launch itself under torchrun
(`python -m torch.distributed.run --standalone --nproc-per-node N`); a user's own
`torchrun ... -m vistage train` (several nodes, a rendezvous server) is picked up from the
environment variables torchrun sets. NCCL on CUDA, gloo on the CPU.
"""

import os
import sys
from dataclasses import dataclass

import torch


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def sum(self, *values: float) -> list[float]:
        """Sum scalars over all processes."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def broadcast(self, value: float) -> float:
        """Rank 0's value on every process (so all ranks take the same early-stop decision)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        torch.distributed.broadcast(t, src=0)
        return float(t.item())


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch_command(devices: int, module: str, args: list[str]) -> list[str]:
    """The torchrun command that runs `python -m module args` on `devices` processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={devices}",
            "-m", module, *args]


def available_processes(device_kind: str) -> tuple[int, str]:
    """How many DDP processes this machine can run, and of what: one per GPU, or one per core."""
    if device_kind == "cuda":
        return torch.cuda.device_count(), "CUDA devices"
    from .data.decode import default_workers  # one per core this process may use

    return default_workers(), "CPU cores"


def check_launch(devices: int, batch_size: int, device_kind: str, n_train: int, where: str = "params.yaml") -> None:
    """Everything a DDP run needs, checked before torchrun starts any process (a worker's error
    would be buried under torchrun's ChildFailedError report, and 64 workers could exhaust memory)."""
    from .errors import VistageError

    have, what = available_processes(device_kind)
    if devices > have:
        raise VistageError(f"{where}: devices: {devices} processes, but this machine has {have} {what}; "
                           f"set devices: {max(1, have)} or fewer")
    if batch_size % devices or n_train < batch_size:
        raise VistageError(f"{where}: batch_size: {batch_size} must be a multiple of the {devices} processes and "
                           f"at most the {n_train} training images (it is the batch over all devices)")


def init(device_kind: str) -> Dist:
    """Join the process group torchrun set up, or run alone."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Dist()
    dist = Dist(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
    if not torch.distributed.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if device_kind == "cuda":
            torch.cuda.set_device(dist.local_rank)
        torch.distributed.init_process_group(backend)
    return dist


def shutdown(dist: Dist) -> None:
    if dist.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def relaunch(devices: int, batch_size: int, device: str, params_file, paths) -> int | None:
    """`devices: N` (N > 1) outside torchrun: the train stage run again under torchrun on N
    processes (checked first, before anything starts); its exit code. None: train here."""
    if devices <= 1 or under_torchrun():
        return None
    import subprocess

    from .data.split import load_split
    from .runtime import resolve_device

    n_train = int((load_split(paths.split)["split"] == "train").sum())
    check_launch(devices, batch_size, resolve_device(device).type, n_train, str(params_file))
    args = ["--params", params_file, "--store", paths.store, "--split", paths.split, "--models", paths.models,
            "--live", paths.live]
    cmd = relaunch_command(devices, "stages.train", [str(a) for a in args])
    print(f"train: {devices} processes: {' '.join(cmd)}", file=sys.stderr)
    return subprocess.run(cmd).returncode
