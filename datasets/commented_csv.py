"""The project's hand-made label tables (``truck_loads.csv``, ``teacher_fixes.csv``): CSV with a header row, where
lines starting with ``#`` are comments."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path


def rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Each data row as a dict by column, with its row number in the table (the header is row 1, comments not
    counted), for one-line errors that name the row."""
    with open(path, encoding="utf-8") as f:
        yield from enumerate(csv.DictReader(line for line in f if not line.startswith("#")), 2)
