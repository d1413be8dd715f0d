"""Case store (SQLite WAL, versioned schema) and evidence files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import av
import numpy as np

from detector.digest import sha256_file
from detector.events import EventState, ViolationEvent
from pipelines.sinks.evidence import EvidenceRecorder
from pipelines.sinks.store import CaseStore


def event(state: EventState, ts: float, conf: float = 0.6, key: str = "cam:z:garbage:1") -> ViolationEvent:
    return ViolationEvent(state=state, key=key, camera="cam", zone="z", violation="garbage", start_s=1.0, ts=ts,
                          confidence=conf, box=(10, 20, 30, 40), best_ts=ts, track_ids=(3,))


def test_lifecycle_updates_one_case_and_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "cases.db"
    store = CaseStore(db)
    assert store.version == 9
    cid = store.record(event(EventState.START, 5.0), "a.mp4")
    assert store.record(event(EventState.UPDATE, 9.0, conf=0.9), "a.mp4") == cid
    assert store.record(event(EventState.END, 12.0), "a.mp4") == cid
    other = store.record(event(EventState.START, 5.0), "b.mp4")  # same place key, other source: other case
    assert other != cid
    store.add_evidence(cid, "snapshot", "evidence/x.jpg", "ab" * 32)
    store.close()
    # A second process opening the file sees every committed case (nothing was held in memory).
    again = CaseStore(db)
    cases = {c.id: c for c in again.cases()}
    assert set(cases) == {cid, other}
    c = cases[cid]
    assert (c.start_s, c.confirmed_s, c.end_s, c.confidence, c.active) == (1.0, 5.0, 12.0, 0.9, False)
    assert c.as_dict()["snapshot"] == "evidence/x.jpg"
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_evidence_snapshot_and_clip_cover_the_violation(tmp_path: Path) -> None:
    rec = EvidenceRecorder(tmp_path / "ev", long_s=60, pre_s=2, post_s=2, fast_fps=5, slow_fps=1)
    finished = []
    ev = None
    for i in range(0, 100):  # 10 fps for 10 s
        ts = i / 10
        img = np.full((120, 160, 3), i % 255, np.uint8)
        finished += rec.observe(ts, img)
        if i == 50:
            ev = ViolationEvent(EventState.START, "k", "cam", "z", "garbage", start_s=3.0, ts=ts, confidence=0.8,
                                box=(10, 10, 50, 50), best_ts=ts)
            snap = rec.start_case("case1", ev, img, np.array([[0, 0], [100, 0], [100, 100]], np.float32))
            assert snap.exists() and sha256_file(snap)
    assert [(c, k) for c, k, _ in finished] == [("case1", "clip")]
    clip = finished[0][2]
    with av.open(str(clip)) as c:
        st = c.streams.video[0]
        frames = list(c.decode(st))
    # From 2 s before the first sighting (3.0 - 2) to 2 s after the confirmation (5.0 + 2).
    times = [float(f.time) for f in frames]
    assert times[0] == 0.0
    assert 5.5 <= times[-1] <= 6.2
    assert len(frames) >= 12
