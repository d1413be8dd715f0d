"""The case spool: camera case writes wait (in order, in a journal on disk) while the database cannot be reached,
and reach the store, under the ids the pipelines were given, once it answers; a wrong call still fails at once.
A Ray shard's notifications are not held behind its store calls meanwhile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from detector.backends.base import ModelIdentity
from detector.events import Alternative, EventDetails, EventState, LoadState, ViolationEvent
from pipelines.case_spool import (
    CaseSpool,
    context_from_json,
    context_to_json,
    database_down,
    event_from_json,
    event_to_json,
    read_journal,
)
from pipelines.distributed import Applier, Op
from pipelines.sinks.store import CaseContext, CaseStore, TransitionError


def event(state: EventState, ts: float, key: str = "cam:z:garbage:1") -> ViolationEvent:
    return ViolationEvent(state=state, key=key, camera="cam", zone="z", violation="garbage", start_s=1.0, ts=ts,
                          confidence=0.6, box=(10, 20, 30, 40), best_ts=ts, track_ids=(3,))


class Outage:
    """The real store behind a switch: while ``down``, every call fails as an unreachable server's would."""

    def __init__(self, store: CaseStore) -> None:
        self.store, self.down = store, False

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise OperationalError("INSERT ...", {}, ConnectionRefusedError("connection refused"))
            return real(*args, **kwargs)
        return call


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[CaseStore, Outage, CaseSpool]:
    store = CaseStore(tmp_path / "cases.db")
    db = Outage(store)
    return store, db, CaseSpool(db, tmp_path / "journal.jsonl", tmp_path)  # type: ignore[arg-type]


def test_writes_go_straight_to_the_store_while_it_answers(setup: tuple[CaseStore, Outage, CaseSpool],
                                                          tmp_path: Path) -> None:
    store, _, spool = setup
    cid = spool.record(event(EventState.START, 5.0), "cam")
    spool.add_evidence(cid, "snapshot", "cam/x.jpg", "ab" * 32)
    assert store.get(cid) is not None and store.get(cid).as_dict()["snapshot"] == "cam/x.jpg"  # type: ignore[union-attr]
    assert spool.waiting() == 0 and not (tmp_path / "journal.jsonl").exists()


def test_writes_wait_in_order_and_reach_the_store_under_their_ids(setup: tuple[CaseStore, Outage, CaseSpool],
                                                                  tmp_path: Path) -> None:
    store, db, spool = setup
    before = spool.record(event(EventState.START, 2.0, key="cam:z:garbage:0"), "cam")  # stored before the outage
    db.down = True
    cid = spool.record(event(EventState.START, 5.0), "cam", CaseContext(address="No. 3 East Road"))
    assert spool.record(event(EventState.UPDATE, 8.0), "cam") == cid  # the same place keeps its id
    assert spool.record(event(EventState.END, 9.0, key="cam:z:garbage:0"), "cam") == before  # known case
    spool.add_evidence(cid, "snapshot", "cam/y.jpg", "cd" * 32)
    spool.annotate(cid, "system", "plate not read")
    assert spool.transition(cid, "dispatched", "system") is None  # waits too
    assert store.get(cid) is None and spool.waiting() == 6
    assert [op.kind for op in read_journal(tmp_path / "journal.jsonl")] == \
        ["record", "record", "record", "evidence", "annotate", "transition"]
    assert not spool.flush()  # still down: everything keeps waiting
    assert spool.waiting() == 6
    db.down = False
    spool.record(event(EventState.END, 10.0), "cam")  # answers again, but earlier writes wait: this one too
    assert spool.waiting() == 7 and store.get(cid) is None
    assert spool.flush() and spool.waiting() == 0 and not (tmp_path / "journal.jsonl").exists()
    case = store.get(cid)
    assert case is not None and case.as_dict()["snapshot"] == "cam/y.jpg"
    assert (case.start_s, case.end_s, case.active, case.state, case.address) == \
        (1.0, 10.0, False, "dispatched", "No. 3 East Road")
    assert [h["note"] for h in store.history(cid)][-2:] == ["plate not read", ""]
    assert store.get(before).active is False  # type: ignore[union-attr]
    assert spool.replayed == 7


