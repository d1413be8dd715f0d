"""The same case store on SQLite and on a real PostgreSQL server (schema from the Alembic migrations)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from detector.events import EventState, ViolationEvent
from pipelines.sinks.store import CaseContext, CaseStore, TransitionError
from tests.helpers.net import free_port
from tests.helpers.pg import postgres_cluster


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_cluster(free_port()) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CaseStore]:
    if request.param == "sqlite":
        s = CaseStore(tmp_path / "cases.db")
    else:
        url = request.getfixturevalue("pg_url")
        s = CaseStore(url)
        with s.engine.begin() as c:  # a clean slate per test, schema kept
            c.execute(text("TRUNCATE reminders, shops, outbox, case_history, evidence, cases"))
    yield s
    s.close()


def ev(state: EventState, ts: float, conf: float = 0.6, key: str = "cam:z:garbage:1") -> ViolationEvent:
    return ViolationEvent(state=state, key=key, camera="cam", zone="z", violation="garbage", start_s=1.0, ts=ts,
                          confidence=conf, box=(10, 20, 30, 40), best_ts=ts, track_ids=(3,))


def test_schema_version_and_lifecycle(store: CaseStore) -> None:
    assert store.version == 9
    ctx = CaseContext(address="No. 8", gps=(30.1, 120.2), targets=("city",))
    cid = store.record(ev(EventState.START, 5.0), "a.mp4", ctx)
    assert store.record(ev(EventState.UPDATE, 9.0, conf=0.9), "a.mp4", ctx) == cid
    assert store.record(ev(EventState.END, 12.0), "a.mp4", ctx) == cid
    store.add_evidence(cid, "snapshot", "e/x.jpg", "ab" * 32)
    store.add_evidence(cid, "snapshot", "e/y.jpg", "cd" * 32)
    c = store.get(cid)
    assert c is not None
    assert (c.start_s, c.confirmed_s, c.end_s, c.confidence, c.active) == (1.0, 5.0, 12.0, 0.9, False)
    assert c.evidence == {"snapshot": {"path": "e/y.jpg", "sha256": "cd" * 32}}
    assert c.address == "No. 8" and c.gps == (30.1, 120.2)
    total, page = store.query(violation="garbage", limit=10)
    assert total == 1 and page[0].id == cid
    assert store.query(camera="other")[0] == 0


def test_cases_left_active_by_a_dead_run_are_ended_once(store: CaseStore) -> None:
    open_case = store.record(ev(EventState.START, 5.0), "a.mp4")
    ended_case = store.record(ev(EventState.START, 5.0, key="cam:z:garbage:2"), "a.mp4")
    store.record(ev(EventState.END, 8.0, key="cam:z:garbage:2"), "a.mp4")
    other = store.record(ev(EventState.START, 5.0, key="cam:z:garbage:3"), "b.mp4")
    store.transition(other, "dispatched", "op")
    assert sorted(store.end_untracked(["cam"], "tracking restarted")) == sorted([open_case, other])
    assert not any(c.active for c in store.cases())
    assert store.get(other).state == "dispatched"  # type: ignore[union-attr]  # the case flow is untouched
    assert store.history(open_case)[-1]["note"] == "tracking restarted"
    assert store.end_untracked(["cam"], "again") == [] and len(store.history(ended_case)) == 1


def test_flow_outbox_and_dead_letters(store: CaseStore) -> None:
    cid = store.record(ev(EventState.START, 5.0), "a.mp4", CaseContext(targets=("city", "backup")))
    due = store.outbox_due(time.time())
    assert [(r["target"], r["idempotency_key"]) for r in due] == [("city", f"{cid}:city"),
                                                                  ("backup", f"{cid}:backup")]
    store.outbox_result(due[1]["id"], False, "HTTP 500", next_attempt=time.time() + 60, dead=True)
    store.outbox_result(due[0]["id"], True)
    assert store.get(cid).state == "dispatched"  # type: ignore[union-attr]
    assert [r["state"] for r in store.outbox(case_id=cid)] == ["delivered", "dead"]
    assert store.retry_dead(due[1]["id"]) and not store.retry_dead(due[1]["id"])
    store.transition(cid, "handled", "oper", "gone")
    with pytest.raises(TransitionError, match="cannot become dispatched"):
        store.transition(cid, "dispatched", "oper")
    with pytest.raises(KeyError):
        store.transition("nope", "closed", "oper")
    assert [h["to"] for h in store.history(cid)] == ["registered", "dispatched", "handled"]
    assert store.counts() == {"cases": [("garbage", "handled", 1)], "outbox": {"delivered": 1, "pending": 1}}


def test_reviews_and_daily_counts(store: CaseStore) -> None:
    a = store.record(ev(EventState.START, 5.0, key="k1"), "a.mp4")
    b = store.record(ev(EventState.START, 6.0, key="k2"), "a.mp4")
    store.add_evidence(a, "frame", "e/a_frame.jpg", "ef" * 32)  # clean frames are evidence too
    assert store.review(a, "confirmed", "alice").state == "registered"
    rejected = store.review(b, "rejected", "bob", "a parked tricycle, no goods")
    assert (rejected.review, rejected.state, rejected.review_reason) == ("rejected", "rejected",
                                                                       "a parked tricycle, no goods")
    assert store.history(b)[-1] == {**store.history(b)[-1], "to": "rejected", "who": "bob",
                                    "note": "review: rejected (a parked tricycle, no goods)"}
    with pytest.raises(ValueError, match="verdict"):
        store.review(a, "maybe", "alice")
    with pytest.raises(KeyError):
        store.review("nope", "confirmed", "alice")
    assert [(c.id, c.review, c.reviewed_by) for c in store.reviewed()] == [(a, "confirmed", "alice"),
                                                                          (b, "rejected", "bob")]
    assert store.get(a).evidence["frame"]["path"] == "e/a_frame.jpg"  # type: ignore[union-attr]
    rows = store.daily("2000-01-01")
    assert sorted((r["state"], r["count"]) for r in rows) == [("registered", 1), ("rejected", 1)]
    assert all(len(r["day"]) == 10 and r["camera"] == "cam" for r in rows)
