"""The project's load labels of real trucks (``datasets/truck_loads.csv``): one row per truck box of a source's
own labels (source, image file name, 0-based line of its label file, load: covered / uncovered / empty /
unknown). ``evaluate loads`` scores the product against them; ``datasets pack`` turns the boxes labelled
``uncovered`` into ``uncovered_truck``."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from datasets import commented_csv

TRUCK_LOADS = Path(__file__).resolve().parent / "truck_loads.csv"
"""The load-label file shipped with the project."""


class TruckLoad(NamedTuple):
    """One labelled truck box."""

    source: str
    image: str
    line: int
    load: str


def read_truck_loads(path: Path = TRUCK_LOADS) -> list[TruckLoad]:
    """The rows of a load-label file (lines starting with ``#`` are comments).

    Raises:
        ValueError: A row without the file's columns, or with a line that is not a number.
    """
    rows: list[TruckLoad] = []
    for n, row in commented_csv.rows(path):
        try:
            rows.append(TruckLoad(row["source"], row["image"], int(row["line"]), row["load"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: row {n}: expected source,image,line,load ({exc})") from exc
    return rows


def uncovered_trucks(path: Path = TRUCK_LOADS) -> dict[str, frozenset[tuple[str, int]]]:
    """The truck boxes labelled ``uncovered``, by source: ``(image file name, line)``."""
    out: dict[str, set[tuple[str, int]]] = {}
    for r in read_truck_loads(path):
        if r.load == "uncovered":
            out.setdefault(r.source, set()).add((r.image, r.line))
    return {k: frozenset(v) for k, v in out.items()}
