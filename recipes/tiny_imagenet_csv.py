"""Build the CSV that recipe r5-csv reads, from the Tiny ImageNet archive.

    python recipes/tiny_imagenet_csv.py [--archive ../shared/datasets/tiny-imagenet-200-train.tar]
                                        [--out data/tiny-imagenet]

Extracts the archive into OUT (once; rerunning reuses it) and writes OUT/train.csv with the
columns `path` (relative to the CSV) and `label` (the WordNet id of the class folder), as a
user with a label file would have. Paths look like train/<wnid>/images/<wnid>_<n>.JPEG.
"""

import argparse
import csv
import sys
import tarfile
from pathlib import Path


def build_csv(archive: Path, out: Path) -> Path:
    if not archive.is_file():
        raise SystemExit(f"error: {archive}: archive not found")
    marker = out / ".extracted"
    if not marker.exists():
        out.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(out, filter="data")  # refuses absolute paths and links out of OUT
        except (tarfile.TarError, OSError) as exc:
            raise SystemExit(f"error: {archive}: cannot extract ({exc})") from None
        marker.touch()
    images = sorted(p for p in out.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png")
                    and p.parent.name == "images")
    if not images:
        raise SystemExit(f"error: {archive}: no <class>/images/*.JPEG files inside")
    csv_path = out / "train.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for image in images:
            writer.writerow([image.relative_to(out).as_posix(), image.parent.parent.name])
    tmp.replace(csv_path)
    return csv_path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archive", type=Path, default=Path("../shared/datasets/tiny-imagenet-200-train.tar"))
    ap.add_argument("--out", type=Path, default=Path("data/tiny-imagenet"))
    args = ap.parse_args(argv)
    path = build_csv(args.archive, args.out)
    rows = sum(1 for _ in path.open()) - 1
    print(f"{path}: {rows} images", file=sys.stderr)


if __name__ == "__main__":
    main()
