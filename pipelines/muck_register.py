"""The register of vehicles licensed to carry muck (construction spoil, sand, gravel) and the check of a plate.

A bureau licenses muck transport to a few companies: each vehicle has a plate, its company, a permit number and
a validity window, sometimes with the hours it may drive (night-time transport is common). A loaded truck whose
plate is not in the register, whose permit has expired or is not yet valid, or that drives outside its hours
is ``unlicensed``. Files are CSV or Excel with ``plate, company, permit, valid_from, valid_to`` and an optional
``hours`` (``20:00-06:00``); bad rows are set aside with one ``file:line: field: reason`` each.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from detector.plates import plate_kind, read_plate
from detector.warnings import QuietHours
from pipelines.tables import Columns, file_bytes, parse_table, row_error

REGISTER_COLUMNS = Columns(("plate", "company", "permit", "valid_from", "valid_to", "hours"),
                           ("plate", "company", "permit", "valid_from", "valid_to"))

LicenceStatus = Literal["licensed", "unlicensed", "expired", "not_yet_valid", "outside_hours"]


class Vehicle(BaseModel):
    """One licensed vehicle."""

    model_config = ConfigDict(extra="forbid")

    plate: str = Field(description="The plate, e.g. 晋HA6021 (separators and lower case are accepted).")
    company: str = Field(min_length=1, max_length=128)
    permit: str = Field(min_length=1, max_length=64, description="Permit (licence) number.")
    valid_from: dt.date
    valid_to: dt.date
    hours: str = Field(default="", description="Daily window it may drive in (20:00-06:00); empty: any time.")

    @field_validator("plate")
    @classmethod
    def _plate(cls, v: str) -> str:
        plate = re.sub(r"[\s·.\-]", "", v).upper()  # a register is typed: no look-alikes are guessed here
        if plate_kind(plate) is None:
            raise ValueError(f"{v!r} is not a Chinese plate (province, city letter, 5 or 6 characters; no I or O)")
        return plate

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        if v:
            QuietHours.parse(v)
        return v

    @model_validator(mode="after")
    def _window(self) -> Vehicle:
        if self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from")
        return self


@dataclass(frozen=True)
class LicenceCheck:
    """What the register says about a plate at a moment: its status and its entry (None: not registered)."""

    status: LicenceStatus
    vehicle: Vehicle | None = None

    @property
    def unlicensed(self) -> bool:
        """Whether a loaded truck with this plate is an unlicensed muck truck."""
        return self.status != "licensed"


class MuckRegister:
    """The licensed vehicles, by plate (replaced whole when a new list is imported; readers see one or the other)."""

    def __init__(self, vehicles: Iterable[Vehicle]) -> None:
        self.vehicles = {v.plate: v for v in vehicles}

    def replace(self, vehicles: Iterable[Vehicle]) -> None:
        """Take a new list (a bureau re-imports its whole register)."""
        self.vehicles = {v.plate: v for v in vehicles}

    def check(self, plate: str, when: dt.datetime) -> LicenceCheck:
        """The status of a plate (as read: look-alikes are resolved) at a local time."""
        found = self.vehicles.get(read_plate(plate) or plate)
        if found is None:
            return LicenceCheck("unlicensed")
        if when.date() < found.valid_from:
            return LicenceCheck("not_yet_valid", found)
        if when.date() > found.valid_to:
            return LicenceCheck("expired", found)
        if found.hours and not QuietHours.parse(found.hours).contains(when.time()):
            return LicenceCheck("outside_hours", found)
        return LicenceCheck("licensed", found)


def vehicle_from_row(raw: dict[str, str]) -> Vehicle:
    """A vehicle from one row of text cells (dates as 2026-01-31, or 2026/1/31 as Chinese Excel writes them).

    Raises:
        ValueError: ``field: reason`` of the row's first problem.
    """
    data: dict[str, str] = {k: raw[k] for k in REGISTER_COLUMNS.names if raw.get(k)}
    for key in ("valid_from", "valid_to"):
        try:
            data[key] = dt.date(*(int(p) for p in data[key].split("T")[0].replace("/", "-").split("-"))).isoformat()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{key}: {data[key]!r} is not a date (2026-01-31)") from exc
    try:
        return Vehicle.model_validate(data)
    except ValidationError as exc:
        raise row_error(exc) from exc


def parse_register(data: bytes, source: str, excel: bool | None = None) -> tuple[list[Vehicle], list[str]]:
    """Licensed vehicles from a CSV or ``.xlsx`` file; bad rows set aside, each with one error line.

    Raises:
        TableError: The file is not a readable register.
    """
    return parse_table(data, source, REGISTER_COLUMNS, vehicle_from_row, lambda v: v.plate, excel)


def read_register(path: Path) -> tuple[list[Vehicle], list[str]]:
    """Licensed vehicles from a register file (see :func:`parse_register`).

    Raises:
        TableError: The file cannot be read or is not a register.
    """
    return parse_register(file_bytes(path), str(path))


def company_stats(cases: Iterable[dict[str, object]]) -> dict[str, dict[str, int]]:
    """Per company (``unregistered`` for plates not in the register): truck cases with a plate, uncovered
    loads, and unlicensed ones (expired, out of hours, not registered)."""
    out: dict[str, dict[str, int]] = {}
    for c in cases:
        vehicle = c.get("vehicle")
        if not isinstance(vehicle, dict) or not vehicle.get("plate"):
            continue
        s = out.setdefault(str(vehicle.get("company") or "unregistered"),
                           {"truck_cases": 0, "uncovered_loads": 0, "unlicensed": 0})
        s["truck_cases"] += 1
        s["uncovered_loads"] += int(c.get("violation") == "uncovered_truck")
        s["unlicensed"] += int(bool(vehicle.get("unlicensed")))
    return out


def register_csv(vehicles: Iterable[Vehicle]) -> str:
    """The register as CSV text, readable by :func:`parse_register`."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(REGISTER_COLUMNS.names)
    for v in vehicles:
        out.writerow([v.plate, v.company, v.permit, v.valid_from.isoformat(), v.valid_to.isoformat(), v.hours])
    return buf.getvalue()
