"""task: classify's data stages: the source decoded once into the store, and the stratified split."""

from pathlib import Path

from ...data.split import SPLITS, split_counts, split_table
from ...data.store import load_store, write_store
from ...io import atomic_path, write_json


def prepare(params, out: Path, metrics: Path) -> str:
    """Decode `data.source` once into the store at `data.image_size`; statistics into `metrics`."""
    from ...data.sources import load_source

    source = load_source(params.data)
    d = params.data
    stats = write_store(out, source, d.image_size, d.resize, d.on_bad_image, d.workers)
    stats["empty_folders"] = source.empty_folders
    write_json(metrics, stats)
    left_out = [f"{len(stats['skipped'])} bad files skipped"] if stats["skipped"] else []
    left_out += [f"{len(source.empty_folders)} folders without images left out"] if source.empty_folders else []
    listed = f" ({', '.join(left_out)}: listed in {metrics})" if left_out else ""
    return f"{stats['images']} images, {stats['classes']} classes{listed} -> {out}"


def split(params, store: Path, out: Path, metrics: Path) -> str:
    """Stratified, seeded train/val/test assignment of every image in the store."""
    st = load_store(store)
    d = params.data
    table = split_table(st.samples, st.classes, d.val_fraction, d.test_fraction, d.split_seed)
    counts = split_counts(table, st.samples, st.classes)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    write_json(metrics, counts)
    return ", ".join(f"{s} {counts[s]['images']}" for s in SPLITS) + f" -> {out}"
