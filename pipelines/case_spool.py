"""Cases survive an unreachable database: the service's camera pipelines write through a :class:`CaseSpool`.

While the case store answers, every call goes straight to it, as before. When a call fails because the database
cannot be reached (PostgreSQL restarting or failing over, the network to it gone, SQLite locked past its
timeout), that call and every later one wait, in order, in memory and in a journal file (one JSON line each,
flushed to disk before the call returns), and the pipelines go on: a new case gets its id here, so evidence, voice
warnings and the event stream carry on with it. A background thread replays the waiting calls with the same
:class:`~pipelines.distributed.Applier` that applies a Ray worker's op log, oldest first, as soon as the
database answers again; the journal is then emptied. If the service stops or dies meanwhile, the next start
replays the journal before anything else touches the store. A confirmed case is never lost to a database outage.
Where the database refuses part of a previous run's journal at start, :attr:`CaseSpool.on_previous_run_applied`
is told once the rest is in, so the caller can settle what that run left open (its tracking died with it).
The records of texts to shops (:meth:`CaseSpool.add_reminder`, same database) wait and replay with the case writes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from detector.backends.base import ModelIdentity
from detector.events import EventDetails, EventState, ViolationEvent
from pipelines.distributed import Applier, Op
from pipelines.sinks.store import CaseContext, CaseStore

if TYPE_CHECKING:
    from pipelines.sinks.shop_store import ShopBook

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
MAX_RETRY_S = 10.0  # a database back is noticed within this (one refused connect per try meanwhile)


def database_down(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached (worth waiting for), not that a call was wrong."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def event_to_json(ev: ViolationEvent) -> dict[str, Any]:
    """A violation event as JSON-ready values (:func:`event_from_json` reads it back)."""
    out = asdict(ev)
    out["state"] = ev.state.value
    out["details"] = ev.details.as_dict()
    return out


def event_from_json(raw: dict[str, Any]) -> ViolationEvent:
    """Read :func:`event_to_json`'s form back."""
    return ViolationEvent(state=EventState(raw["state"]), key=str(raw["key"]), camera=str(raw["camera"]),
                          zone=str(raw["zone"]), violation=str(raw["violation"]), start_s=float(raw["start_s"]),
                          ts=float(raw["ts"]), confidence=float(raw["confidence"]),
                          box=(float(raw["box"][0]), float(raw["box"][1]), float(raw["box"][2]), float(raw["box"][3])),
                          best_ts=float(raw["best_ts"]), track_ids=tuple(int(t) for t in raw["track_ids"]),
                          details=EventDetails.from_dict(raw["details"]))


def context_to_json(ctx: CaseContext | None) -> dict[str, Any] | None:
    """A case context as JSON-ready values (:func:`context_from_json` reads it back)."""
    return None if ctx is None else asdict(ctx)


def context_from_json(raw: dict[str, Any] | None) -> CaseContext | None:
    """Read :func:`context_to_json`'s form back."""
    if raw is None:
        return None
    gps = raw.get("gps")
    zones = raw.get("zone_targets")
    model = raw.get("model")
    return CaseContext(address=str(raw.get("address", "")), gps=(float(gps[0]), float(gps[1])) if gps else None,
                       targets=tuple(raw.get("targets", ())), payload_extra=raw.get("payload_extra"),
                       defer_dispatch=bool(raw.get("defer_dispatch", False)),
                       zone_targets={str(z): tuple(t) for z, t in zones.items()} if zones else None,
                       model=ModelIdentity(str(model["name"]), str(model["sha256"])) if model else None)


#: Arguments of each journalled call that are objects, with how they are written and read back.
_CODECS: dict[str, tuple[Any, Any]] = {"event": (event_to_json, event_from_json),
                                        "context": (context_to_json, context_from_json)}


def op_to_line(op: Op) -> str:
    """One journal line of a waiting call."""
    args = {k: _CODECS[k][0](v) if k in _CODECS else v for k, v in op.args.items()}
    return json.dumps({"seq": op.seq, "kind": op.kind, "case_id": op.case_id, "camera": op.camera, "args": args},
                      ensure_ascii=False)


