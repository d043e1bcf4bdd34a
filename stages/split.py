"""split: stratified, seeded train/val/test assignment of every image in the store."""

from pathlib import Path
from typing import Annotated

import typer

from vistage.command import ParamsFile, run, single_command


def split(params: ParamsFile,
          store: Annotated[Path, typer.Option(help="the prepared store to read")],
          out: Annotated[Path, typer.Option(help="split table to write (index, split)")],
          metrics: Annotated[Path, typer.Option(help="per-split, per-class counts to write (JSON)")]) -> None:
    """Split the store into stratified, seeded train/val/test parts."""
    from vistage.data.split import SPLITS, split_counts, split_table
    from vistage.data.store import load_store
    from vistage.io import atomic_path, write_json
    from vistage.params import DATA_KEYWORDS, load_params
    from vistage.vqa.data import load_questions, vqa_split_counts, vqa_split_table

    p = load_params(params, keywords=DATA_KEYWORDS)
    st = load_store(store)
    if p.task == "vqa":  # questions, grouped by image
        questions = load_questions(store)
        table = vqa_split_table(questions, p.data.val_fraction, p.data.test_fraction, p.data.split_seed)
        counts, unit = vqa_split_counts(table, questions), "questions"
    else:
        table = split_table(st.samples, st.classes, p.data.val_fraction, p.data.test_fraction, p.data.split_seed)
        counts, unit = split_counts(table, st.samples, st.classes), "images"
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    write_json(metrics, counts)
    typer.echo("split: " + ", ".join(f"{s} {counts[s][unit]}" for s in SPLITS) + f" -> {out}")


app = single_command(split)

if __name__ == "__main__":
    run(app)
