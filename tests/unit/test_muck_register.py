"""The register of licensed muck trucks: import with one error per bad row, and the check of a plate."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

from openpyxl import Workbook

from pipelines.muck_register import MuckRegister, company_stats, parse_register, register_csv
from pipelines.report import RunStats, write_cases_json

CSV = ("plate,company,permit,valid_from,valid_to,hours\n"
       "晋H·A6021,太原建运渣土公司,TY-2026-001,2026-01-01,2026-12-31,20:00-06:00\n"  # night only
       "晋HB1234,太原建运渣土公司,TY-2026-002,2026/1/1,2026/6/30,\n"  # expires mid-year
       "晋HO1234,某公司,TY-9,2026-01-01,2026-12-31,\n"  # line 4: O in a plate
       "晋HC5555,某公司,TY-10,2026-12-31,2026-01-01,\n"  # line 5: window backwards
       "晋HD6666,某公司,,2026-01-01,2026-12-31,\n"  # line 6: no permit
       "晋HE7777,某公司,TY-11,31.12.2026,2026-12-31,\n")  # line 7: a date it cannot read


def test_import_sets_bad_rows_aside() -> None:
    vehicles, errors = parse_register(CSV.encode(), "muck.csv")
    assert [v.plate for v in vehicles] == ["晋HA6021", "晋HB1234"]
    assert vehicles[1].valid_to == dt.date(2026, 6, 30)
    assert [e.split(": ")[0] for e in errors] == ["muck.csv:4", "muck.csv:5", "muck.csv:6", "muck.csv:7"]
    assert errors[0].startswith("muck.csv:4: plate: '晋HO1234' is not a Chinese plate")
    assert errors[2] == "muck.csv:6: permit: missing"
    assert errors[3].startswith("muck.csv:7: valid_from: '31.12.2026' is not a date")
    assert "valid_to is before valid_from" in errors[1]


def test_a_plate_is_licensed_only_inside_its_window_and_hours() -> None:
    reg = MuckRegister(parse_register(CSV.encode(), "muck.csv")[0])
    night, day = dt.datetime(2026, 5, 1, 23, 30), dt.datetime(2026, 5, 1, 14, 0)
    assert reg.check("晋HA6021", night).status == "licensed"
    assert reg.check("晋HA6O21", night).status == "licensed"  # read with an O: the same plate
    assert reg.check("晋HA6021", day).status == "outside_hours" and reg.check("晋HA6021", day).unlicensed
    assert reg.check("晋HB1234", dt.datetime(2026, 7, 1, 12, 0)).status == "expired"
    assert reg.check("晋HB1234", dt.datetime(2025, 12, 31, 12, 0)).status == "not_yet_valid"
    check = reg.check("晋HZ9999", day)
    assert check.status == "unlicensed" and check.vehicle is None


def test_excel_register_and_csv_round_trip() -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Plate", "Company", "Permit", "Valid_from", "Valid_to"])
    sheet.append(["晋HA6021", "太原建运", "P1", dt.datetime(2026, 1, 1), dt.datetime(2026, 12, 31)])
    buf = io.BytesIO()
    book.save(buf)
    vehicles, errors = parse_register(buf.getvalue(), "muck.xlsx")
    assert errors == [] and vehicles[0].valid_from == dt.date(2026, 1, 1)
    again, errors = parse_register(register_csv(vehicles).encode(), "out.csv")
    assert errors == [] and again == vehicles


def test_each_company_s_trucks_in_cases_json_and_the_report(tmp_path: Path) -> None:
    truck = {"id": "c1", "violation": "uncovered_truck", "source": "a.mp4", "camera": "road", "zone": "z",
             "start_s": 1.0, "confirmed_s": 2.0, "end_s": 3.0, "confidence": 0.8, "box": [1, 2, 3, 4],
             "snapshot": None, "clip": None, "details": {},
             "vehicle": {"plate": "晋HA6021", "company": "太原建运", "unlicensed": True}}
    other = {**truck, "id": "c2", "vehicle": {"plate": "晋HZ9999", "unlicensed": True}}
    unread = {**truck, "id": "c3", "vehicle": {"plate": None}}
    garbage = {**truck, "id": "c4", "violation": "garbage", "vehicle": {}}
    cases = [truck, other, unread, garbage]
    assert company_stats(cases) == {"太原建运": {"truck_cases": 1, "uncovered_loads": 1, "unlicensed": 1},
                                    "unregistered": {"truck_cases": 1, "uncovered_loads": 1, "unlicensed": 1}}
    stats: RunStats = {"inputs": 1, "analysed": 1, "failed": 0, "frames_decoded": 0, "frames_inferred": 0,
                       "frames_gated": 0, "video_s": 0.0, "wall_s": 0.0, "sources": {}}
    write_cases_json(tmp_path / "cases.json", cases, [], stats, {})
    assert json.loads((tmp_path / "cases.json").read_text())["companies"]["太原建运"]["truck_cases"] == 1
    write_cases_json(tmp_path / "none.json", [garbage], [], stats, {})
    assert "companies" not in json.loads((tmp_path / "none.json").read_text())
