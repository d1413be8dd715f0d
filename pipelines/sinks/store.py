"""The case store: SQLite (WAL) by default, PostgreSQL through a SQLAlchemy URL.

A case is committed when its violation starts, before anything reports it, so
a crash after an alert never loses the case. Updates and the end of a
violation change the same row (keyed by the violation's place key), and each
evidence file is a row of its own with its SHA-256.

The schema is the same on both databases and is created and upgraded by the
Alembic migrations in ``pipelines/sinks/migrations`` when the store opens.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import BindParameter, Connection, Engine, bindparam, create_engine, event, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from detector.backends.base import ModelIdentity
from detector.events import EventDetails, ViolationEvent

log = logging.getLogger(__name__)

#: The city case flow: allowed state changes (``rejected``: the operator says it is no violation).
TRANSITIONS: dict[str, set[str]] = {
    "registered": {"dispatched", "rejected", "closed"},
    "dispatched": {"handled", "rejected"},
    "handled": {"closed"},
    "rejected": set(),
    "closed": set(),
}


class TransitionError(ValueError):
    """A state change the case flow does not allow."""


@dataclass(frozen=True)
class CaseContext:
    """Where a case happened, and where it must be dispatched."""

    address: str = ""
    gps: tuple[float, float] | None = None
    targets: tuple[str, ...] = ()
    payload_extra: dict[str, Any] | None = None
    defer_dispatch: bool = False  # a voice warning comes first; dispatch only if it has no effect
    zone_targets: dict[str, tuple[str, ...]] | None = None  # zones whose cases go elsewhere than ``targets``
    model: ModelIdentity | None = None  # the detector's weights: a new case records them as the model that raised it

    def targets_for(self, zone: str) -> tuple[str, ...]:
        """The notifiers a case of ``zone`` is sent to."""
        return self.zone_targets.get(zone, self.targets) if self.zone_targets else self.targets


class CaseWriter(Protocol):
    """What a camera pipeline writes: the :class:`CaseStore` itself, or a log of the same calls that a
    Ray worker sends to the central store (:class:`pipelines.distributed.OpLog`)."""

    def record(self, event: ViolationEvent, source: str, context: CaseContext | None = None) -> str:
        """Apply a lifecycle event; returns the case id."""

    def add_evidence(self, case_id: str, kind: str, path: str, sha256: str) -> None:
        """Record an evidence file (``path`` relative to the evidence root)."""

    def transition(self, case_id: str, to_state: str, who: str, note: str = "") -> object:
        """Move a case along the case flow."""

    def enqueue_dispatch(self, case_id: str, context: CaseContext, note: str = "") -> None:
        """Queue a case for dispatch."""

    def annotate(self, case_id: str, who: str, note: str) -> None:
        """Add a history note."""

    def set_vehicle(self, case_id: str, vehicle: dict[str, Any]) -> None:
        """Record a truck case's vehicle (plate, register status)."""


def where_equal(**filters: object) -> tuple[str, dict[str, object]]:
    """A ``WHERE`` clause (or nothing) and its arguments for ``column = value`` filters; None values are left
    out. The keys are column names and never come from a request."""
    given = {col: val for col, val in filters.items() if val is not None}
    cond = " AND ".join(f"{col} = :{col}" for col in given)
    return (f" WHERE {cond}" if cond else ""), given


