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
]


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

    def record(self, event: ViolationEvent, source: str) -> str:
        """Apply a lifecycle event; returns the case id (created on the first event of a place)."""
        key = f"{source}|{event.key}"
        now = _now()
        with self._tx() as db:
            row = db.execute("SELECT id FROM cases WHERE event_key = ?", (key,)).fetchone()
            if row is None:
                case_id = uuid.uuid4().hex[:16]
                db.execute(
                    "INSERT INTO cases (id, event_key, violation, source, camera, zone, start_s, end_s, confirmed_s,"
                    " confidence, box, track_ids, active, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (case_id, key, event.violation, source, event.camera, event.zone, event.start_s, event.ts,
                     event.ts, event.confidence, json.dumps(list(event.box)), json.dumps(list(event.track_ids)),
                     0 if event.state.value == "end" else 1, now, now))
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

    def cases(self, source: str | None = None) -> list[Case]:
        """Return stored cases, oldest first, optionally of one source."""
        with self._lock:
            q = ("SELECT id, violation, source, camera, zone, start_s, end_s, confirmed_s, confidence, box,"
                 " track_ids, active, state FROM cases")
            rows = self._db.execute(q + (" WHERE source = ?" if source else "") + " ORDER BY source, start_s, id",
                                    (source,) if source else ()).fetchall()
            ev = self._db.execute("SELECT case_id, kind, path, sha256 FROM evidence").fetchall()
        evidence: dict[str, dict[str, dict[str, str]]] = {}
        for case_id, kind, path, sha in ev:
            evidence.setdefault(case_id, {})[kind] = {"path": path, "sha256": sha}
        return [Case(id=r[0], violation=r[1], source=r[2], camera=r[3], zone=r[4], start_s=r[5], end_s=r[6],
                     confirmed_s=r[7], confidence=r[8], box=json.loads(r[9]), track_ids=json.loads(r[10]),
                     active=bool(r[11]), state=r[12], evidence=evidence.get(r[0], {})) for r in rows]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
