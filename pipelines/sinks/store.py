"""The case store: SQLite in WAL mode with a versioned schema.

A case is committed when its violation starts, before anything reports it, so
a crash after an alert never loses the case. Updates and the end of a
violation change the same row (keyed by the violation's place key), and each
evidence file is a row of its own with its SHA-256.

Schema changes are numbered migrations applied in order; the current version
is kept in ``schema_version``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detector.events import ViolationEvent

MIGRATIONS: list[str] = [
    # 1: cases and their evidence
    """
    CREATE TABLE cases (
        id TEXT PRIMARY KEY,
        event_key TEXT NOT NULL UNIQUE,
        violation TEXT NOT NULL,
        source TEXT NOT NULL,
        camera TEXT NOT NULL,
        zone TEXT NOT NULL,
        start_s REAL NOT NULL,
        end_s REAL NOT NULL,
        confirmed_s REAL NOT NULL,
        confidence REAL NOT NULL,
        box TEXT NOT NULL,
        track_ids TEXT NOT NULL DEFAULT '[]',
        active INTEGER NOT NULL DEFAULT 1,
        state TEXT NOT NULL DEFAULT 'registered',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX cases_camera ON cases(camera, violation);
    CREATE TABLE evidence (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id TEXT NOT NULL REFERENCES cases(id),
        kind TEXT NOT NULL CHECK (kind IN ('snapshot', 'clip')),
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (case_id, kind)
    );
    """,
    # 2: the city case flow (history of state changes) and the dispatch outbox
    """
    ALTER TABLE cases ADD COLUMN address TEXT NOT NULL DEFAULT '';
    ALTER TABLE cases ADD COLUMN lat REAL;
    ALTER TABLE cases ADD COLUMN lon REAL;
    CREATE INDEX cases_state ON cases(state, created_at);
    CREATE TABLE case_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id TEXT NOT NULL REFERENCES cases(id),
        from_state TEXT,
        to_state TEXT NOT NULL,
        who TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        at TEXT NOT NULL
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id TEXT NOT NULL REFERENCES cases(id),
        target TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        delivered_at TEXT
    );
    CREATE INDEX outbox_due ON outbox(state, next_attempt);
    """,
]

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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


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
        }


class CaseStore:
    """Cases and evidence in one SQLite database (thread-safe, WAL)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (0)")
            for i, sql in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in sql.split(";"):  # executescript would commit the open transaction
                    if statement.strip():
                        db.execute(statement)
                db.execute("UPDATE schema_version SET version = ?", (i,))

    @property
    def version(self) -> int:
        """The schema version of the database."""
        return int(self._db.execute("SELECT version FROM schema_version").fetchone()[0])

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def record(self, event: ViolationEvent, source: str, context: CaseContext | None = None) -> str:
        """Apply a lifecycle event; returns the case id (created on the first event of a place).

        A new case, its first history entry and one outbox row per dispatch target
        are written in one transaction: a case is never stored without its dispatch.
        """
        key = f"{source}|{event.key}"
        now = _now()
        ctx = context or CaseContext()
        with self._tx() as db:
            row = db.execute("SELECT id FROM cases WHERE event_key = ?", (key,)).fetchone()
            if row is None:
                case_id = uuid.uuid4().hex[:16]
                lat, lon = ctx.gps if ctx.gps else (None, None)
                db.execute(
                    "INSERT INTO cases (id, event_key, violation, source, camera, zone, start_s, end_s, confirmed_s,"
                    " confidence, box, track_ids, active, created_at, updated_at, address, lat, lon)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (case_id, key, event.violation, source, event.camera, event.zone, event.start_s, event.ts,
                     event.ts, event.confidence, json.dumps(list(event.box)), json.dumps(list(event.track_ids)),
                     0 if event.state.value == "end" else 1, now, now, ctx.address, lat, lon))
                db.execute("INSERT INTO case_history (case_id, from_state, to_state, who, note, at)"
                           " VALUES (?, NULL, 'registered', 'system', 'violation confirmed', ?)", (case_id, now))
                for target in ctx.targets:
                    payload = {"case_id": case_id, "violation": event.violation, "camera": event.camera,
                               "zone": event.zone, "address": ctx.address,
                               "gps": list(ctx.gps) if ctx.gps else None, "source": source,
                               "start_s": round(event.start_s, 3), "confirmed_s": round(event.ts, 3),
                               "confidence": round(event.confidence, 4), "registered_at": now,
                               **(ctx.payload_extra or {})}
                    db.execute("INSERT INTO outbox (case_id, target, idempotency_key, payload, created_at)"
                               " VALUES (?, ?, ?, ?, ?)",
                               (case_id, target, f"{case_id}:{target}", json.dumps(payload, ensure_ascii=False), now))
                return case_id
            case_id = str(row[0])
            db.execute(
                "UPDATE cases SET end_s = MAX(end_s, ?), confidence = MAX(confidence, ?),"
                " box = CASE WHEN ? > confidence THEN ? ELSE box END, track_ids = ?, active = ?, updated_at = ?"
                " WHERE id = ?",
                (event.ts, event.confidence, event.confidence, json.dumps(list(event.box)),
                 json.dumps(list(event.track_ids)), 0 if event.state.value == "end" else 1, now, case_id))
            return case_id

    def add_evidence(self, case_id: str, kind: str, path: str, sha256: str) -> None:
        """Record an evidence file of a case (replacing an earlier one of the same kind)."""
        with self._tx() as db:
            db.execute("INSERT INTO evidence (case_id, kind, path, sha256, created_at) VALUES (?, ?, ?, ?, ?)"
                       " ON CONFLICT (case_id, kind) DO UPDATE SET path = excluded.path,"
                       " sha256 = excluded.sha256", (case_id, kind, path, sha256, _now()))

    def cases(self, source: str | None = None, ids: list[str] | None = None) -> list[Case]:
        """Return stored cases, oldest first, optionally of one source or with the given ids."""
        where, args = [], []
        if source is not None:
            where.append("source = ?")
            args.append(source)
        if ids is not None:
            where.append(f"id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        with self._lock:
            q = ("SELECT id, violation, source, camera, zone, start_s, end_s, confirmed_s, confidence, box,"
                 " track_ids, active, state, address, lat, lon, created_at FROM cases")
            rows = self._db.execute(q + cond + " ORDER BY source, start_s, id", args).fetchall()
            ev = self._db.execute("SELECT case_id, kind, path, sha256 FROM evidence" + (
                f" WHERE case_id IN ({','.join('?' * len(ids))})" if ids is not None else ""),
                ids if ids is not None else []).fetchall()
        evidence: dict[str, dict[str, dict[str, str]]] = {}
        for case_id, kind, path, sha in ev:
            evidence.setdefault(case_id, {})[kind] = {"path": path, "sha256": sha}
        return [Case(id=r[0], violation=r[1], source=r[2], camera=r[3], zone=r[4], start_s=r[5], end_s=r[6],
                     confirmed_s=r[7], confidence=r[8], box=json.loads(r[9]), track_ids=json.loads(r[10]),
                     active=bool(r[11]), state=r[12], evidence=evidence.get(r[0], {}), address=r[13],
                     gps=(r[14], r[15]) if r[14] is not None else None, created_at=r[16]) for r in rows]

    def query(self, camera: str | None = None, violation: str | None = None, state: str | None = None,
              since: str | None = None, until: str | None = None, limit: int = 50, offset: int = 0
              ) -> tuple[int, list[Case]]:
        """Filter cases (newest first); returns the total count and one page."""
        where, args = [], []
        for col, val in (("camera", camera), ("violation", violation), ("state", state)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if since is not None:
            where.append("created_at >= ?")
            args.append(since)
        if until is not None:
            where.append("created_at < ?")
            args.append(until)
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        with self._lock:
            total = int(self._db.execute(f"SELECT COUNT(*) FROM cases{cond}", args).fetchone()[0])
            ids = [r[0] for r in self._db.execute(
                f"SELECT id FROM cases{cond} ORDER BY created_at DESC, id LIMIT ? OFFSET ?", [*args, limit, offset])]
        by_id = {c.id: c for c in self.cases(ids=ids)}
        return total, [by_id[i] for i in ids if i in by_id]

    def get(self, case_id: str) -> Case | None:
        """One case by id."""
        found = self.cases(ids=[case_id])
        return found[0] if found else None

    def history(self, case_id: str) -> list[dict[str, Any]]:
        """State changes of a case, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT from_state, to_state, who, note, at FROM case_history WHERE case_id = ?"
                                    " ORDER BY id", (case_id,)).fetchall()
        return [{"from": r[0], "to": r[1], "who": r[2], "note": r[3], "at": r[4]} for r in rows]

    def transition(self, case_id: str, to_state: str, who: str, note: str = "") -> Case:
        """Move a case along the city case flow, recording who and when.

        Raises:
            KeyError: No such case.
            TransitionError: The flow does not allow it.
        """
        with self._tx() as db:
            row = db.execute("SELECT state FROM cases WHERE id = ?", (case_id,)).fetchone()
            if row is None:
                raise KeyError(case_id)
            current = str(row[0])
            if to_state not in TRANSITIONS.get(current, set()):
                raise TransitionError(f"case {case_id} is {current}; it cannot become {to_state}"
                                      f" (allowed: {', '.join(sorted(TRANSITIONS.get(current, set()))) or 'none'})")
            now = _now()
            db.execute("UPDATE cases SET state = ?, updated_at = ? WHERE id = ?", (to_state, now, case_id))
            db.execute("INSERT INTO case_history (case_id, from_state, to_state, who, note, at)"
                       " VALUES (?, ?, ?, ?, ?, ?)", (case_id, current, to_state, who, note, now))
        case = self.get(case_id)
        assert case is not None
        return case

    def outbox_due(self, now: float, limit: int = 20) -> list[dict[str, Any]]:
        """Pending outbox rows whose next attempt is due."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, case_id, target, idempotency_key, payload, attempts FROM outbox"
                " WHERE state = 'pending' AND next_attempt <= ? ORDER BY id LIMIT ?", (now, limit)).fetchall()
        return [{"id": r[0], "case_id": r[1], "target": r[2], "idempotency_key": r[3],
                 "payload": json.loads(r[4]), "attempts": r[5]} for r in rows]

    def outbox_result(self, row_id: int, ok: bool, error: str = "", next_attempt: float = 0.0,
                      dead: bool = False) -> None:
        """Record a delivery attempt: delivered, retry at ``next_attempt``, or dead-lettered."""
        now = _now()
        with self._tx() as db:
            if ok:
                db.execute("UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = ?,"
                           " last_error = '' WHERE id = ?", (now, row_id))
                case_id = db.execute("SELECT case_id FROM outbox WHERE id = ?", (row_id,)).fetchone()[0]
                state = db.execute("SELECT state FROM cases WHERE id = ?", (case_id,)).fetchone()[0]
                if state == "registered":
                    db.execute("UPDATE cases SET state = 'dispatched', updated_at = ? WHERE id = ?", (now, case_id))
                    db.execute("INSERT INTO case_history (case_id, from_state, to_state, who, note, at)"
                               " VALUES (?, 'registered', 'dispatched', 'system:dispatcher', 'delivered', ?)",
                               (case_id, now))
            else:
                db.execute("UPDATE outbox SET state = ?, attempts = attempts + 1, next_attempt = ?, last_error = ?"
                           " WHERE id = ?", ("dead" if dead else "pending", next_attempt, error[:500], row_id))

    def outbox(self, state: str | None = None, case_id: str | None = None) -> list[dict[str, Any]]:
        """Outbox rows (for the API), optionally filtered."""
        where, args = [], []
        if state:
            where.append("state = ?")
            args.append(state)
        if case_id:
            where.append("case_id = ?")
            args.append(case_id)
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        with self._lock:
            rows = self._db.execute("SELECT id, case_id, target, idempotency_key, state, attempts, last_error,"
                                    f" created_at, delivered_at FROM outbox{cond} ORDER BY id", args).fetchall()
        keys = ("id", "case_id", "target", "idempotency_key", "state", "attempts", "last_error", "created_at",
                "delivered_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def retry_dead(self, row_id: int) -> bool:
        """Put a dead-lettered row back in the queue; returns whether it was dead."""
        with self._tx() as db:
            cur = db.execute("UPDATE outbox SET state = 'pending', next_attempt = 0 WHERE id = ? AND state = 'dead'",
                             (row_id,))
            return cur.rowcount > 0

    def counts(self) -> dict[str, Any]:
        """Cases by violation and state, and the outbox backlog (for metrics)."""
        with self._lock:
            by = self._db.execute("SELECT violation, state, COUNT(*) FROM cases GROUP BY violation, state").fetchall()
            ob = self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        return {"cases": [(v, s, n) for v, s, n in by], "outbox": dict(ob)}

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
