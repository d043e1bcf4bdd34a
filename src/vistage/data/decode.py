"""Decoding payloads into store-sized RGB arrays, in worker processes.

The main process reads payloads in order (sequential I/O) and hands them out in chunks; at most
a few chunks per worker are in flight, so memory stays bounded however large the source.
"""

import io
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from itertools import islice

import numpy as np
from PIL import Image

from .images import to_store_array

CHUNK = 128

# (position, identifier, payload) -> (position, array or None, "WxH" or None, error or None)
Result = tuple[int, np.ndarray | None, str | None, str | None]


def decode_one(payload, size: int, policy: str) -> tuple[np.ndarray, str]:
    """The store-sized RGB array of one image, and its size in the file ("WxH")."""
    if isinstance(payload, np.ndarray):
        img = Image.fromarray(payload)
        return to_store_array(img, size, policy), f"{img.width}x{img.height}"
    if len(payload) == 0:
        raise ValueError("empty file")
    img = Image.open(io.BytesIO(payload))
    seen = f"{img.width}x{img.height}"
    if img.format == "JPEG":
        # decode at 1/2, 1/4 or 1/8 scale in the DCT domain when both sides stay at least `size`:
        # a 4000x3000 camera photo for a 224 px store decodes at 1/8, 64x fewer pixels
        img.draft(None, (size, size))
    img.load()  # decode now: truncated files fail here, not later
    return to_store_array(img, size, policy), seen


def _decode_chunk(chunk: list, size: int, policy: str) -> list[Result]:
    # a decompression bomb is an error, not a warning: it could exhaust memory
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    out = []
    for i, payload in chunk:
        try:
            arr, seen = decode_one(payload, size, policy)
            out.append((i, arr, seen, None))
        except Exception as exc:  # any decoder failure is a bad image, reported by the caller
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            out.append((i, None, None, f"{type(exc).__name__}: {message}"[:200]))
    return out


def _die_with_parent() -> None:
    """Worker initializer: on Linux, ask the kernel to kill this worker when prepare dies (kill -9
    included), so no decoder is left running as an orphan."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def decode_all(payloads: Iterable, size: int, policy: str, workers: int,
               on_chunk: Callable[[int], None] = lambda n: None) -> Iterator[Result]:
    """Decode every payload; yield results (in completion order) as they arrive."""
    numbered = enumerate(payloads)
    if workers <= 1:
        while chunk := list(islice(numbered, CHUNK)):
            yield from _decode_chunk(chunk, size, policy)
            on_chunk(len(chunk))
        return
    with ProcessPoolExecutor(workers, initializer=_die_with_parent) as pool:
        pending = set()
        while True:
            while len(pending) < 2 * workers and (chunk := list(islice(numbered, CHUNK))):
                pending.add(pool.submit(_decode_chunk, chunk, size, policy))
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                results = future.result()
                yield from results
                on_chunk(len(results))
