"""`streetwatch evaluate reviews`: thresholds from the operators' verdicts in a real case store (SQLite)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from detector.backends.base import ModelIdentity, identify
from detector.events import EventState, ViolationEvent
from pipelines.config import RulesConfig
from pipelines.sinks.store import CaseContext, CaseStore
from service.cli import main


def _case(store: CaseStore, n: int, camera: str, violation: str, conf: float, verdict: str,
          model: ModelIdentity | None = None) -> None:
    event = ViolationEvent(state=EventState.START, key=f"{camera}:z:{violation}:{n}", camera=camera, zone="z",
                           violation=violation, start_s=1.0, ts=5.0, confidence=conf, box=(10, 20, 30, 40),
                           best_ts=5.0, track_ids=(n,))
    store.review(store.record(event, f"{camera}.mp4", CaseContext(model=model)), verdict, "operator")


def _threshold(out: Path, camera: str | None = None) -> float:
    """The garbage threshold of a fragment: the global rules', or under ``camera``'s entry."""
    doc = yaml.safe_load((out / "thresholds.yaml").read_text())
    if camera is not None:
        assert [c["id"] for c in doc["cameras"]] == [camera] and "rules" not in doc
        doc = doc["cameras"][0]
    return RulesConfig.model_validate(doc["rules"]).min_confidence["garbage"]


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
    assert _threshold(tmp_path / "thr", "cam1") == 0.4  # 3 of 4 kept cases confirmed, all confirmed ones kept
    # Another camera's cases only: none confirmed, no threshold; no reviews at all is a clear stop.
    assert main(["evaluate", "reviews", "--db", str(db), "--camera", "cam2", "--out", str(tmp_path / "t2")]) == 0
    assert "kept at the default): garbage" in (tmp_path / "t2" / "thresholds.yaml").read_text()
    with pytest.raises(SystemExit, match=r"no reviewed cases \(camera nope\)"):
        main(["evaluate", "reviews", "--db", str(db), "--camera", "nope", "--out", str(tmp_path / "t3")])


def test_thresholds_from_the_cases_of_one_model(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """After a model change the verdicts on the old model's confidences do not set the new model's thresholds."""
    caplog.set_level(logging.INFO)
    (tmp_path / "site").mkdir()
    weights = tmp_path / "site" / "model.onnx"
    weights.write_bytes(b"the site model's weights")
    new = identify(weights, "0.4.1")
    old = ModelIdentity("default 0.4.0", "ab" * 32)
    db = tmp_path / "cases.db"
    store = CaseStore(db)
    n = 0
    for model, verdicts in ((old, [(0.9, "confirmed"), (0.8, "rejected"), (0.7, "rejected"), (0.6, "confirmed")]),
                            (new, [(0.5, "confirmed"), (0.4, "confirmed"), (0.3, "rejected")]),
                            (None, [(0.35, "confirmed")])):  # stored before models were recorded
        for conf, verdict in verdicts:
            n += 1
            _case(store, n, "cam1", "garbage", conf, verdict, model)
    assert {c.model for c in store.cases()} == {"default 0.4.0", "site 0.4.1", ""}
    store.close()
    service = tmp_path / "service.yaml"
    service.write_text(f"storage: {{db: {db}}}\nmodel: {{path: {weights.parent}}}\n")
    # The service's model is the default: its own three verdicts give 0.4 (both confirmed kept, P 1.0).
    assert main(["evaluate", "reviews", "--config", str(service), "--precision", "0.9",
                 "--out", str(tmp_path / "new")]) == 0
    assert _threshold(tmp_path / "new") == 0.4
    assert "5 reviewed cases of other models" in caplog.text
    assert "site 0.4.1 (sha256 " in caplog.text and "not recorded: 1" in caplog.text
    # The old model by a prefix of its SHA-256: precision 0.9 only at its surest case.
    assert main(["evaluate", "reviews", "--db", str(db), "--model", "abababab", "--precision", "0.9",
                 "--out", str(tmp_path / "old")]) == 0
    assert _threshold(tmp_path / "old") == 0.9
    # All of them mixed is said, and --db alone reads every model.
    caplog.clear()
    assert main(["evaluate", "reviews", "--db", str(db), "--precision", "0.5", "--out", str(tmp_path / "all")]) == 0
    assert "the verdicts of 3 models are mixed" in caplog.text
    with pytest.raises(SystemExit, match=r"no reviewed cases \(all cameras\) of the model sha256 cdcdcdcdcdcd .*"
                       r"--model all"):
        main(["evaluate", "reviews", "--db", str(db), "--model", "cd" * 8, "--out", str(tmp_path / "none")])
    with pytest.raises(SystemExit, match="not a model file or folder, 'all' or a SHA-256"):
        main(["evaluate", "reviews", "--db", str(db), "--model", "nope", "--out", str(tmp_path / "bad")])
    service.write_text(f"storage: {{db: {db}}}\nmodel: {{path: {tmp_path / 'gone.onnx'}}}\n")
    with pytest.raises(SystemExit, match=r"the configured model .*gone\.onnx is not here"):
        main(["evaluate", "reviews", "--config", str(service), "--out", str(tmp_path / "gone")])
    # A camera with a model of its own: --camera reads that model's cases by default.
    service.write_text(f"storage: {{db: {db}}}\nmodel: {{path: {tmp_path / 'gone.onnx'}}}\n"
                       f"cameras:\n  - id: cam1\n    source: rtsp://192.0.2.1/1\n    model: {weights.parent}\n")
    assert main(["evaluate", "reviews", "--config", str(service), "--camera", "cam1", "--precision", "0.9",
                 "--out", str(tmp_path / "cam")]) == 0
    assert _threshold(tmp_path / "cam", "cam1") == 0.4