def test_a_journal_left_by_a_crash_is_replayed_at_the_next_start(tmp_path: Path) -> None:
    store = CaseStore(tmp_path / "cases.db")
    db = Outage(store)
    db.down = True
    first = CaseSpool(db, tmp_path / "journal.jsonl", tmp_path)  # type: ignore[arg-type]
    cid = first.record(event(EventState.START, 5.0), "cam")
    first.add_evidence(cid, "snapshot", "cam/z.jpg", "ef" * 32)
    # The process dies here (nothing else runs); the next one finds the journal, the database back.
    with (tmp_path / "journal.jsonl").open("a") as f:
        f.write('{"seq": 3, "kind": "annot')  # the line it was writing when it died
    again = CaseSpool(store, tmp_path / "journal.jsonl", tmp_path)
    assert again.waiting() == 2
    again.start()
    try:
        assert again.waiting() == 0 and store.get(cid) is not None
        assert store.get(cid).as_dict()["snapshot"] == "cam/z.jpg"  # type: ignore[union-attr]
        assert not (tmp_path / "journal.jsonl").exists()
    finally:
        again.stop()


def test_the_background_replay_applies_waiting_writes_once_the_database_answers(
        setup: tuple[CaseStore, Outage, CaseSpool]) -> None:
    store, db, spool = setup
    spool.start()
    try:
        db.down = True
        cid = spool.record(event(EventState.START, 5.0), "cam")
        db.down = False
        spool._wake.set()  # the replay thread's next try, now rather than after its back-off
        deadline = 200
        while spool.waiting() and deadline:
            spool._stop.wait(0.05)
            deadline -= 1
        assert spool.waiting() == 0 and store.get(cid) is not None
    finally:
        spool.stop()


def test_a_wrong_call_fails_at_once_and_nothing_waits(setup: tuple[CaseStore, Outage, CaseSpool]) -> None:
    _, _, spool = setup
    cid = spool.record(event(EventState.START, 5.0), "cam")
    with pytest.raises(TransitionError):
        spool.transition(cid, "handled", "system")  # registered -> handled skips dispatch: not in the flow
    with pytest.raises(KeyError):
        spool.transition("no-such-case", "dispatched", "system")
    assert spool.waiting() == 0
    assert database_down(OperationalError("SELECT 1", {}, ConnectionRefusedError()))
    assert not database_down(IntegrityError("INSERT", {}, ValueError()))


def test_events_and_contexts_survive_the_journal_unchanged() -> None:
    ev = ViolationEvent(state=EventState.UPDATE, key="k", camera="c", zone="z", violation="uncovered_truck",
                        start_s=1.5, ts=3.25, confidence=0.7, box=(1.0, 2.0, 3.5, 4.0), best_ts=2.0,
                        track_ids=(4, 9),
                        details=EventDetails(paths=("detector",), alternatives=(Alternative("truck", 0.4),),
                                             load_state=LoadState.UNCOVERED, load_probability={"uncovered": 0.8},
                                             load_samples=5))
    assert event_from_json(event_to_json(ev)) == ev
    ctx = CaseContext(address="a", gps=(30.5, 114.3), targets=("city",), payload_extra={"grid": "7"},
                      defer_dispatch=True, zone_targets={"z": ("street-office",)},
                      model=ModelIdentity("default 0.4.0", "ab" * 32))
    assert context_from_json(context_to_json(ctx)) == ctx
    assert context_from_json(context_to_json(None)) is None


