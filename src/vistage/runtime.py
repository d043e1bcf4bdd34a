"""Seeds, determinism and device choice."""

import os
import random

import numpy as np
import torch

from .errors import VistageError


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this set before its first use to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VistageError("params.yaml: device: 'cuda' but no CUDA device is available; use device: auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise VistageError("params.yaml: device: 'mps' but MPS is not available; use device: auto")
    return torch.device(name)


def use_threads(threads: int) -> None:
    """torch's CPU threads for this process: `threads`, or (0) torch's default of one per core.

    Why a setting: every process takes every core by default, so N experiments at once on one CPU
    (dvc queue start -j N) run N x cores threads that wait on each other at every parallel region.
    Seen on 2 cores: two DAQUAR train stages at once trained at about 110 questions/s together,
    against 265 for one alone; bench/parallel_threads.py measures it."""
    if threads:
        torch.set_num_threads(threads)


def rng_state() -> dict:
    """Python, numpy and torch RNG states in a form `torch.load(weights_only=True)` accepts."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(("MT19937", state["numpy"]["keys"].numpy().astype(np.uint32), state["numpy"]["pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
