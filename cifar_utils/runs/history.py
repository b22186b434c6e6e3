"""A run's history file: one row per epoch in fixed columns, appended and synced as it goes.

Read back, only the consistent prefix counts (the header, then rows for epochs 0, 1, ...
with every field): a row cut by a kill, or anything after a gap, is not history, so a
resumed run never pairs a checkpoint with epochs the file does not hold.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import pandas as pd

from ..storage import is_disk_full, storage_error, write_atomic

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds")
HEADER = ",".join(HISTORY_COLUMNS) + "\n"


def read_history(path: Path) -> pd.DataFrame:
    """The consistent prefix of a history file (an empty frame for a missing or unreadable one)."""
    columns = list(HISTORY_COLUMNS)
    if not path.exists():
        return pd.DataFrame(columns=columns)
    try:
        lines = path.read_text().splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as error:
        warnings.warn(f"{path}: unreadable history ({error}); treating it as empty", stacklevel=2)
        return pd.DataFrame(columns=columns)
    if not lines or lines[0].strip() != HEADER.strip():
        return pd.DataFrame(columns=columns)
    rows = []
    for line in lines[1:]:
        if not line.endswith("\n"):
            break  # the last line was still being written
        row = _parse_row(line, len(rows))
        if row is None:
            break
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"epoch": int})


def start_history(path: Path) -> None:
    """A history file with its header, unless one with rows is there already (a resumed run)."""
    if not path.exists() or path.stat().st_size == 0:
        write_atomic(path, HEADER)


def append_row(path: Path, epoch: int, logs: dict) -> None:
    """One epoch's row (0-based ``epoch``), flushed and synced before training goes on."""
    row = _format_row([epoch] + [float(logs.get(c, float("nan"))) for c in HISTORY_COLUMNS[1:]])
    try:
        with open(path, "a") as stream:
            stream.write(row)
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as error:
        if is_disk_full(error):
            raise storage_error(path.parent, path.name, len(row), error) from None
        raise


def truncate_history(path: Path, epochs: int) -> None:
    """Keep the rows of the first ``epochs`` epochs: no duplicates or gaps after a resume."""
    if epochs == 0:
        path.unlink(missing_ok=True)
        return
    frame = read_history(path).iloc[:epochs]
    write_atomic(path, HEADER + "".join(_format_row(row) for row in frame.itertuples(index=False)))


def _parse_row(line: str, expected_epoch: int) -> list[float] | None:
    parts = line.rstrip("\n").split(",")
    if len(parts) != len(HISTORY_COLUMNS):
        return None
    try:
        values = [float(v) if v not in ("", "NA") else float("nan") for v in parts]
    except ValueError:
        return None
    return values if values[0] == expected_epoch else None


def _format_row(values) -> str:
    cells = [str(int(values[0]))] + ["" if not math.isfinite(float(v)) else repr(float(v)) for v in values[1:]]
    return ",".join(cells) + "\n"
