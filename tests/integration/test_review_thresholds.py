"""`streetwatch evaluate reviews`: thresholds from the operators' verdicts in a real case store (SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from detector.events import EventState, ViolationEvent
from pipelines.config import RulesConfig
from pipelines.sinks.store import CaseStore
from service.cli import main


def _case(store: CaseStore, n: int, camera: str, violation: str, conf: float, verdict: str) -> None:
    event = ViolationEvent(state=EventState.START, key=f"{camera}:z:{violation}:{n}", camera=camera, zone="z",
                           violation=violation, start_s=1.0, ts=5.0, confidence=conf, box=(10, 20, 30, 40),
                           best_ts=5.0, track_ids=(n,))
    store.review(store.record(event, f"{camera}.mp4"), verdict, "operator")


def test_thresholds_from_reviewed_cases(tmp_path: Path) -> None:
    db = tmp_path / "cases.db"
    store = CaseStore(db)
    for n, (conf, verdict) in enumerate([(0.9, "confirmed"), (0.7, "confirmed"), (0.45, "rejected"),
                                         (0.4, "confirmed"), (0.3, "rejected"), (0.26, "rejected")]):
        _case(store, n, "cam1", "garbage", conf, verdict)
    _case(store, 10, "cam2", "garbage", 0.35, "rejected")
    store.record(ViolationEvent(state=EventState.START, key="cam1:z:garbage:99", camera="cam1", zone="z",
                                violation="garbage", start_s=1.0, ts=5.0, confidence=0.2, box=(1, 2, 3, 4),
                                best_ts=5.0), "cam1.mp4")  # not reviewed: not counted
    store.close()
    assert main(["evaluate", "reviews", "--db", str(db), "--camera", "cam1", "--precision", "0.75",
                 "--out", str(tmp_path / "thr")]) == 0
    rules = RulesConfig.model_validate(yaml.safe_load((tmp_path / "thr" / "thresholds.yaml").read_text())["rules"])
    assert rules.min_confidence["garbage"] == 0.4  # 3 of 4 kept cases confirmed, all confirmed ones kept
    # Another camera's cases only: none confirmed, no threshold; no reviews at all is a clear stop.
    assert main(["evaluate", "reviews", "--db", str(db), "--camera", "cam2", "--out", str(tmp_path / "t2")]) == 0
    assert "kept at the default): garbage" in (tmp_path / "t2" / "thresholds.yaml").read_text()
    with pytest.raises(SystemExit, match=r"no reviewed cases \(camera nope\)"):
        main(["evaluate", "reviews", "--db", str(db), "--camera", "nope", "--out", str(tmp_path / "t3")])
