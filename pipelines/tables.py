"""Registries kept as spreadsheets (shops, licensed vehicles): CSV or Excel rows in, one error per bad row.

Bureaus keep such lists in Excel or export them as CSV (UTF-8, or GB18030 as Chinese Excel writes it).
:func:`parse_table` reads either, turns each row into a record with the caller's function, sets bad rows aside
with one ``file:line: field: reason`` each, and refuses only a file it cannot read as a table at all.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from zipfile import BadZipFile

from pydantic import ValidationError

T = TypeVar("T")


class TableError(ValueError):
    """A file that cannot be read as the registry at all (missing columns, not a CSV or workbook)."""


@dataclass(frozen=True)
class Columns:
    """A registry's columns, in file order, and those every row must fill."""

    names: tuple[str, ...]
    required: tuple[str, ...]


def cell_text(value: Any) -> str:
    """A cell as text: numbers Excel stored for phone numbers or plates without ``.0``, dates as ISO."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        value = value.date()
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    return str(value).strip()


def row_error(exc: ValidationError) -> ValueError:
    """A model's validation error as one ``field: reason``."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"][:1]) or "row"
    return ValueError(f"{field}: {err['msg'].removeprefix('Value error, ')}")


def _check_header(header: Sequence[str], source: str, columns: Columns) -> None:
    names = {h.strip().lower() for h in header if h}
    missing = [c for c in columns.required if c not in names]
    if missing:
        raise TableError(f"{source}:1: header: missing columns {', '.join(missing)} "
                         f"(columns: {', '.join(columns.names)})")


def _csv_rows(data: bytes, source: str, columns: Columns) -> Iterator[tuple[int, dict[str, str]]]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise TableError(f"{source}: not UTF-8 or GB18030 text")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        _check_header(reader.fieldnames or [], source, columns)
        for row in reader:
            yield reader.line_num, {(k or "").strip().lower(): cell_text(v) for k, v in row.items()}
    except csv.Error as exc:
        raise TableError(f"{source}:{reader.line_num}: not a CSV file: {exc}") from exc


def _xlsx_rows(data: bytes, source: str, columns: Columns) -> Iterator[tuple[int, dict[str, str]]]:
    from openpyxl import load_workbook  # only imports of Excel files need it
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(io.BytesIO(data), data_only=True)  # not read-only: it would skip blank rows' lines
    except (InvalidFileException, BadZipFile, OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise TableError(f"{source}: not an Excel workbook: {exc}") from exc
    rows = book.worksheets[0].iter_rows(values_only=True)
    header = [cell_text(c).lower() for c in next(rows, ())]
    _check_header(header, source, columns)
    for line, values in enumerate(rows, start=2):
        if all(cell_text(v) == "" for v in values):
            continue
        yield line, {h: cell_text(v) for h, v in zip(header, values, strict=False)}
    book.close()


def file_bytes(path: Path) -> bytes:
    """A registry file's content.

    Raises:
        TableError: It cannot be read.
    """
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TableError(f"{path}: cannot read: {exc}") from exc


def parse_table(data: bytes, source: str, columns: Columns, record: Callable[[dict[str, str]], T],
                key: Callable[[T], str], excel: bool | None = None) -> tuple[list[T], list[str]]:
    """Records from a CSV or ``.xlsx`` file's bytes; bad rows are set aside, each with one error line.

    Args:
        data: The file's content.
        source: Its name, in error lines (an ``.xlsx`` suffix means Excel when ``excel`` is None).
        columns: The registry's columns.
        record: One row's text cells (lower-case column names) -> a record; raises ``ValueError("field: reason")``.
        key: A record's unique key (a repeated key keeps its first row).
        excel: Whether it is an Excel workbook (None: by name, or by the zip signature).

    Raises:
        TableError: The file is not a readable table with the required columns.
    """
    if excel is None:
        excel = source.lower().endswith(".xlsx") or data[:2] == b"PK"
    rows = _xlsx_rows(data, source, columns) if excel else _csv_rows(data, source, columns)
    out: list[T] = []
    errors: list[str] = []
    seen: set[str] = set()
    for line, raw in rows:
        try:
            missing = next((c for c in columns.required if not raw.get(c)), None)
            if missing is not None:
                raise ValueError(f"{missing}: missing")
            item = record(raw)
        except ValueError as exc:
            errors.append(f"{source}:{line}: {exc}")
            continue
        if key(item) in seen:
            errors.append(f"{source}:{line}: {columns.names[0]}: {key(item)} is already registered above")
            continue
        seen.add(key(item))
        out.append(item)
    return out, errors
