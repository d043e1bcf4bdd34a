"""Build the CSV that recipe r5-csv reads, from the Tiny ImageNet train archive.

    python recipes/tiny_imagenet_csv.py [ARCHIVE] [OUT]

ARCHIVE defaults to ../shared/datasets/tiny-imagenet-200-train.tar, OUT to data/tiny-imagenet
(git-ignored). Extracts the archive into OUT once (a rerun with the same archive reuses the files)
and writes OUT/train.csv with the columns `path` (relative to the CSV's folder) and `label` (the
class's WordNet id, the name of its folder), as a user with a label file would have it. The
archive's layout: <wrapper>/train/<wnid>/images/<wnid>_<n>.JPEG, plus <wnid>_boxes.txt, wnids.txt,
words.txt and README files, which are left out of the CSV. Errors are one line, exit code 2.
Needs only the standard library.
"""

import argparse
import csv
import json
import os
import sys
import tarfile
from pathlib import Path, PurePosixPath

DEFAULT_ARCHIVE = Path("../shared/datasets/tiny-imagenet-200-train.tar")
DEFAULT_OUT = Path("data/tiny-imagenet")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
MARKER = ".extracted.json"  # which archive OUT holds, written after a complete extraction


class Failure(Exception):
    """A problem the user can fix: printed as one line."""


def _fingerprint(archive: Path) -> dict:
    stat = archive.stat()
    return {"archive": archive.name, "size": stat.st_size}


def extract(archive: Path, out: Path) -> bool:
    """Extract `archive` into `out` unless it already holds it; True when it extracted."""
    if not archive.is_file():
        raise Failure(f"{archive}: archive not found (pass its path: python recipes/tiny_imagenet_csv.py ARCHIVE)")
    marker = out / MARKER
    want = _fingerprint(archive)
    if marker.is_file():
        try:
            have = json.loads(marker.read_text())
        except (OSError, ValueError):
            have = None
        if have == want:
            return False
        what = f"{have['archive']}, {have['size']} bytes" if isinstance(have, dict) and len(have) == 2 else "unknown"
        raise Failure(f"{out}: already holds the extraction of another archive ({what}); "
                      f"remove the folder or choose another OUT")
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            # the "data" filter refuses absolute paths, `..`, links leaving OUT and device files
            tar.extractall(out, filter="data")
    except tarfile.ReadError:
        raise Failure(f"{archive}: not a readable tar archive") from None
    except (tarfile.TarError, OSError) as exc:
        reason = " ".join(str(exc).split())  # one line, whatever the exception says
        raise Failure(f"{archive}: cannot extract into {out} ({reason})") from None
    marker.write_text(json.dumps(want))
    return True


def rows(out: Path) -> list[tuple[str, str]]:
    """(path relative to `out`, wnid) of every <wnid>/images/<file> image below `out`, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(out):
        dirnames.sort()
        folder = PurePosixPath(Path(dirpath).relative_to(out).as_posix())
        if folder.name != "images" or len(folder.parts) < 2:
            continue
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_SUFFIXES):
                found.append(((folder / name).as_posix(), folder.parent.name))
    return found


def build_csv(archive: Path = DEFAULT_ARCHIVE, out: Path = DEFAULT_OUT) -> tuple[Path, int, int]:
    """Extract (once) and write OUT/train.csv; (csv path, images, classes)."""
    extract(archive, out)
    table = rows(out)
    if not table:
        raise Failure(f"{archive}: no <class>/images/<image> files inside (not a Tiny ImageNet train archive?)")
    csv_path = out / "train.csv"
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows(table)
    tmp.replace(csv_path)  # atomic: a reader never sees half a CSV
    return csv_path, len(table), len({label for _, label in table})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build data/tiny-imagenet/train.csv (path,label) for recipe r5-csv.")
    ap.add_argument("archive", nargs="?", type=Path, default=DEFAULT_ARCHIVE,
                    help=f"the Tiny ImageNet train tar (default: {DEFAULT_ARCHIVE})")
    ap.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT,
                    help=f"folder to extract into and write train.csv in (default: {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    try:
        path, images, classes = build_csv(args.archive, args.out)
    except Failure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: {images} images, {classes} classes (columns path,label); next: vistage recipe r5-csv --run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
