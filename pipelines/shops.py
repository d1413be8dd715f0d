"""The shop registry of frontage responsibility ("门前三包"): shops, their pavements, import and export.

A shop answers for the pavement in front of it (its *frontage*, a polygon in its camera's normalised
coordinates written ``x y; x y; ...``) and for the violations listed (default ``garbage street_stall``).
Bureaus keep such lists as spreadsheets: :func:`read_shops` imports CSV (UTF-8, with or without BOM, or GB18030
as Chinese Excel writes it) and Excel ``.xlsx``; every bad row is set aside with one
``file:line: field: reason`` error and the rest are imported. :func:`write_shops_csv` exports them back.

Phone numbers are personal data: :func:`mask_phone` (``138****5678``) is what viewers and logs see.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import numpy as np
from pydantic import Field, ValidationError, field_validator

from detector.reminders import DEFAULT_SHOP_VIOLATIONS, Frontage
from detector.zones import PolygonZone
from pipelines.config import Strict, Unit, Violation, _check_polygon
from pipelines.tables import Columns, TableError, file_bytes, parse_table, row_error

#: The registry's columns, in file order (the last three optional).
COLUMNS: tuple[str, ...] = ("id", "name", "address", "phone", "camera", "frontage", "violations", "licence",
                            "contact", "opt_out")
SHOP_COLUMNS = Columns(COLUMNS, ("id", "name", "phone", "camera", "frontage"))
_PHONE = re.compile(r"^(?:\+?86)?(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$")
_TRUE = {"1", "true", "yes", "y", "是"}
_FALSE = {"", "0", "false", "no", "n", "否"}


RegistryError = TableError
"""A registry file that cannot be read at all (missing columns, not a CSV or workbook)."""


def _default_violations() -> list[Violation]:
    return cast(list[Violation], list(DEFAULT_SHOP_VIOLATIONS))


class Shop(Strict):
    """One registered street shop and the pavement it answers for."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=128)
    address: str = Field(default="", max_length=256)
    phone: str = Field(description="Mobile (13800138000, +86 allowed) or landline with area code (021-12345678).")
    camera: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    frontage: list[tuple[Unit, Unit]] = Field(min_length=3, description="Normalised [x, y] points of the pavement "
                                              "in front of the shop, in the camera's view.")
    violations: list[Violation] = Field(default_factory=_default_violations, min_length=1,
                                        description="The violations the shop answers for.")
    licence: str = Field(default="", max_length=64, description="Business licence number.")
    contact: str = Field(default="", max_length=64, description="Contact person.")
    opt_out: bool = Field(default=False, description="The shop asked not to be texted.")

    _poly = field_validator("frontage")(_check_polygon)

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str) -> str:
        compact = re.sub(r"[\s()]", "", v)
        m = _PHONE.match(compact)
        if m is None:
            shown = mask_phone(v) if len(re.sub(r"\D", "", v)) >= 8 else v[:20]  # a real number stays masked
            raise ValueError(f"{shown!r} is not a mobile number (11 digits, 1[3-9]...) or a landline "
                             "with its area code (0xx-xxxxxxxx)")
        return m.group(1)

    def frontage_spec(self) -> Frontage:
        """The reminder loop's form of the shop."""
        return Frontage(self.id, PolygonZone(np.asarray(self.frontage, np.float32)), frozenset(self.violations),
                        self.opt_out)

    def public(self, full_phone: bool) -> dict[str, Any]:
        """JSON-ready, with the phone masked unless ``full_phone``."""
        out = self.model_dump(mode="json")
        if not full_phone:
            out["phone"] = mask_phone(self.phone)
        return out


def mask_phone(phone: str) -> str:
    """``13812345678`` -> ``138****5678``: the first three and last four digits of a number (any shorter
    string is masked whole)."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 8:
        return "*" * len(digits)
    return f"{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"


def format_frontage(points: Iterable[tuple[float, float]]) -> str:
    """A polygon in the registry's text form: ``x y; x y; ...``."""
    return "; ".join(f"{x:.4g} {y:.4g}" for x, y in points)


def parse_frontage(text: str) -> list[tuple[float, float]]:
    """Read ``x y; x y; ...`` (commas between x and y are accepted too).

    Raises:
        ValueError: Not pairs of numbers.
    """
    points = []
    for part in [p for p in text.split(";") if p.strip()]:
        nums = part.replace(",", " ").split()
        if len(nums) != 2:
            raise ValueError(f"'{part.strip()}' is not a point 'x y' (write points as 'x y; x y; x y')")
        try:
            points.append((float(nums[0]), float(nums[1])))
        except ValueError as exc:
            raise ValueError(f"'{part.strip()}' is not a point of two numbers") from exc
    return points


def shop_from_row(raw: dict[str, str]) -> Shop:
    """A shop from one row of text cells (the registry's columns).

    Raises:
        ValueError: ``field: reason`` of the row's first problem.
    """
    data: dict[str, Any] = {k: raw[k] for k in COLUMNS if raw.get(k)}
    try:
        data["frontage"] = parse_frontage(data["frontage"])
    except ValueError as exc:
        raise ValueError(f"frontage: {exc}") from exc
    if "violations" in data:
        data["violations"] = data["violations"].replace(",", " ").split()
    flag = str(data.pop("opt_out", "")).lower()
    if flag not in _TRUE | _FALSE:
        raise ValueError(f"opt_out: {flag!r} is not yes or no")
    data["opt_out"] = flag in _TRUE
    try:
        return Shop.model_validate(data)
    except ValidationError as exc:
        raise row_error(exc) from exc


def parse_shops(data: bytes, source: str, excel: bool | None = None) -> tuple[list[Shop], list[str]]:
    """Shops from a CSV or ``.xlsx`` file's bytes; bad rows are set aside, each with one error line (see
    :func:`pipelines.tables.parse_table`).

    Raises:
        RegistryError: The file is not a readable registry (no header, wrong format).
    """
    return parse_table(data, source, SHOP_COLUMNS, shop_from_row, lambda s: s.id, excel)


def read_shops(path: Path) -> tuple[list[Shop], list[str]]:
    """Shops from a registry file (see :func:`parse_shops`).

    Raises:
        RegistryError: The file cannot be read or is not a registry.
    """
    return parse_shops(file_bytes(path), str(path))


def shops_csv(shops: Iterable[Shop]) -> str:
    """The registry as CSV text (full phone numbers: an operator's export), readable by :func:`parse_shops`."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(COLUMNS)
    for s in shops:
        out.writerow([s.id, s.name, s.address, s.phone, s.camera, format_frontage(s.frontage), " ".join(s.violations),
                      s.licence, s.contact, "yes" if s.opt_out else "no"])
    return buf.getvalue()


def write_shops_csv(path: Path, shops: Iterable[Shop]) -> None:
    """Export the registry as UTF-8 CSV with a BOM (so Excel shows the Chinese names)."""
    path.write_text(shops_csv(shops), encoding="utf-8-sig")