def iso_time(when: datetime) -> str:
    """A time as the database stores it (UTC, milliseconds), so stored times compare as text."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


def _now() -> str:
    return iso_time(datetime.now(UTC))


@dataclass(frozen=True)
class Case:
    """A stored case with its evidence paths."""

    id: str
    violation: str
    source: str
    camera: str
    zone: str
    start_s: float
    end_s: float
    confirmed_s: float
    confidence: float
    box: list[float]
    track_ids: list[int]
    active: bool
    state: str
    evidence: dict[str, dict[str, str]]
    address: str = ""
    gps: tuple[float, float] | None = None
    created_at: str = ""
    review: str | None = None  # an operator's verdict: confirmed or rejected
    review_reason: str = ""
    reviewed_by: str | None = None
    details: EventDetails = field(default_factory=EventDetails)
    vehicle: dict[str, Any] = field(default_factory=dict)  # trucks: plate, plate_confidence, company, licence...
    model: str = ""  # the model that raised the case (name and version); empty: not recorded
    model_sha256: str = ""  # the SHA-256 of its weights

    def as_dict(self) -> dict[str, Any]:
        """Return the case as plain JSON-ready data (evidence flattened)."""
        snap = self.evidence.get("snapshot", {})
        clip = self.evidence.get("clip", {})
        return {
            "id": self.id, "violation": self.violation, "source": self.source, "camera": self.camera,
            "zone": self.zone, "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
            "confirmed_s": round(self.confirmed_s, 3), "confidence": round(self.confidence, 4),
            "box": [round(v, 1) for v in self.box], "track_ids": self.track_ids, "state": self.state,
            "snapshot": snap.get("path"), "clip": clip.get("path"),
            "sha256": {"snapshot": snap.get("sha256"), "clip": clip.get("sha256")},
            "details": self.details.as_dict(), "vehicle": dict(self.vehicle),
            "model": self.model, "model_sha256": self.model_sha256,
        }


MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
CONNECT_TIMEOUT_S = 5  # seconds to reach a PostgreSQL server before a write counts as failed


def database_url(target: Path | str) -> str:
    """A SQLAlchemy URL for a store: a path means a SQLite file."""
    if isinstance(target, str) and "://" in target:
        return target
    return f"sqlite:///{Path(target)}"


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's begin hook below issue BEGIN
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # writers queue up instead of failing mid-transaction

    return engine


class CaseStore:
    """Cases, their history, evidence and dispatch outbox (thread-safe).

    Args:
        target: A SQLite file path, or a SQLAlchemy URL (``postgresql+psycopg://...``).
        wait_for_database: A database that cannot be reached now is no error (the service starts while its
            PostgreSQL is away): the schema is brought up by the first call once it answers; until then every call
            fails as during any outage (``OperationalError``), which the service's callers wait out.
    """

    def __init__(self, target: Path | str, wait_for_database: bool = False) -> None:
        url = database_url(target)
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(url)
        else:
            # A database that does not answer is given up on within seconds (libpq waits for ever by default):
            # camera writes then wait in the service's journal (pipelines.case_spool) instead of stalling.
            args = {"connect_timeout": CONNECT_TIMEOUT_S} if url.startswith("postgresql") else {}
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=5, connect_args=args)
        self.url = url
        self._lock = threading.Lock()
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        try:
            self.ensure_schema()
        except OperationalError as exc:
            if not wait_for_database:
                raise
            log.warning("case database %s does not answer (%s); its schema is brought up once it does",
                        make_url(url).render_as_string(hide_password=True), str(exc).splitlines()[0])

    def ensure_schema(self) -> None:
        """Bring the schema up to date, once: at construction, or by the first call after the database answers."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                self._migrate()
                self._schema_ready = True

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection to the database, its schema up to date (for reads, and for the shop registry)."""
        self.ensure_schema()
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction on the database, its schema up to date."""
        self.ensure_schema()
        with self.engine.begin() as conn:
            yield conn

    def _migrate(self) -> None:
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @property
    def version(self) -> int:
        """The schema version (the Alembic revision number)."""
        with self.connect() as conn:
            return int(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._lock, self.begin() as conn:
            yield conn

    def record(self, event: ViolationEvent, source: str, context: CaseContext | None = None,
               case_id: str | None = None) -> str:
        """Apply a lifecycle event; returns the case id (created on the first event of a place).

        A new case, its first history entry and one outbox row per dispatch target
        are written in one transaction: a case is never stored without its dispatch.
        ``case_id`` names a new case (a Ray worker chooses ids before the central store
        sees them); a place that already has a case keeps its id, which is returned.
        """
        key = f"{source}|{event.key}"
        now = _now()
        ctx = context or CaseContext()
        details = json.dumps(event.details.as_dict(), ensure_ascii=False)
        active = 0 if event.state.value == "end" else 1
        with self._tx() as db:
            row = db.execute(text("SELECT id FROM cases WHERE event_key = :k"), {"k": key}).first()
            if row is None:
                case_id = case_id or uuid.uuid4().hex[:16]
                lat, lon = ctx.gps if ctx.gps else (None, None)
                model = ctx.model or ModelIdentity("", "")
                db.execute(text(
                    "INSERT INTO cases (id, event_key, violation, source, camera, zone, start_s, end_s, confirmed_s,"
                    " confidence, box, track_ids, active, state, created_at, updated_at, address, lat, lon, details,"
                    " model, model_sha256)"
                    " VALUES (:id, :key, :violation, :source, :camera, :zone, :start, :ts, :ts, :conf, :box, :tracks,"
                    " :active, 'registered', :now, :now, :address, :lat, :lon, :details, :model, :model_sha256)"),
                    {"id": case_id, "key": key, "violation": event.violation, "source": source,
                     "camera": event.camera, "zone": event.zone, "start": event.start_s, "ts": event.ts,
                     "conf": event.confidence, "box": json.dumps(list(event.box)),
                     "tracks": json.dumps(list(event.track_ids)), "active": active, "now": now,
                     "address": ctx.address, "lat": lat, "lon": lon, "details": details,
                     "model": model.name, "model_sha256": model.sha256})
                self._history(db, case_id, None, "registered", "system", "violation confirmed")
                if not ctx.defer_dispatch:
                    self._enqueue(db, case_id, ctx)
                return case_id
            case_id = str(row[0])
            db.execute(text(
                "UPDATE cases SET end_s = CASE WHEN end_s > :ts THEN end_s ELSE :ts END,"
                " box = CASE WHEN :conf > confidence THEN :box ELSE box END,"
                " confidence = CASE WHEN :conf > confidence THEN :conf ELSE confidence END,"
                " track_ids = :tracks, active = :active, updated_at = :now, details = :details WHERE id = :id"),
                {"ts": event.ts, "conf": event.confidence, "box": json.dumps(list(event.box)),
                 "tracks": json.dumps(list(event.track_ids)), "active": active, "now": now, "id": case_id,
                 "details": details})
            return case_id

    def add_evidence(self, case_id: str, kind: str, path: str, sha256: str) -> None:
        """Record an evidence file of a case (replacing an earlier one of the same kind)."""
        with self._tx() as db:
            db.execute(text("INSERT INTO evidence (case_id, kind, path, sha256, created_at)"
                            " VALUES (:c, :k, :p, :s, :now) ON CONFLICT (case_id, kind) DO UPDATE"
                            " SET path = excluded.path, sha256 = excluded.sha256"),
                       {"c": case_id, "k": kind, "p": path, "s": sha256, "now": _now()})

    def cases(self, source: str | None = None, ids: Sequence[str] | None = None) -> list[Case]:
        """Return stored cases, oldest first, optionally of one source or with the given ids."""
        where: list[str] = []
        args: dict[str, Any] = {}
        if source is not None:
            where.append("source = :source")
            args["source"] = source
        if ids is not None:
            if not ids:
                return []
            where.append("id IN :ids")
            args["ids"] = list(ids)
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        q = text("SELECT id, violation, source, camera, zone, start_s, end_s, confirmed_s, confidence, box,"
                 " track_ids, active, state, address, lat, lon, created_at, review, review_reason, reviewed_by,"
                 " details, vehicle, model, model_sha256"
                 " FROM cases" + cond +
                 " ORDER BY source, start_s, id")
        ev_q = text("SELECT case_id, kind, path, sha256 FROM evidence" + (" WHERE case_id IN :ids" if ids else ""))
        if ids is not None:
            q = q.bindparams(bindparam("ids", expanding=True))
            ev_q = ev_q.bindparams(bindparam("ids", expanding=True))
        with self.connect() as db:
            rows = db.execute(q, args).mappings().all()
            ev = db.execute(ev_q, {"ids": list(ids)} if ids else {}).all()
        evidence: dict[str, dict[str, dict[str, str]]] = {}
        for case_id, kind, path, sha in ev:
            evidence.setdefault(case_id, {})[kind] = {"path": path, "sha256": sha}
        return [Case(id=r["id"], violation=r["violation"], source=r["source"], camera=r["camera"], zone=r["zone"],
                     start_s=r["start_s"], end_s=r["end_s"], confirmed_s=r["confirmed_s"], confidence=r["confidence"],
                     box=json.loads(r["box"]), track_ids=json.loads(r["track_ids"]), active=bool(r["active"]),
                     state=r["state"], evidence=evidence.get(r["id"], {}), address=r["address"],
                     gps=(r["lat"], r["lon"]) if r["lat"] is not None else None, created_at=r["created_at"],
                     review=r["review"], review_reason=r["review_reason"] or "", reviewed_by=r["reviewed_by"],
                     details=EventDetails.from_dict(json.loads(r["details"] or "{}")),
                     vehicle=json.loads(r["vehicle"] or "{}"), model=r["model"] or "",
                     model_sha256=r["model_sha256"] or "") for r in rows]

    def query(self, camera: str | None = None, violation: str | None = None, state: str | None = None,
              since: str | None = None, until: str | None = None, limit: int = 50, offset: int = 0
              ) -> tuple[int, list[Case]]:
        """Filter cases (newest first); returns the total count and one page."""
        cond, args = where_equal(camera=camera, violation=violation, state=state)
        for op, name, val in ((">=", "since", since), ("<", "until", until)):
            if val is not None:
                cond += f"{' AND' if cond else ' WHERE'} created_at {op} :{name}"
                args[name] = val
        with self.connect() as db:
            total = int(db.execute(text(f"SELECT COUNT(*) FROM cases{cond}"), args).scalar_one())
            ids = [r[0] for r in db.execute(text(
                f"SELECT id FROM cases{cond} ORDER BY created_at DESC, id LIMIT :limit OFFSET :offset"),
                {**args, "limit": limit, "offset": offset})]
        by_id = {c.id: c for c in self.cases(ids=ids)}
        return total, [by_id[i] for i in ids if i in by_id]

    def get(self, case_id: str) -> Case | None:
        """One case by id."""
        found = self.cases(ids=[case_id])
        return found[0] if found else None

    def history(self, case_id: str) -> list[dict[str, Any]]:
        """State changes of a case, oldest first."""
        with self.connect() as db:
            rows = db.execute(text("SELECT from_state AS \"from\", to_state AS \"to\", who, note, at FROM case_history"
                                   " WHERE case_id = :c ORDER BY id"), {"c": case_id}).mappings().all()
        return [dict(r) for r in rows]

    def transition(self, case_id: str, to_state: str, who: str, note: str = "") -> Case:
        """Move a case along the city case flow, recording who and when.

        Raises:
            KeyError: No such case.
            TransitionError: The flow does not allow it.
        """
        with self._tx() as db:
            current = self._state(db, case_id)
            if to_state not in TRANSITIONS.get(current, set()):
                raise TransitionError(f"case {case_id} is {current}; it cannot become {to_state}"
                                      f" (allowed: {', '.join(sorted(TRANSITIONS.get(current, set()))) or 'none'})")
            now = _now()
            db.execute(text("UPDATE cases SET state = :s, updated_at = :now WHERE id = :c"),
                       {"s": to_state, "now": now, "c": case_id})
            self._history(db, case_id, current, to_state, who, note)
        case = self.get(case_id)
        assert case is not None
        return case

    @staticmethod
    def _state(db: Connection, case_id: str) -> str:
        """A case's state (inside the caller's transaction).

        Raises:
            KeyError: No such case.
        """
        state = db.execute(text("SELECT state FROM cases WHERE id = :c"), {"c": case_id}).scalar()
        if state is None:
            raise KeyError(case_id)
        return str(state)

    @staticmethod
    def _history(db: Connection, case_id: str, from_state: str | None, to_state: str, who: str, note: str) -> None:
        """Append one entry to a case's history (inside the caller's transaction)."""
        db.execute(text("INSERT INTO case_history (case_id, from_state, to_state, who, note, at)"
                        " VALUES (:c, :f, :t, :w, :n, :now)"),
                   {"c": case_id, "f": from_state, "t": to_state, "w": who, "n": note, "now": _now()})

    @staticmethod
    def _enqueue(db: Connection, case_id: str, ctx: CaseContext) -> None:
        row = db.execute(text("SELECT violation, camera, zone, source, start_s, confirmed_s, confidence, created_at,"
                              " details, vehicle, model FROM cases WHERE id = :c"), {"c": case_id}).mappings().one()
        details = EventDetails.from_dict(json.loads(row["details"] or "{}"))
        payload = {"kind": "case", "case_id": case_id, "violation": row["violation"], "camera": row["camera"],
                   "zone": row["zone"], "address": ctx.address, "gps": list(ctx.gps) if ctx.gps else None,
                   "source": row["source"], "start_s": round(row["start_s"], 3),
                   "confirmed_s": round(row["confirmed_s"], 3), "confidence": round(row["confidence"], 4),
                   "registered_at": row["created_at"],
                   "load_state": details.load_state.value if details.load_state is not None else None,
                   "alternatives": [a.violation for a in details.alternatives],
                   "vehicle": json.loads(row["vehicle"] or "{}") or None, "model": row["model"] or "",
                   **(ctx.payload_extra or {})}
        for target in ctx.targets_for(str(row["zone"])):
            CaseStore._insert_outbox(db, case_id, target, "case", f"{case_id}:{target}", payload)

    @staticmethod
    def _insert_outbox(db: Connection, case_id: str, target: str, kind: str, key: str, payload: dict[str, Any]
                       ) -> None:
        db.execute(text("INSERT INTO outbox (case_id, target, kind, idempotency_key, payload, state, attempts,"
                        " next_attempt, last_error, created_at)"
                        " VALUES (:c, :t, :kind, :k, :p, 'pending', 0, 0, '', :now)"),
                   {"c": case_id, "t": target, "kind": kind, "k": key, "p": json.dumps(payload, ensure_ascii=False),
                    "now": _now()})

    def enqueue_notice(self, case_id: str, target: str, kind: str, key: str, payload: dict[str, Any]) -> bool:
        """Queue a notice other than the case's dispatch (e.g. a spoken warning) for one notifier.

        ``key`` is unique per notice: queuing the same key again does nothing. Returns whether it was queued.
        """
        with self._tx() as db:
            if db.execute(text("SELECT COUNT(*) FROM outbox WHERE idempotency_key = :k"), {"k": key}).scalar_one():
                return False
            self._insert_outbox(db, case_id, target, kind, key, payload)
        return True

    def enqueue_dispatch(self, case_id: str, context: CaseContext, note: str = "") -> None:
        """Queue a case for dispatch later (after a warning had no effect), with an optional history note."""
        with self._tx() as db:
            exists = db.execute(text("SELECT COUNT(*) FROM outbox WHERE case_id = :c AND kind = 'case'"),
                                {"c": case_id}).scalar_one()
            if not exists:
                self._enqueue(db, case_id, context)
            if note:
                state = self._state(db, case_id)
                self._history(db, case_id, state, state, "system:warning", note)

    def review(self, case_id: str, verdict: str, who: str, reason: str = "") -> Case:
        """Record an operator's verdict on a case (``confirmed`` or ``rejected``), with who, when and why.

        A rejection also moves a case that is still open (registered or dispatched) to ``rejected``;
        a verdict can be changed later, and every verdict stays in the case's history.

        Raises:
            KeyError: No such case.
            ValueError: Unknown verdict.
        """
        if verdict not in ("confirmed", "rejected"):
            raise ValueError(f"verdict must be confirmed or rejected, not {verdict!r}")
        with self._tx() as db:
            state = self._state(db, case_id)
            now = _now()
            new_state = "rejected" if verdict == "rejected" and "rejected" in TRANSITIONS.get(state, set()) else state
            db.execute(text("UPDATE cases SET review = :v, review_reason = :r, reviewed_by = :w, reviewed_at = :now,"
                            " state = :s, updated_at = :now WHERE id = :c"),
                       {"v": verdict, "r": reason, "w": who, "now": now, "s": new_state, "c": case_id})
            self._history(db, case_id, state, new_state, who, f"review: {verdict}" + (f" ({reason})" if reason else ""))
        case = self.get(case_id)
        assert case is not None
        return case

    def reviewed(self) -> list[Case]:
        """Cases with an operator's verdict, in the order they were reviewed."""
        with self.connect() as db:
            ids = [r[0] for r in db.execute(text(
                "SELECT c.id FROM cases c WHERE c.review IS NOT NULL ORDER BY"
                " (SELECT MAX(h.id) FROM case_history h WHERE h.case_id = c.id AND h.note LIKE 'review:%')"))]
        by_id = {c.id: c for c in self.cases(ids=ids)}
        return [by_id[i] for i in ids if i in by_id]

    def daily(self, since: str) -> list[dict[str, Any]]:
        """Cases per day (UTC date of registration), violation, camera and state, from ``since`` (ISO time)."""
        with self.connect() as db:
            rows = db.execute(text(
                "SELECT SUBSTR(created_at, 1, 10) AS day, violation, camera, state, COUNT(*) AS count FROM cases"
                " WHERE created_at >= :since GROUP BY day, violation, camera, state ORDER BY day"),
                {"since": since}).mappings().all()
        return [{**r, "count": int(r["count"])} for r in rows]

    def end_untracked(self, cameras: Sequence[str], note: str, case_ids: Sequence[str] | None = None,
                      created_before: datetime | None = None) -> list[str]:
        """Mark the active cases of ``cameras`` (of those, only ``case_ids`` where given, and only those stored
        before ``created_before`` where given) no longer active, with a history note; returns their ids.

        For cases whose tracking state is gone (the service, or the Ray shard running the camera, restarted):
        nothing would ever end them. A violation still present is confirmed again as a new case.
        """
        if not cameras or (case_ids is not None and not case_ids):
            return []
        sql = "SELECT id FROM cases WHERE active = 1 AND camera IN :cams"
        params: dict[str, Any] = {"cams": list(cameras)}
        binds: list[BindParameter[Any]] = [bindparam("cams", expanding=True)]
        if case_ids is not None:
            sql += " AND id IN :ids"
            params["ids"] = list(case_ids)
            binds.append(bindparam("ids", expanding=True))
        if created_before is not None:
            sql += " AND created_at < :before"
            params["before"] = iso_time(created_before)
        with self._tx() as db:
            ids = [str(r[0]) for r in db.execute(text(sql).bindparams(*binds), params)]
            for case_id in ids:
                db.execute(text("UPDATE cases SET active = 0, updated_at = :now WHERE id = :id"),
                           {"now": _now(), "id": case_id})
                state = self._state(db, case_id)
                self._history(db, case_id, state, state, "system", note)
        return ids

    def set_vehicle(self, case_id: str, vehicle: dict[str, Any]) -> None:
        """Record a truck case's vehicle: its plate (as voted so far) and what the register says of it."""
        with self._tx() as db:
            db.execute(text("UPDATE cases SET vehicle = :v, updated_at = :now WHERE id = :c"),
                       {"v": json.dumps(vehicle, ensure_ascii=False), "now": _now(), "c": case_id})

    def annotate(self, case_id: str, who: str, note: str) -> None:
        """Add a history entry that does not change the state (e.g. a warning's outcome)."""
        with self._tx() as db:
            state = self._state(db, case_id)
            self._history(db, case_id, state, state, who, note)

    def outbox_due(self, now: float, limit: int = 20, target: str | None = None) -> list[dict[str, Any]]:
        """Pending outbox rows whose next attempt is due (of one notifier, or all)."""
        cond = " AND target = :target" if target is not None else ""
        with self.connect() as db:
            rows = db.execute(text(
                "SELECT id, case_id, target, kind, idempotency_key, payload, attempts, created_at FROM outbox"
                f" WHERE state = 'pending' AND next_attempt <= :now{cond} ORDER BY id LIMIT :limit"),
                {"now": now, "limit": limit, "target": target}).mappings().all()
        return [{**r, "payload": {"kind": r["kind"], **json.loads(r["payload"])}} for r in rows]

    def outbox_pending_by_target(self) -> dict[str, int]:
        """Rows waiting for delivery, per notifier."""
        with self.connect() as db:
            rows = db.execute(text("SELECT target, COUNT(*) FROM outbox WHERE state = 'pending' GROUP BY target")).all()
        return {str(t): int(n) for t, n in rows}

    def outbox_dead_letter_unknown(self, targets: Sequence[str], note: str) -> int:
        """Dead-letter pending rows addressed to none of ``targets`` (a notifier removed from the config)."""
        with self._tx() as db:
            rows = db.execute(text("SELECT id, target FROM outbox WHERE state = 'pending'")).all()
            gone = [int(r[0]) for r in rows if r[1] not in set(targets)]
            for row_id in gone:
                db.execute(text("UPDATE outbox SET state = 'dead', last_error = :e WHERE id = :id"),
                           {"e": note, "id": row_id})
        return len(gone)

    def outbox_result(self, row_id: int, ok: bool, error: str = "", next_attempt: float = 0.0,
                      dead: bool = False) -> None:
        """Record a delivery attempt: delivered, retry at ``next_attempt``, or dead-lettered."""
        now = _now()
        with self._tx() as db:
            if ok:
                db.execute(text("UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = :now,"
                                " last_error = '' WHERE id = :id"), {"now": now, "id": row_id})
                case_id, kind = db.execute(text("SELECT case_id, kind FROM outbox WHERE id = :id"),
                                           {"id": row_id}).one()
                state = self._state(db, case_id)
                if state == "registered" and kind == "case":
                    db.execute(text("UPDATE cases SET state = 'dispatched', updated_at = :now WHERE id = :c"),
                               {"now": now, "c": case_id})
                    self._history(db, case_id, "registered", "dispatched", "system:dispatcher", "delivered")
            else:
                db.execute(text("UPDATE outbox SET state = :s, attempts = attempts + 1, next_attempt = :n,"
                                " last_error = :e WHERE id = :id"),
                           {"s": "dead" if dead else "pending", "n": next_attempt, "e": error[:500], "id": row_id})

    def outbox(self, state: str | None = None, case_id: str | None = None, kind: str | None = None
               ) -> list[dict[str, Any]]:
        """Outbox rows (for the API), optionally filtered."""
        cond, args = where_equal(kind=kind or None, state=state or None, case_id=case_id or None)
        with self.connect() as db:
            rows = db.execute(text("SELECT id, case_id, target, kind, idempotency_key, state, attempts, last_error,"
                                   f" created_at, delivered_at FROM outbox{cond} ORDER BY id"), args).all()
        keys = ("id", "case_id", "target", "kind", "idempotency_key", "state", "attempts", "last_error",
                "created_at", "delivered_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def retry_dead(self, row_id: int) -> bool:
        """Put a dead-lettered row back in the queue; returns whether it was dead."""
        with self._tx() as db:
            cur = db.execute(text("UPDATE outbox SET state = 'pending', next_attempt = 0"
                                  " WHERE id = :id AND state = 'dead'"), {"id": row_id})
            return bool(cur.rowcount)

    def counts(self) -> dict[str, Any]:
        """Cases by violation and state, and the outbox backlog (for metrics)."""
        with self.connect() as db:
            by = db.execute(text("SELECT violation, state, COUNT(*) FROM cases GROUP BY violation, state")).all()
            ob = db.execute(text("SELECT state, COUNT(*) FROM outbox GROUP BY state")).all()
        return {"cases": [(v, s, int(n)) for v, s, n in by], "outbox": {s: int(n) for s, n in ob}}

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()
