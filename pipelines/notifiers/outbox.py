"""Delivery of the outbox: each due row goes to the notifier it names, with backoff and a dead-letter state.

The service runs :func:`deliver_due` in a loop per notifier (a slow webhook never holds up a loudspeaker);
a batch run can call it once at its end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pipelines.notifiers.notice import Delivery, Notice, Notifier
from pipelines.sinks.store import CaseStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt, as reported to the service's event stream."""

    case_id: str
    target: str
    kind: str
    ok: bool
    attempts: int
    dead: bool
    error: str
    notice: Notice | None


def _age_s(created_at: str, now: float) -> float:
    try:
        return now - datetime.fromisoformat(created_at).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


def _attempt(notifier: Notifier, notice: Notice, key: str, created_at: str, now: float) -> Delivery:
    if notice.kind not in notifier.kinds:
        return Delivery(False, f"{notifier.name} does not take {notice.kind} notices", final=True)
    max_age = notifier.policy.max_age_s
    if max_age is not None and _age_s(created_at, now) > max_age:
        return Delivery(False, f"expired: older than {max_age:g} s", final=True)
    return notifier.deliver(notice, key)


def deliver_due(store: CaseStore, notifier: Notifier, now: float | None = None,
                on_attempt: Callable[[Attempt], None] | None = None, limit: int = 20) -> int:
    """Deliver the notifier's due outbox rows once; returns how many rows were tried.

    A failed row is retried after the notifier's backoff until its attempts run out (then it is dead-lettered,
    and an operator can retry it from the API); an invalid notice or one older than the notifier's
    ``max_age_s`` is dead-lettered at once.
    """
    now = time.time() if now is None else now
    rows = store.outbox_due(now, limit, target=notifier.name)
    for row in rows:
        attempts = int(row["attempts"]) + 1
        notice: Notice | None = None
        try:
            notice = Notice.model_validate(row["payload"])
        except ValueError as exc:
            result = Delivery(False, f"invalid notice: {exc}", final=True)
        else:
            try:
                result = _attempt(notifier, notice, str(row["idempotency_key"]), str(row["created_at"]), now)
            except Exception as exc:  # a notifier that raises is a failed attempt, retried like any other
                result = Delivery(False, f"{type(exc).__name__}: {exc}")
        dead = not result.ok and (result.final or attempts >= notifier.policy.max_attempts)
        store.outbox_result(int(row["id"]), result.ok, result.error, now + notifier.policy.delay(attempts), dead)
        if not result.ok:
            log.warning("%s of case %s to %s failed (%s), attempt %d%s", row["kind"], row["case_id"], notifier.name,
                        result.error, attempts, "; dead-lettered" if dead else "; will retry")
        if on_attempt is not None:
            on_attempt(Attempt(str(row["case_id"]), notifier.name, str(row["kind"]), result.ok, attempts, dead,
                               result.error, notice))
    return len(rows)
