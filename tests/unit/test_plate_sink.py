"""A truck case's vehicle: the plate voted over the case's frames and the register's word, on a real store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from detector.events import EventState, ViolationEvent
from detector.plate_reader import Box, PlateReading
from detector.rules import ZoneSpec
from detector.types import CANONICAL_LABELS
from detector.zones import PolygonZone
from pipelines.muck_register import MuckRegister, parse_register
from pipelines.plate_sink import PlateSetup, PlateSink
from pipelines.plate_stage import PlateStage
from pipelines.sinks.store import CaseStore
from pipelines.sources import Frame
from tests.helpers.detections import make_detections

REGISTER = ("plate,company,permit,valid_from,valid_to,hours\n"
            "晋HA6021,太原建运,TY-1,2026-01-01,2026-12-31,20:00-06:00\n")


class ScriptedReader:
    """Reads the plates it is given, one per call (None: nothing read)."""

    def __init__(self, script: list[str | None]) -> None:
        self.script = list(script)

    def read(self, image: npt.NDArray[np.uint8], box: Box | None = None) -> list[PlateReading]:
        text = self.script.pop(0) if self.script else None
        return [PlateReading(text, 0.9, (1, 2, 3, 4), text)] if text else []


def event(state: EventState, ts: float, violation: str = "uncovered_truck") -> ViolationEvent:
    return ViolationEvent(state, "k", "cam", "road", violation, 1.0, ts, 0.8, (10.0, 10.0, 50.0, 40.0), ts)


def test_the_voted_plate_and_its_licence_are_on_the_case(tmp_path: Path) -> None:
    store = CaseStore(tmp_path / "c.db")
    register = MuckRegister(parse_register(REGISTER.encode(), "r.csv")[0])
    day = dt.datetime(2026, 5, 1, 14, 0)  # outside the permit's night hours
    sink = PlateSink(PlateSetup(ScriptedReader(["晋HA6021", "晋HA8021", None, "晋HA6021"]), register,
                                lambda ts: day), store)
    frame = Frame(np.zeros((60, 80, 3), np.uint8), 0.0)
    case_id = store.record(event(EventState.START, 2.0), "src")
    for i, state in enumerate([EventState.START, EventState.UPDATE, EventState.UPDATE, EventState.UPDATE]):
        sink.on_event(event(state, 2.0 + i), case_id, frame)
    sink.on_event(event(EventState.END, 9.0), case_id, None)
    vehicle = store.get(case_id).vehicle  # type: ignore[union-attr]
    assert vehicle["plate"] == "晋HA6021" and vehicle["readings"] == 3
    assert "plate" not in store.get(case_id).evidence  # type: ignore[union-attr]  # no evidence folder here
    assert vehicle["licence"] == "outside_hours" and vehicle["unlicensed"] is True
    assert (vehicle["company"], vehicle["permit"]) == ("太原建运", "TY-1")
    assert store.get(case_id).as_dict()["vehicle"]["plate"] == "晋HA6021"  # type: ignore[union-attr]


def test_other_cases_and_unread_plates(tmp_path: Path) -> None:
    store = CaseStore(tmp_path / "c.db")
    sink = PlateSink(PlateSetup(ScriptedReader([None, "晋HZ9999"]), None), store)
    frame = Frame(np.zeros((60, 80, 3), np.uint8), 0.0)
    garbage = store.record(event(EventState.START, 2.0, "garbage"), "src")
    sink.on_event(event(EventState.START, 2.0, "garbage"), garbage, frame)
    assert store.get(garbage).vehicle == {}  # type: ignore[union-attr]
    truck = store.record(ViolationEvent(EventState.START, "t", "cam", "road", "uncovered_truck", 1.0, 2.0, 0.8,
                                        (10.0, 10.0, 50.0, 40.0), 2.0), "src")
    sink.on_event(event(EventState.START, 2.0), truck, frame)
    assert store.get(truck).vehicle == {"plate": None, "plate_confidence": None, "readings": 0}  # type: ignore[union-attr]
    sink.on_event(event(EventState.UPDATE, 3.0), truck, frame)
    assert store.get(truck).vehicle["plate"] == "晋HZ9999"  # type: ignore[union-attr]
    assert "licence" not in store.get(truck).vehicle  # type: ignore[union-attr]  # no register configured


def test_a_truck_case_is_dispatched_after_its_first_reading_with_the_vehicle(tmp_path: Path) -> None:
    from detector.rules import RuleSettings
    from detector.types import CANONICAL_LABELS
    from pipelines.config import CameraConfig
    from pipelines.runner import build_pipeline
    from pipelines.sinks.store import CaseContext

    store = CaseStore(tmp_path / "c.db")
    pipe = build_pipeline(CameraConfig(id="cam", plates=True), RuleSettings(), list(CANONICAL_LABELS), store, "src",
                          context=CaseContext(targets=("city",)), plates=PlateSetup(ScriptedReader(["晋HA6021"])))
    frame = Frame(np.zeros((60, 80, 3), np.uint8), 2.0)
    pipe._emit(event(EventState.START, 2.0), frame)
    (row,) = store.outbox_due(1e12)
    assert row["target"] == "city" and row["payload"]["vehicle"]["plate"] == "晋HA6021"
    pipe._emit(ViolationEvent(EventState.START, "g", "cam", "road", "garbage", 1.0, 2.0, 0.8, (1, 2, 3, 4), 2.0), frame)
    garbage = [r for r in store.outbox_due(1e12) if r["case_id"] != row["case_id"]]
    assert len(garbage) == 1 and garbage[0]["payload"]["vehicle"] is None  # dispatched at once, as before


def test_the_clearest_plate_crop_is_kept_as_evidence(tmp_path: Path) -> None:
    store = CaseStore(tmp_path / "c.db")
    sink = PlateSink(PlateSetup(ScriptedReader(["晋HA6021", "晋HA8021"])), store, "src", tmp_path / "ev" / "cam",
                     tmp_path / "ev")
    image = np.zeros((60, 80, 3), np.uint8)
    image[2:4, 1:3] = 255
    case_id = store.record(event(EventState.START, 2.0), "src")
    sink.on_event(event(EventState.START, 2.0), case_id, Frame(image, 2.0))
    sink.on_event(event(EventState.UPDATE, 3.0), case_id, Frame(image, 3.0))  # a misreading: crop kept as was
    plate = store.get(case_id).evidence["plate"]  # type: ignore[union-attr]
    assert plate["path"] == f"cam/{case_id}_plate.jpg" and (tmp_path / "ev" / plate["path"]).is_file()


def test_the_plate_stage_marks_trucks_in_licence_zones_and_reads_each_a_few_times() -> None:
    register = MuckRegister(parse_register(REGISTER.encode(), "r.csv")[0])
    night = dt.datetime(2026, 5, 1, 23, 0)  # inside the permit's hours
    left = ZoneSpec("road", PolygonZone(np.array([[0, 0], [0.5, 0], [0.5, 1], [0, 1]], np.float32)),
                    violations=frozenset({"unlicensed_muck_truck"}))
    reader = ScriptedReader(["晋HA6021", "晋HZ9999", "晋HZ9999", "晋HZ9999", "晋HZ9999"])
    stage = PlateStage(PlateSetup(reader, register, lambda ts: night), list(CANONICAL_LABELS), [left],
                       max_reads=3, enough=2, interval_s=0.5)
    frame_rows = [(10, 10, 40, 50, 0.9, "truck"), (10, 60, 40, 90, 0.9, "car"), (60, 10, 90, 50, 0.9, "truck")]
    marks = []
    for k in range(6):  # truck 1 in the zone; the car and truck 3 (outside the zone) are never read
        det = make_detections(frame_rows, [1, 2, 3])
        out = stage(det, Frame(np.zeros((100, 100, 3), np.uint8), k * 0.25))
        marks.append(out.data["unlicensed"].tolist())
    assert marks[0] == [0, -1, -1]  # licensed at night
    assert marks[-1] == [1, -1, -1]  # two of three readings say another plate: not in the register
    assert stage.readings == 3  # at most max_reads, at least interval_s apart (six frames, 0.25 s apart)
    # One reading of a plate not in the register accuses nobody; a second agreeing one does.
    once = PlateStage(PlateSetup(ScriptedReader(["晋HZ9999", None, "晋HZ9999"]), register, lambda ts: night),
                      list(CANONICAL_LABELS), [left], interval_s=0.5)
    truck = make_detections([(10, 10, 40, 50, 0.9, "truck")], [1])
    seen = [int(once(truck, Frame(np.zeros((100, 100, 3), np.uint8), k * 0.5)).data["unlicensed"][0])
            for k in range(3)]
    assert seen == [-1, -1, 1]
    with pytest.raises(ValueError, match="register"):
        PlateStage(PlateSetup(reader, None), list(CANONICAL_LABELS), [left])


def test_an_unlicensed_covered_truck_opens_its_own_case_through_the_pipeline(tmp_path: Path) -> None:
    from detector.rules import RuleSettings
    from pipelines.config import CameraConfig, ZoneConfig
    from pipelines.runner import build_pipeline, run_source
    from tests.helpers.detections import FakeBackend

    store = CaseStore(tmp_path / "c.db")
    register = MuckRegister(parse_register(REGISTER.encode(), "r.csv")[0])
    day = dt.datetime(2026, 5, 1, 14, 0)
    cam = CameraConfig(id="cam", plates=True, detect_fps=2, zones=[ZoneConfig(
        id="road", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)], violations=["uncovered_truck", "unlicensed_muck_truck"])])
    covered = [make_detections([(100 + 20 * i, 300, 300 + 20 * i, 450, 0.9, "truck")]) for i in range(8)]
    backend = FakeBackend(script=covered)
    pipe = build_pipeline(cam, RuleSettings(), backend.names, store, "src",
                          plates=PlateSetup(ScriptedReader(["晋HZ9999"] * 20), register, lambda ts: day))
    frames = (Frame(np.zeros((720, 1280, 3), np.uint8), i * 0.5, i) for i in range(8))
    run_source(frames, pipe, backend)
    pipe.finish()
    (case,) = store.cases()
    assert case.violation == "unlicensed_muck_truck" and case.details.load_state == "covered"
    assert case.vehicle["plate"] == "晋HZ9999" and case.vehicle["licence"] == "unlicensed"
