"""Plate reading on synthetic road-camera frames (PP-OCRv4 through rapidocr-onnxruntime): a floor on the share
read exactly, no plate where there is none, and the ``streetwatch plates`` command's JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.plates import cjk_font, plate_scene
from detector.plate_reader import PlateReader
from models import DEFAULT_MODEL
from pipelines.analyze import AnalyzeOptions, analyze
from tests.helpers.data import RENDER_IMGSZ

ROOT = Path(__file__).resolve().parents[2]
FONT = cjk_font()

pytestmark = pytest.mark.skipif(FONT is None and os.environ.get("CI") != "true",
                                reason="no CJK font here (scripts/install-test-services.sh installs one)")

#: Share of synthetic plates read exactly from the truck's box (measured on 2026-12-01: 30 of 40 with seed 1,
#: 45 of 60 with seed 7; the misses are mostly small plates whose province character is unreadable).
FLOOR = 0.6


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader()


def test_synthetic_plates_are_read_exactly_above_the_floor(reader: PlateReader) -> None:
    assert FONT is not None
    rng = np.random.default_rng(1)
    scenes = [plate_scene(rng, FONT) for _ in range(30)]
    read = [(r[0].plate if (r := reader.read(s.image, s.vehicle)) else None) for s in scenes]
    exact = sum(p == s.plate for p, s in zip(read, scenes, strict=True))
    assert exact / len(scenes) >= FLOOR, list(zip(read, [s.plate for s in scenes], strict=True))
    wrong = sum(p is not None and p != s.plate for p, s in zip(read, scenes, strict=True))
    assert wrong / len(scenes) <= 0.2  # a wrong plate is worse than none: measured 4 of 40 and 4 of 60


def test_no_plate_is_read_where_there_is_none(reader: PlateReader) -> None:
    assert FONT is not None
    rng = np.random.default_rng(5)
    for _ in range(6):
        s = plate_scene(rng, FONT, with_plate=False)
        assert reader.read(s.image) == [] and reader.read(s.image, s.vehicle) == []


def test_the_plates_command_writes_vehicles_and_plates(tmp_path: Path) -> None:
    assert FONT is not None
    rng = np.random.default_rng(2)
    plated = next(s for s in (plate_scene(rng, FONT) for _ in range(10))
                  if PlateReader().read(s.image, s.vehicle))  # one the reader can read
    bare = plate_scene(rng, FONT, with_plate=False)
    cv2.imwrite(str(tmp_path / "plated.jpg"), plated.image)
    cv2.imwrite(str(tmp_path / "bare.jpg"), bare.image)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "plates.json"
    run = subprocess.run([sys.executable, "-m", "service.cli", "plates", str(tmp_path / "plated.jpg"),
                          str(tmp_path / "bare.jpg"), str(tmp_path / "broken.jpg"), "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    body = json.loads(out.read_text(encoding="utf-8"))
    by_source = {Path(i["source"]).name: i["vehicles"] for i in body["images"]}
    assert [v["plate"] for v in by_source["plated.jpg"] if v["plate"]] == [plated.plate]
    vehicle = next(v for v in by_source["plated.jpg"] if v["plate"])
    assert set(vehicle) == {"box", "label", "plate", "plate_confidence", "plate_box"}
    x1, y1, x2, y2 = vehicle["plate_box"]
    assert plated.vehicle[0] <= x1 < x2 <= plated.vehicle[2] and plated.vehicle[1] <= y1 < y2 <= plated.vehicle[3]
    assert all(v["plate"] is None for v in by_source["bare.jpg"])
    assert [Path(e["source"]).name for e in body["errors"]] == ["broken.jpg"]


def test_analyze_names_the_vehicle_of_truck_cases(tmp_path: Path, street_clip: tuple[Path, dict]) -> None:
    (tmp_path / "trucks.csv").write_text("plate,company,permit,valid_from,valid_to\n"
                                         "晋HA6021,太原建运,TY-1,2026-01-01,2026-12-31\n", encoding="utf-8")
    (tmp_path / "cams.yaml").write_text("muck_register: trucks.csv\ncameras: [{id: road, plates: true}]\n")
    res = analyze(AnalyzeOptions(inputs=[str(street_clip[0])], out=tmp_path / "out", model=DEFAULT_MODEL,
                                 config=tmp_path / "cams.yaml", dwell=2.0, imgsz=RENDER_IMGSZ, progress=False))
    assert res.errors == []
    truck = next(c for c in res.cases if c["violation"] == "uncovered_truck")
    # The rendered truck carries no plate: read on its frames, and none invented.
    assert truck["vehicle"]["readings"] == 0 and truck["vehicle"]["plate"] is None
    assert all(c["vehicle"] == {} for c in res.cases if c["violation"] != "uncovered_truck")