def test_a_journal_that_cannot_be_written_costs_only_the_restart_safety(tmp_path: Path) -> None:
    store = CaseStore(tmp_path / "cases.db")
    db = Outage(store)
    blocked = tmp_path / "evidence"
    blocked.write_text("a file where the journal's folder should be")  # as unwritable as a full disk
    spool = CaseSpool(db, blocked / "journal.jsonl", tmp_path)  # type: ignore[arg-type]
    db.down = True
    first = spool.record(event(EventState.START, 5.0), "cam")  # held in memory, and logged
    assert spool.waiting() == 1
    blocked.unlink()
    second = spool.record(event(EventState.START, 6.0, key="cam:z:garbage:2"), "cam")
    assert [op.case_id for op in read_journal(blocked / "journal.jsonl")] == [first, second]  # written whole
    db.down = False
    assert spool.flush() and store.get(first) is not None and store.get(second) is not None


def test_notifications_are_not_held_behind_store_calls_that_wait(tmp_path: Path) -> None:
    """A Ray shard's op log: while the store is away, its events and warnings are still made, once each."""
    store = CaseStore(tmp_path / "cases.db")
    db = Outage(store)
    made: list[tuple[str, str]] = []
    applier = Applier(db, tmp_path, on_event=lambda cam, ev, case_id, epoch: made.append(("event", case_id)),  # type: ignore[arg-type]
                      on_warn=lambda cam, action, case_id: made.append(("warn", case_id)))
    ev = event(EventState.START, 5.0)
    ops = [Op(1, "record", "c1", "cam", {"event": ev, "source": "cam", "context": None}),
           Op(2, "event", "c1", "cam", {"event": ev, "clock_epoch": 0.0}),
           Op(3, "annotate", "c1", "", {"who": "system", "note": "seen"}),
           Op(4, "warn", "c1", "cam", {"action": "speak"})]
    notified: set[int] = set()
    db.down = True
    assert applier.apply(ops, 0, notified) == 0  # nothing acknowledged: the store calls come again
    assert made == [("event", "c1"), ("warn", "c1")] and notified == {2, 4}
    assert applier.apply(ops, 0, notified) == 0 and len(made) == 2  # not made twice
    db.down = False
    assert applier.apply(ops, 0, notified) == 4 and len(made) == 2 and notified == set()
    assert store.get("c1") is not None and store.history("c1")[-1]["note"] == "seen"
    # Without a record of what was made (a batch run), everything waits in order, as before.
    db.down, made[:] = True, []
    later = [Op(5, "record", "c2", "cam", {"event": event(EventState.START, 6.0, key="k2"), "source": "cam",
                                            "context": None}),
             Op(6, "event", "c2", "cam", {"event": ev, "clock_epoch": 0.0})]
    assert applier.apply(later, 4) == 4 and made == []


def test_calls_after_the_waiting_writes_are_made_once_the_database_answers(
        setup: tuple[CaseStore, Outage, CaseSpool]) -> None:
    """Work of the caller's that needs the database (a start's settling of the previous run) waits with the writes:
    it is made after them, retried while the database is away, and dropped with a log on any other error."""
    store, db, spool = setup
    db.down = True
    cid = spool.record(event(EventState.START, 5.0), "cam")
    made: list[str] = []

    def settle() -> None:
        db.end_untracked(["cam"], "ended late")  # through the switch: fails while the database is away
        made.append("settle")

    def wrong() -> None:
        raise ValueError("not a database outage")

    spool.after_waiting("settling", settle)
    spool.after_waiting("a wrong call", wrong)
    spool.after_waiting("last", lambda: made.append("last"))
    assert spool.flush() is False and made == [] and spool.waiting() == 1
    db.down = False
    assert spool.flush() is True and made == ["settle", "last"]
    case = store.get(cid)
    assert case is not None and not case.active  # the write went in first, then the settle ended it
    assert spool.flush() is True and made == ["settle", "last"]  # each made once


def test_a_store_may_be_made_while_its_database_is_away(tmp_path: Path) -> None:
    """The service's store starts without its database (the schema comes with the first call that gets in);
    anywhere else an unreachable database is an error at once."""
    url = "postgresql+psycopg://sw@127.0.0.1:9/none"  # nothing listens on port 9 (discard): refused at once
    with pytest.raises(OperationalError):
        CaseStore(url)
    waiting = CaseStore(url, wait_for_database=True)
    with pytest.raises(OperationalError):
        waiting.cases()
