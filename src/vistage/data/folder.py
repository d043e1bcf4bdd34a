"""The `folder` source: one sub-folder per class, as a directory or an archive (.tar, .tar.gz,
.tgz, .zip) read in place, never extracted to disk.

Layout: a wrapper folder shared by every image is looked through (`cifar10/train/cat/1.jpg`);
`train/`, `val/` and `test/` parts become predefined splits; the class is the first folder below
(images may sit deeper, as in Tiny ImageNet's `<wnid>/images/`). Files that are not images by
name (README, boxes.txt) are ignored.
"""

import os
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from ..errors import VistageError
from .base import SOURCES, SPLIT_NAMES, FileReader, Reader, Sample, SourceData, is_image_name, require_path


class TarReader(Reader):
    """Streams the archive once, in member order (the order of the samples), for .tar and .tar.gz."""

    def __init__(self, path: Path):
        self.path = path

    def payloads(self, samples: list[Sample]) -> Iterator[bytes]:
        k = 0
        with tarfile.open(self.path) as tar:
            for member in tar:
                if k == len(samples):
                    return
                if member.name == samples[k].ref:
                    yield tar.extractfile(member).read()
                    k += 1


class ZipReader(Reader):
    def __init__(self, path: Path):
        self.path = path

    def payloads(self, samples: list[Sample]) -> Iterator[bytes]:
        with zipfile.ZipFile(self.path) as zf:
            for sample in samples:
                yield zf.read(sample.ref)


def _unsafe(name: str) -> bool:
    p = PurePosixPath(name)
    return p.is_absolute() or ".." in p.parts


def _walk(path: Path, follow_links: bool) -> tuple[list[tuple[str, object]], list[tuple[str, str]], list[str]]:
    """Image files below a folder on disk, refused entries, and every folder seen. A link is read
    only when the user asked for it (data.follow_links): otherwise a link to a folder, or to a file
    outside the data, stops prepare with its name, so no data is dropped without a word."""
    entries, bad, folders, seen = [], [], [], set()
    root = path.resolve()
    for dirpath, dirnames, filenames in os.walk(path, followlinks=follow_links):
        here = Path(dirpath)
        if here.resolve() in seen:  # a link loop (or a folder linked twice): read it once
            dirnames[:] = []
            continue
        seen.add(here.resolve())
        links = sorted(d for d in dirnames if (here / d).is_symlink())
        if links and not follow_links:
            raise VistageError(f"{here / links[0]}: a link to a folder; set data.follow_links: true to read it "
                               f"({len(links)} such link(s) in {here})")
        dirnames.sort()
        folders += [(here / d).relative_to(path).as_posix() for d in dirnames]
        for name in sorted(filenames):
            full = here / name
            rel = full.relative_to(path).as_posix()
            if not is_image_name(name):
                continue
            if not follow_links and not full.resolve().is_relative_to(root):
                bad.append((rel, "refused: links outside the data root (data.follow_links: true reads it)"))
                continue
            entries.append((rel, str(full)))
    return entries, bad, folders


def list_entries(path: Path, follow_links: bool = False
                 ) -> tuple[list[tuple[str, object]], Reader, list[tuple[str, str]], list[str]]:
    """(relative name, reader ref) of every image file, the reader, refused entries, and the
    folders seen (to report those without images)."""
    if path.is_dir():
        entries, bad, folders = _walk(path, follow_links)
        return entries, FileReader(), bad, folders
    entries, bad, folders = [], [], []
    name = path.name.lower()
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        try:
            with tarfile.open(path) as tar:
                for member in tar:
                    if member.isdir():
                        folders.append(member.name.rstrip("/"))
                    if not member.isfile() or not is_image_name(member.name):
                        continue
                    if _unsafe(member.name):
                        bad.append((member.name, "refused: path escapes the archive root"))
                        continue
                    entries.append((member.name, member.name))
        except (tarfile.TarError, OSError, EOFError) as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]  # tarfile lists every compression it tried
            raise VistageError(f"{path}: not a readable tar archive ({first})") from None
        return entries, TarReader(path), bad, folders
    if name.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if info.is_dir():
                        folders.append(info.filename.rstrip("/"))
                    if info.is_dir() or not is_image_name(info.filename):
                        continue
                    if _unsafe(info.filename):
                        bad.append((info.filename, "refused: path escapes the archive root"))
                        continue
                    entries.append((info.filename, info.filename))
        except (zipfile.BadZipFile, OSError) as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise VistageError(f"{path}: not a readable zip archive ({first})") from None
        return entries, ZipReader(path), bad, folders
    raise VistageError(f"params.yaml: data.path: {str(path)!r} is neither a folder nor a .tar/.tar.gz/.zip archive")


def empty_folders(folders: list[str], entries: list[tuple[str, object]]) -> list[str]:
    """The top-most folders with no image anywhere below them (an empty class folder, say)."""
    with_images = {str(parent) for rel, _ in entries for parent in PurePosixPath(rel).parents}
    empty = sorted(f for f in folders if f and f not in with_images)
    return [f for f in empty if not any(str(p) in empty for p in PurePosixPath(f).parents)]


def _wrapper_depth(parts: list[tuple[str, ...]]) -> int:
    """How many leading folders every image shares (and that are not split folders)."""
    depth = 0
    while True:
        heads = {p[depth] if len(p) > depth + 2 else None for p in parts}
        if len(heads) != 1 or None in heads or next(iter(heads)).lower() in SPLIT_NAMES:
            return depth
        depth += 1


@SOURCES.register(help="class sub-folders in a directory or .tar/.tar.gz/.zip; train/val/test parts kept")
def folder(data_params) -> SourceData:
    path = require_path(data_params, "a folder or archive of class folders")
    entries, reader, bad, folders = list_entries(path, data_params.follow_links)
    parts = [PurePosixPath(rel).parts for rel, _ in entries]
    depth = _wrapper_depth(parts)
    has_split = [len(p) > depth + 2 and p[depth].lower() in SPLIT_NAMES for p in parts]
    if any(has_split) and not all(has_split):
        i = has_split.index(False)
        raise VistageError(f"{path}: mixes split folders (train/, test/) with other folders, e.g. {entries[i][0]!r}")
    samples = []
    for (rel, ref), p, split in zip(entries, parts, has_split):
        cls_at = depth + 1 if split else depth
        if len(p) < cls_at + 2:
            bad.append((rel, "not inside a class folder"))
            continue
        samples.append(Sample(rel, p[cls_at], ref, SPLIT_NAMES[p[depth].lower()] if split else None))
    classes = sorted({s.label for s in samples})
    return SourceData(classes, samples, reader, f"folder {path}", bad, empty_folders(folders, entries))