def op_from_line(line: str) -> Op:
    """Read :func:`op_to_line`'s form back (raises ``ValueError``/``KeyError`` on a damaged line)."""
    raw = json.loads(line)
    args = {k: _CODECS[k][1](v) if k in _CODECS else v for k, v in raw["args"].items()}
    return Op(int(raw["seq"]), str(raw["kind"]), str(raw["case_id"]), str(raw["camera"]), args)


def read_journal(path: Path) -> list[Op]:
    """The calls a journal holds, oldest first. A damaged line (the process died while writing it: only the last
    can be) is logged and skipped; a missing file holds none."""
    if not path.is_file():
        return []
    ops = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            ops.append(op_from_line(line))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.error("%s:%d: damaged journal line skipped: %s", path, n, exc)
    return ops


class CaseSpool:
    """A :class:`~pipelines.sinks.store.CaseWriter` in front of the case store that holds the writes while the
    database cannot be reached, and replays them, in order, when it can (see the module's description).

    Args:
        store: The case store.
        journal: The journal file (created when a call first has to wait; a previous run's is replayed by
            :meth:`start`).
        evidence_root: The evidence folder (evidence paths of the calls are relative to it).
        shops: The shop registry (in the same database), whose reminder records wait with the case writes.
    """

    def __init__(self, store: CaseStore, journal: Path, evidence_root: Path, shops: ShopBook | None = None) -> None:
        self.store = store
        self.shops = shops
        self.journal = journal
        self.applier = Applier(store, evidence_root, shops=shops)
        self.lock = threading.Lock()  # the writers, and the waiting list
        self._replaying = threading.Lock()  # one replay at a time
        self.pending: list[Op] = read_journal(journal)
        self.seq = max((op.seq for op in self.pending), default=0)
        # A previous run's writes still waiting (its last sequence number and its cases), and who is told once
        # they are all applied after start() (the first replay of start() is the caller's to follow up).
        self._previous_last = self.seq
        self._previous_cases = sorted({op.case_id for op in self.pending})
        self.previous_run_cases: tuple[str, ...] = tuple(self._previous_cases)  # the journal's cases, at start
        self.on_previous_run_applied: Callable[[list[str]], None] | None = None
        self._after: list[tuple[str, Callable[[], object]]] = []  # calls to make once the database takes writes
        self.case_ids: dict[str, str] = {}  # place key -> case id, for places whose violation has not ended
        self.replayed = 0  # calls applied late, since start (metrics, tests)
        self._journal_whole = False  # an append failed: write the whole journal next time
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- CaseWriter --------------------------------------------------------------------------------
    def record(self, event: ViolationEvent, source: str, context: CaseContext | None = None) -> str:
        """Apply a lifecycle event; returns the case id (chosen here while the database is away)."""
        key = f"{source}|{event.key}"
        with self.lock:
            known = self.case_ids.get(key)
            if not self.pending:
                try:
                    case_id = self.store.record(event, source, context, case_id=known)
                    self._remember(key, case_id, event)
                    return case_id
                except Exception as exc:
                    self._went_down(exc)
            case_id = known or uuid.uuid4().hex[:16]
            self._remember(key, case_id, event)
            self._wait("record", case_id, event.camera, event=event, source=source, context=context)
            return case_id

    def add_evidence(self, case_id: str, kind: str, path: str, sha256: str) -> None:
        """Record an evidence file (``path`` relative to the evidence root)."""
        self._call("evidence", case_id, lambda: self.store.add_evidence(case_id, kind, path, sha256),
                   kind=kind, path=path, sha256=sha256)

    def transition(self, case_id: str, to_state: str, who: str, note: str = "") -> object:
        """Move a case along the case flow (``None`` while the change waits for the database)."""
        return self._call("transition", case_id, lambda: self.store.transition(case_id, to_state, who, note),
                          to_state=to_state, who=who, note=note)

    def enqueue_dispatch(self, case_id: str, context: CaseContext, note: str = "") -> None:
        """Queue a case for dispatch."""
        self._call("dispatch", case_id, lambda: self.store.enqueue_dispatch(case_id, context, note),
                   context=context, note=note)

    def annotate(self, case_id: str, who: str, note: str) -> None:
        """Add a history note."""
        self._call("annotate", case_id, lambda: self.store.annotate(case_id, who, note), who=who, note=note)

    def set_vehicle(self, case_id: str, vehicle: dict[str, Any]) -> None:
        """Record a truck case's vehicle."""
        self._call("vehicle", case_id, lambda: self.store.set_vehicle(case_id, vehicle), vehicle=dict(vehicle))

    # -- shop reminders ------------------------------------------------------------------------------
    def add_reminder(self, case_id: str, shop: str, camera: str, zone: str, violation: str, *, sent: bool,
                     reason: str | None, channels: Sequence[str], message: str, offence: int,
                     deadline_in_s: float | None) -> int | None:
        """Record a violation attributed to a shop (:meth:`ShopBook.add_reminder`); returns the reminder's id, or
        None while the record waits for the database (it is replayed with the time it happened)."""
        book = self._book()
        created = datetime.now(UTC)
        got = self._call("reminder", case_id, lambda: book.add_reminder(
            case_id, shop, camera, zone, violation, sent=sent, reason=reason, channels=channels, message=message,
            offence=offence, deadline_in_s=deadline_in_s, created=created),
            camera=camera, shop=shop, zone=zone, violation=violation, sent=sent, reason=reason,
            channels=list(channels), message=message, offence=offence, deadline_in_s=deadline_in_s,
            created=created.isoformat())
        return got if isinstance(got, int) else None

    def set_reminder_outcome(self, case_id: str, shop: str, outcome: str, time_to_clear_s: float | None) -> None:
        """The re-check's outcome of a case's open reminder to a shop (:meth:`ShopBook.set_outcome`)."""
        book = self._book()
        self._call("reminder_outcome", case_id, lambda: book.set_outcome(case_id, shop, outcome, time_to_clear_s),
                   shop=shop, outcome=outcome, time_to_clear_s=time_to_clear_s)

    def _book(self) -> ShopBook:
        if self.shops is None:
            raise ValueError("this spool was given no shop registry")
        return self.shops

    # -- waiting and replaying ---------------------------------------------------------------------
    def _remember(self, key: str, case_id: str, event: ViolationEvent) -> None:
        if event.state == EventState.END:
            self.case_ids.pop(key, None)
        else:
            self.case_ids[key] = case_id

    def _call(self, op_kind: str, case_id: str, direct: Callable[[], object], /, **args: Any) -> object:
        with self.lock:
            if not self.pending:
                try:
                    return direct()
                except Exception as exc:
                    self._went_down(exc)
            self._wait(op_kind, case_id, "", **args)
            return None

    def _went_down(self, exc: Exception) -> None:
        """Re-raise what is not an unreachable database; else say that writes wait from now on."""
        if not database_down(exc):
            raise exc
        log.error("case store unreachable (%s): case writes wait in %s until it answers again",
                  str(exc).splitlines()[0], self.journal)
        self._wake.set()

    def _wait(self, op_kind: str, case_id: str, camera: str, /, **args: Any) -> None:
        """Hold one call (under the lock): in memory and, flushed to disk, in the journal."""
        self.seq += 1
        op = Op(self.seq, op_kind, case_id, camera, args)
        self.pending.append(op)
        self._journal(op)

    def _journal(self, op: Op | None) -> None:
        """Append ``op`` to the journal, or write the journal whole (``op`` None, or after a write that failed).

        A journal that cannot be written (the disk full too) costs only the restart safety: the calls are held in
        memory, logged, and the whole list is written again at the next chance.
        """
        try:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            if op is not None and self._journal_whole is False:
                with self.journal.open("a", encoding="utf-8") as f:
                    f.write(op_to_line(op) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            else:
                part = self.journal.with_name(self.journal.name + ".part")
                with part.open("w", encoding="utf-8") as f:
                    f.writelines(op_to_line(o) + "\n" for o in self.pending)
                    f.flush()
                    os.fsync(f.fileno())
                part.replace(self.journal)
            self._journal_whole = False
        except OSError as exc:
            self._journal_whole = True  # a torn line may be there: next time the file is written whole
            log.error("case journal %s not written (%s): %d waiting case writes are held in memory only until it "
                      "can be", self.journal, exc, len(self.pending))

    def waiting(self) -> int:
        """Calls waiting for the database."""
        with self.lock:
            return len(self.pending)

    def after_waiting(self, what: str, call: Callable[[], object]) -> None:
        """Make ``call`` once the database takes writes again, after the calls waiting now; while it raises that the
        database is away (:func:`database_down`) it is tried again with them, any other error is logged and it is
        dropped. ``what`` names it in the log. For work of the caller's own that needs the database (the start's
        settling of a previous run, when the database is away at start)."""
        with self.lock:
            self._after.append((what, call))
        self._wake.set()

    def flush(self) -> bool:
        """Replay the waiting calls, oldest first, as far as the database takes them, then the calls made
        :meth:`after_waiting`; True when none is left.

        The database is asked without holding the writers' lock (a database that is slow to refuse must not
        hold the cameras): calls that come meanwhile wait behind the replayed ones.
        """
        with self._replaying:
            with self.lock:
                batch = list(self.pending)
            if batch and not self._replay(batch):
                return False
            return self._make_after()

    def _make_after(self) -> bool:
        """The calls waiting for the database to take writes, in order; True when all were made."""
        while True:
            with self.lock:
                if not self._after:
                    return True
                what, call = self._after[0]
            try:
                call()
                log.info("%s: done", what)
            except Exception as exc:
                if database_down(exc):
                    log.info("%s waits for the database: %s", what, str(exc).splitlines()[0])
                    return False
                log.exception("%s failed", what)
            with self.lock:
                self._after.pop(0)

    def _replay(self, batch: list[Op]) -> bool:
        """Apply ``batch`` (the calls waiting now) as far as the database takes it; True when none is left."""
        last = self.applier.apply(batch, batch[0].seq - 1)
        self._previous_applied(last)
        with self.lock:
            self.pending = [op for op in self.pending if op.seq > last]
            done = sum(1 for op in batch if op.seq <= last)
            self.replayed += done
            if self.pending:
                if done or self._journal_whole:  # the file still lists what was applied, or missed a write
                    self._journal(None)
                return False
            try:
                self.journal.unlink(missing_ok=True)
            except OSError as exc:  # a later start replays it again: the same cases updated, a note twice
                log.error("case journal %s not removed: %s", self.journal, exc)
        log.info("case store answers again: %d waiting case writes applied", done)
        return True

    def _previous_applied(self, last: int) -> None:
        """A replay got as far as ``last``: once that covers a previous run's writes, say so (once), where this is
        a replay after start(): start()'s own first replay is followed up by its caller."""
        if not self._previous_last or last < self._previous_last:
            return
        cases, self._previous_last, self._previous_cases = self._previous_cases, 0, []
        hook = self.on_previous_run_applied
        if self._thread is None or hook is None:
            return
        log.info("the previous run's waiting case writes are all applied now (%d cases)", len(cases))
        try:
            hook(cases)
        except Exception:  # the follow-up is the caller's; the replay goes on
            log.exception("following up the previous run's late case writes failed")

    def start(self) -> None:
        """Replay a previous run's journal (raises nothing: what the database does not take yet keeps waiting),
        then keep replaying in the background whenever calls wait."""
        if self.pending:
            log.warning("%s: %d case writes of a previous run wait; replaying", self.journal, len(self.pending))
            self.flush()
        self._thread = threading.Thread(target=self._run, name="case-spool", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = FIRST_RETRY_S
        while not self._stop.is_set():
            self._wake.wait(delay if self.waiting() or self._after else None)
            self._wake.clear()
            if self._stop.is_set():
                break
            before = self.waiting()
            self.flush()
            delay = FIRST_RETRY_S if self.waiting() < before else min(delay * 2, MAX_RETRY_S)

    def stop(self) -> None:
        """Stop replaying (one last try first); what still waits stays in the journal for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
