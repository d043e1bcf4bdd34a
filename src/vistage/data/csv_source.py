"""The `csv` source: a CSV of image path and label (column names from params), paths relative
to the CSV's folder or to `data.root`; optional split and group columns; no label column for an
unlabeled set to predict."""

from pathlib import Path

import pandas as pd

from ..errors import VistageError
from .base import SOURCES, SPLIT_NAMES, FileReader, Sample, SourceData, require_path


@SOURCES.register(help="a CSV of (path, label[, split, group]); column names in data.csv_*")
def csv(dp) -> SourceData:
    csv_path = require_path(dp, "a CSV file")
    table = read_csv_columns(csv_path, csv_path, dp, "data",
                             ("csv_path_column", "csv_label_column", "csv_split_column", "csv_group_column"))
    root = Path(dp.root).expanduser() if dp.root else csv_path.parent
    root_resolved = root.resolve()
    samples, bad = [], []
    for row_number, row in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        where = f"{csv_path} row {row_number}"
        rel = row[dp.csv_path_column].strip()
        label = row[dp.csv_label_column].strip() if dp.csv_label_column else None
        if not rel:
            bad.append((where, "empty path"))
            continue
        full = (root / rel).resolve()
        if not full.is_relative_to(root_resolved):
            bad.append((f"{where}: {rel}", f"refused: escapes the data root {root}"))
            continue
        if label == "":
            bad.append((f"{where}: {rel}", "empty label"))
            continue
        if not full.is_file():
            bad.append((f"{where}: {rel}", "file not found"))
            continue
        split = None
        if dp.csv_split_column:
            value = row[dp.csv_split_column].strip().lower()
            if value and value not in SPLIT_NAMES:
                raise VistageError(f"{where}: split {value!r} is not one of train, val, test")
            split = SPLIT_NAMES.get(value)
        group = row[dp.csv_group_column].strip() if dp.csv_group_column else None
        samples.append(Sample(rel, label, str(full), split, group or None))
    classes = sorted({s.label for s in samples if s.label is not None})
    return SourceData(classes, samples, FileReader(), f"csv {csv_path}", bad)


def read_csv_columns(source, name, settings, group: str, keys: tuple[str, ...]) -> pd.DataFrame:
    """A CSV (a path or an open file) as strings, with every column that `settings` names under
    `keys` present (a None column is optional): else one line naming the file and the param."""
    try:
        table = pd.read_csv(source, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise VistageError(f"{name}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    for key in keys:
        column = getattr(settings, key)
        if column is not None and column not in table.columns:
            raise VistageError(f"{name}: no column {column!r} ({group}.{key}); columns: {', '.join(table.columns)}")
    return table
