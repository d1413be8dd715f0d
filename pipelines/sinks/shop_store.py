"""The shop registry and the reminders texted to shops, kept in the case database (migration 0006).

:class:`ShopBook` shares the :class:`~pipelines.sinks.store.CaseStore`'s database: shops are the registry the
service's API edits (``/api/shops``), reminders the record of each violation attributed to a shop (texted
or not, the re-check's outcome and the gateway's delivery report), from which each shop's statistics come.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from detector.reminders import ReminderRecord, ShopStats, shop_stats
from pipelines.shops import Shop
from pipelines.sinks.store import CaseStore, iso_time, where_equal


def _now() -> str:
    return iso_time(datetime.now(UTC))


class ShopBook:
    """Shops and reminders in the case database (thread-safe).

    Args:
        store: The case store whose database holds them.
    """

    def __init__(self, store: CaseStore) -> None:
        self.store = store  # its connections bring the schema up first (a database that was away at start)
        self._lock = threading.Lock()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._lock, self.store.begin() as conn:
            yield conn

    def shops(self, camera: str | None = None, shop_id: str | None = None) -> list[Shop]:
        """Registered shops (of one camera, or the one with an id), by id."""
        cond, args = where_equal(camera=camera, id=shop_id)
        with self.store.connect() as db:
            rows = db.execute(text("SELECT id, name, address, phone, camera, frontage, violations, licence, contact,"
                                   f" opt_out FROM shops{cond} ORDER BY id"), args).mappings().all()
        return [Shop.model_validate({**r, "frontage": json.loads(r["frontage"]), "violations": json.loads(
            r["violations"]), "opt_out": bool(r["opt_out"])}) for r in rows]

    def get(self, shop_id: str) -> Shop | None:
        """One shop by id."""
        found = self.shops(shop_id=shop_id)
        return found[0] if found else None

    def put(self, shops: Iterable[Shop]) -> tuple[int, int]:
        """Add or replace shops (by id) in one transaction; returns how many were added and replaced."""
        added = replaced = 0
        now = _now()
        with self._tx() as db:
            for s in shops:
                args = {"id": s.id, "name": s.name, "address": s.address, "phone": s.phone, "camera": s.camera,
                        "frontage": json.dumps([list(p) for p in s.frontage]), "violations": json.dumps(s.violations),
                        "licence": s.licence, "contact": s.contact, "opt_out": int(s.opt_out), "now": now}
                exists = db.execute(text("SELECT COUNT(*) FROM shops WHERE id = :id"), args).scalar_one()
                if exists:
                    db.execute(text("UPDATE shops SET name = :name, address = :address, phone = :phone, camera = "
                                    ":camera, frontage = :frontage, violations = :violations, licence = :licence, "
                                    "contact = :contact, opt_out = :opt_out, updated_at = :now WHERE id = :id"), args)
                    replaced += 1
                else:
                    db.execute(text("INSERT INTO shops (id, name, address, phone, camera, frontage, violations, "
                                    "licence, contact, opt_out, created_at, updated_at) VALUES (:id, :name, :address, "
                                    ":phone, :camera, :frontage, :violations, :licence, :contact, :opt_out, :now, "
                                    ":now)"), args)
                    added += 1
        return added, replaced

    def delete(self, shop_id: str) -> bool:
        """Remove a shop (its reminders stay on record); returns whether it existed."""
        with self._tx() as db:
            return bool(db.execute(text("DELETE FROM shops WHERE id = :id"), {"id": shop_id}).rowcount)

    def add_reminder(self, case_id: str, shop: str, camera: str, zone: str, violation: str, *, sent: bool,
                     reason: str | None = None, channels: Iterable[str] = (), message: str = "", offence: int = 1,
                     deadline_in_s: float | None = None, created: datetime | None = None) -> int:
        """Record a violation attributed to a shop (texted or not); returns the reminder's id.

        ``created``: when it happened (default now; a record replayed after a database outage keeps its time, so
        it counts against that day's limit of texts and its deadline stays where it was). A record of the same
        case, shop and time is stored once: a journal replayed twice does not count a text twice.
        """
        when = created or datetime.now(UTC)
        now = iso_time(when)
        deadline = iso_time(when + timedelta(seconds=deadline_in_s)) if deadline_in_s is not None else None
        with self._tx() as db:
            if created is not None:
                known = db.execute(text("SELECT id FROM reminders WHERE case_id = :case AND shop_id = :shop AND "
                                        "created_at = :now"), {"case": case_id, "shop": shop,
                                                               "now": now}).first()
                if known is not None:
                    return int(known[0])
            row = db.execute(text("INSERT INTO reminders (case_id, shop_id, camera, zone, violation, sent, reason, "
                                  "channels, text, offence, created_at, deadline_at) VALUES (:case, :shop, :camera, "
                                  ":zone, :violation, :sent, :reason, :channels, :text, :offence, :now, :deadline) "
                                  "RETURNING id"),
                             {"case": case_id, "shop": shop, "camera": camera, "zone": zone, "violation": violation,
                              "sent": int(sent), "reason": reason, "channels": json.dumps(list(channels)),
                              "text": message, "offence": offence, "now": now,
                              "deadline": deadline})
            return int(row.scalar_one())

    def set_outcome(self, case_id: str, shop: str, outcome: str, time_to_clear_s: float | None) -> None:
        """The re-check's outcome of a case's open reminder to a shop."""
        with self._tx() as db:
            db.execute(text("UPDATE reminders SET outcome = :o, time_to_clear_s = :t WHERE case_id = :c AND "
                            "shop_id = :s AND sent = 1 AND outcome IS NULL"),
                       {"o": outcome, "t": time_to_clear_s, "c": case_id, "s": shop})

    def sent_since(self, since: datetime) -> dict[str, int]:
        """Texts sent per shop since a moment (a day's limit survives restarts of the camera or the service)."""
        with self.store.connect() as db:
            rows = db.execute(text("SELECT shop_id, COUNT(*) FROM reminders WHERE sent = 1 AND created_at >= :since "
                                   "GROUP BY shop_id"),
                              {"since": iso_time(since)}).all()
        return {str(shop): int(n) for shop, n in rows}

    def open_reminders(self, before: datetime | None = None) -> list[dict[str, Any]]:
        """Texts sent whose re-check never came (the service stopped before the deadline); of those, where given,
        only texts sent before ``before`` (a previous run's, not the re-checks this run is waiting for)."""
        sql = "SELECT id, case_id, shop_id, camera, zone FROM reminders WHERE sent = 1 AND outcome IS NULL"
        params: dict[str, str] = {}
        if before is not None:
            sql += " AND created_at < :before"
            params["before"] = iso_time(before)
        with self.store.connect() as db:
            rows = db.execute(text(sql + " ORDER BY id"), params).mappings().all()
        return [dict(r) for r in rows]

    def set_delivery(self, reminder_id: int, state: str) -> bool:
        """A gateway's delivery report (a later "delivered" is never overwritten by an earlier "accepted");
        returns whether the reminder exists."""
        with self._tx() as db:
            current = db.execute(text("SELECT delivery FROM reminders WHERE id = :id"), {"id": reminder_id}).first()
            if current is None:
                return False
            if current[0] in ("delivered", "failed", "rejected") and state in ("accepted", "buffered"):
                return True  # reports may arrive out of order; a final one stands
            db.execute(text("UPDATE reminders SET delivery = :d, delivery_at = :now WHERE id = :id"),
                       {"d": state, "now": _now(), "id": reminder_id})
        return True

    def reminders(self, shop: str | None = None, case_id: str | None = None, limit: int = 200
                  ) -> list[dict[str, Any]]:
        """Reminders, newest first (of one shop or case)."""
        cond, args = where_equal(shop_id=shop, case_id=case_id)
        args["limit"] = limit
        with self.store.connect() as db:
            rows = db.execute(text("SELECT id, case_id, shop_id, camera, zone, violation, sent, reason, channels, text,"
                                   " offence, created_at, deadline_at, outcome, time_to_clear_s, delivery, delivery_at"
                                   f" FROM reminders{cond} ORDER BY id DESC LIMIT :limit"), args).mappings().all()
        return [{**r, "sent": bool(r["sent"]), "channels": json.loads(r["channels"])} for r in rows]

    def stats(self) -> dict[str, ShopStats]:
        """Each shop's record over every stored reminder."""
        with self.store.connect() as db:
            rows = db.execute(text("SELECT shop_id, sent, outcome, time_to_clear_s FROM reminders")).all()
        records: list[ReminderRecord] = [{"shop": str(s), "sent": bool(sent), "outcome": o, "time_to_clear_s": t}
                                         for s, sent, o, t in rows]
        return shop_stats(records)
