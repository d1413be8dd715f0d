"""The shop registry: CSV and Excel import with one error per bad row, export round trip, phone masking."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from openpyxl import Workbook

from pipelines.shops import RegistryError, mask_phone, parse_shops, read_shops, shops_csv, write_shops_csv

HEADER = "id,name,address,phone,camera,frontage,violations,licence,contact,opt_out\n"
GOOD = "s1,老王水果店,建设路6号,138 1234 5678,cam-1,0.5 0.2; 0.7 0.2; 0.7 0.4,,LIC-1,王先生,no\n"


def test_csv_import_sets_bad_rows_aside_with_one_error_each() -> None:
    text = HEADER + GOOD + (
        "s2,便民超市,,1381234567890,cam-1,0.1 0.1; 0.2 0.1; 0.2 0.2,garbage,,,\n"  # line 3: phone
        "s3,小吃店,,13900000000,cam-1,0.1 0.1; 0.2,garbage,,,\n"  # line 4: frontage
        "s4,面馆,,13900000001,cam-1,0.1 0.1; 0.2 0.1; 0.2 0.2,litter,,,\n"  # line 5: violation
        "s1,重复,,13900000002,cam-1,0.1 0.1; 0.2 0.1; 0.2 0.2,,,,\n"  # line 6: repeated id
        "s5,,,13900000003,cam-1,0.1 0.1; 0.2 0.1; 0.2 0.2,,,,\n"  # line 7: no name
        "s6,书店,,+86 13900000004,cam-2,0.1 0.1; 0.2 0.1; 0.2 0.2,barbecue garbage,,,是\n")
    shops, errors = parse_shops(text.encode(), "shops.csv")
    assert [s.id for s in shops] == ["s1", "s6"]
    assert shops[0].phone == "13812345678" and shops[0].violations == ["garbage", "street_stall"]
    assert shops[1].phone == "13900000004" and shops[1].opt_out and shops[1].violations == ["barbecue", "garbage"]
    assert [e.split(": ")[0] for e in errors] == ["shops.csv:3", "shops.csv:4", "shops.csv:5", "shops.csv:6",
                                                 "shops.csv:7"]
    assert errors[0].startswith("shops.csv:3: phone: '138******7890' is not") and "1381234567890" not in errors[0]
    assert errors[1].startswith("shops.csv:4: frontage: '0.2' is not a point")
    assert errors[2].startswith("shops.csv:5: violations: ")
    assert errors[3] == "shops.csv:6: id: s1 is already registered above"
    assert errors[4] == "shops.csv:7: name: missing"


def test_a_file_without_the_columns_is_refused_whole(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"shops.csv:1: header: missing columns phone, frontage"):
        parse_shops(b"id,name,camera\ns1,a,cam\n", "shops.csv")
    with pytest.raises(RegistryError, match="cannot read"):
        read_shops(tmp_path / "none.csv")


def test_excel_import_and_gb18030_csv() -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["ID", "Name", "Address", "Phone", "Camera", "Frontage", "Violations"])
    sheet.append(["x1", "烧烤店", "解放路1号", 13700000000, "cam-1", "0 0.5; 1 0.5; 1 1", "barbecue"])
    sheet.append([None] * 7)  # blank rows in a sheet are skipped
    sheet.append(["x2", "面馆", "", "abc", "cam-1", "0 0.5; 1 0.5; 1 1", ""])
    buf = io.BytesIO()
    book.save(buf)
    shops, errors = parse_shops(buf.getvalue(), "shops.xlsx")
    assert [(s.id, s.phone, s.violations) for s in shops] == [("x1", "13700000000", ["barbecue"])]
    assert errors == ["shops.xlsx:4: phone: 'abc' is not a mobile number (11 digits, 1[3-9]...) or a landline "
                      "with its area code (0xx-xxxxxxxx)"]
    with pytest.raises(RegistryError, match="not an Excel workbook"):
        parse_shops(b"PK\x03\x04 broken", "shops.xlsx")
    shops, errors = parse_shops((HEADER + GOOD).encode("gb18030"), "shops.csv")
    assert shops[0].name == "老王水果店" and errors == []


def test_export_reads_back_the_same_registry(tmp_path: Path) -> None:
    shops, _ = parse_shops((HEADER + GOOD).encode(), "in.csv")
    write_shops_csv(tmp_path / "out.csv", shops)
    again, errors = read_shops(tmp_path / "out.csv")
    assert errors == [] and again == shops
    assert shops_csv(shops).splitlines()[0] == HEADER.strip()


def test_phones_are_masked_for_viewers() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("021-12345678") == "021****5678"
    assert mask_phone("12") == "**"
    shops, _ = parse_shops((HEADER + GOOD).encode(), "in.csv")
    assert shops[0].public(full_phone=False)["phone"] == "138****5678"
    assert shops[0].public(full_phone=True)["phone"] == "13812345678"
