from pathlib import Path

import typer

from .options import ParamsOption


def split(params: Path = ParamsOption,
          store: Path = typer.Option(Path("data/prepared"), help="prepared store"),
          out: Path = typer.Option(Path("data/split.csv"), help="split table (index, split)"),
          metrics: Path = typer.Option(Path("metrics/split.json"), help="per-split, per-class counts")) -> None:
    """Split the store into stratified, seeded train/val/test parts."""
    from ..data.split import SPLITS, split_table
    from ..data.store import load_store
    from ..io import atomic_path, write_json
    from ..params import DATA_KEYWORDS, load_params

    p = load_params(params, keywords=DATA_KEYWORDS)
    st = load_store(store)
    table = split_table(st.samples, st.classes, p.data.val_fraction, p.data.test_fraction, p.data.split_seed)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    joined = table.merge(st.samples[["index", "label"]], on="index")
    counts = {s: {"images": int((joined["split"] == s).sum()),
                  "per_class": {st.classes[c]: int(n) for c, n in
                                joined.loc[joined["split"] == s, "label"].value_counts().sort_index().items() if c >= 0}}
              for s in (*SPLITS, "unlabeled") if (joined["split"] == s).any() or s in SPLITS}
    write_json(metrics, counts)
    typer.echo("split: " + ", ".join(f"{s} {counts[s]['images']}" for s in SPLITS) + f" -> {out}")
