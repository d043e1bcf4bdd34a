"""Decoding payloads into store-sized RGB arrays, in worker processes.

The main process reads payloads in order (sequential I/O) and hands them out in chunks; at most
a few chunks per worker are in flight, so memory stays bounded however large the source.
"""

import io
import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from itertools import chain

import numpy as np
from PIL import Image

from .images import shrinks, to_store_array

try:  # libjpeg-turbo without PIL's overhead; a dependency, but PIL alone still decodes everything
    import simplejpeg
except ImportError:  # pragma: no cover
    simplejpeg = None

ORIENTATION = 0x0112  # the EXIF tag

CHUNK = 128  # payloads per chunk at most: tiny images (CIFAR's 1 KB JPEGs) go 128 to a task
CHUNK_BYTES = 1 << 20  # and at most about 1 MB of them: photos go about ten to a task, so both
# workers stay busy to the end of a few hundred photos instead of waiting on one 128-photo chunk

# (position, identifier, payload) -> (position, array or None, "WxH" or None, error or None)
Result = tuple[int, np.ndarray | None, str | None, str | None]


def decode_one(payload, size: int, policy: str) -> tuple[np.ndarray, str]:
    """The store-sized RGB array of one image, and its size in the file ("WxH")."""
    if isinstance(payload, np.ndarray):
        img = Image.fromarray(payload)
        return to_store_array(img, size, policy), f"{img.width}x{img.height}"
    if len(payload) == 0:
        raise ValueError("empty file")
    img = Image.open(io.BytesIO(payload))  # reads the header only
    seen = f"{img.width}x{img.height}"
    if img.format == "JPEG":
        turbo = _turbo_jpeg(payload, img, size)
        if turbo is not None:
            return to_store_array(turbo, size, policy), seen
        img.draft(None, (size, size))  # PIL's own reduced-size decoding, same scales
    img.load()  # decode now: truncated files fail here, not later
    return to_store_array(img, size, policy), seen


def _turbo_jpeg(payload: bytes, header: Image.Image, size: int) -> np.ndarray | None:
    """The RGB array of a plain RGB or greyscale JPEG, decoded by libjpeg-turbo through simplejpeg
    (1.19x PIL's decoder on the Oxford pets photos), at 1/2, 1/4 or 1/8 scale in the DCT domain when both
    sides stay at least `size` (a 4000x3000 camera photo for a 224 px store decodes at 1/8, 64x
    fewer pixels). Only those scales: libjpeg-turbo's others (3/8, 5/8, ...) decoded a 500x375
    photo slower than at full size. None for what this path leaves to PIL (EXIF rotation, CMYK,
    a corrupt file, whose error PIL then reports as before)."""
    if simplejpeg is None or header.mode not in ("RGB", "L") or header.getexif().get(ORIENTATION, 1) != 1:
        return None
    factor = next(f for f in (8, 4, 2, 1) if f == 1 or min(header.width, header.height) // f >= size)
    try:
        arr = simplejpeg.decode_jpeg(payload, "GRAY" if header.mode == "L" else "RGB",
                                     min_height=-(-header.height // factor), min_width=-(-header.width // factor))
    except ValueError:
        return None
    if arr.ndim == 2:
        arr = arr[..., None]
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr  # grey: one channel


# where decoding workers write rows: (file, byte offset of row 0, bytes per row), see decode_all
Target = tuple[str, int, int]
_FILES: dict[str, int] = {}  # a worker's open file descriptors, by path


def _decode_chunk(chunk: list, size: int, policy: str, into: Target | None = None) -> list[Result]:
    """Decode a chunk; with `into`, write each array into its row of that file (pwrite: no page
    faults of a memory map) and return None in its place, so only a few bytes per image travel
    back to the main process."""
    # a decompression bomb is an error, not a warning: it could exhaust memory
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    if into is not None and into[0] not in _FILES:
        _FILES[into[0]] = os.open(into[0], os.O_WRONLY)
    out = []
    for i, payload in chunk:
        try:
            arr, seen = decode_one(payload, size, policy)
            if into is not None:
                os.pwrite(_FILES[into[0]], np.ascontiguousarray(arr).data, into[1] + i * into[2])
                arr = None
            out.append((i, arr, seen, None))
        except Exception as exc:  # any decoder failure is a bad image, reported by the caller
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            out.append((i, None, None, f"{type(exc).__name__}: {message}"[:200]))
    return out


def _init_worker(prepare_pid: int) -> None:
    """Worker initializer: one torch thread per worker (the workers already fill the cores), and
    on Linux, ask the kernel to kill this worker when prepare dies (kill -9 included), so no
    decoder is left running as an orphan. A prepare that died between the fork and this request
    is not seen by the kernel: the worker then finds itself orphaned and leaves."""
    import ctypes
    import signal

    if "torch" in sys.modules:  # imported before the fork (see decode_all)
        sys.modules["torch"].set_num_threads(1)
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != prepare_pid:
            os._exit(1)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _chunks(numbered: Iterator) -> Iterator[list]:
    """Consecutive (position, payload) pairs, CHUNK of them or about CHUNK_BYTES, whichever is less."""
    chunk, size = [], 0
    for item in numbered:
        chunk.append(item)
        size += item[1].nbytes if isinstance(item[1], np.ndarray) else len(item[1])
        if len(chunk) == CHUNK or size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def decode_all(payloads: Iterable, size: int, policy: str, workers: int,
               on_chunk: Callable[[int], None] = lambda n: None, into: Target | None = None) -> Iterator[Result]:
    """Decode every payload; yield results (in completion order) as they arrive. With several
    workers and `into` (the caller's memory-mapped array file, the offset of its first row and
    the bytes of a row), the workers write the arrays there themselves, and the results carry
    None in their place: the main process, which shares the cores, only reads and hands out."""
    chunks = _chunks(enumerate(payloads))
    if workers <= 1:
        for chunk in chunks:
            yield from _decode_chunk(chunk, size, policy)
            on_chunk(len(chunk))
        return
    first = next(chunks, None)
    if first is not None and shrinks(first[0][1], size):
        import torch  # noqa: F401  (crop_resize's, imported once here before the workers fork, not in each)
    chunks = chain([first] if first is not None else [], chunks)
    # forked, whatever the process's default start method (a forkserver's workers would be the
    # server's children: neither the parent-death signal nor the parent check would mean prepare)
    context = multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(os.getpid(),)) as pool:
        pending = set()
        while True:
            while len(pending) < 2 * workers and (chunk := next(chunks, None)):
                pending.add(pool.submit(_decode_chunk, chunk, size, policy, into))
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                results = future.result()
                yield from results
                on_chunk(len(results))
