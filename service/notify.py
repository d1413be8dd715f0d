"""The service's notifiers at work: one delivery loop per notifier over the one outbox.

Cases reach the outbox when the case store registers them (one row per notifier the camera or zone names);
voice warnings when a camera's warning loop decides to speak (one row per speaker of the zone); texts to shops
when a camera's reminder loop attributes a violation to a shop (one row per SMS notifier of the policy). Each
notifier's :class:`OutboxLoop` delivers its own rows (:func:`~pipelines.notifiers.outbox.deliver_due`), so a
slow webhook never holds up a loudspeaker. Every attempt is published on the event bus (``dispatch`` for
cases, ``warning`` for warnings played, ``sms`` for texts to shops, with the number masked).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from detector.warnings import WarningAction
from pipelines.case_spool import database_down
from pipelines.config import CameraConfig
from pipelines.notifiers.notice import Delivery, Notice, Notifier
from pipelines.notifiers.outbox import Attempt, deliver_due
from pipelines.notifiers.registry import build_notifiers
from pipelines.reminders import ShopReminder
from pipelines.shops import mask_phone
from pipelines.sinks.store import CaseStore
from service.loops import BackgroundLoop
from service.settings import ServiceConfig

log = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, object]], None]


def _down_reason(exc: BaseException) -> str:
    """Why a notice skips the outbox: the database error's first line."""
    return "database away: " + str(exc).splitlines()[0] if str(exc) else "database away"


class OutboxLoop(BackgroundLoop):
    """Delivers one notifier's due outbox rows until stopped (woken early when a row is queued)."""

    def __init__(self, store: CaseStore, notifier: Notifier, on_attempt: Callable[[Attempt], None]) -> None:
        super().__init__(f"notify-{notifier.name}")
        self.store, self.notifier, self.on_attempt = store, notifier, on_attempt

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                busy = deliver_due(self.store, self.notifier, on_attempt=self.on_attempt) > 0
            except Exception as exc:  # the database hiccuped: try again shortly, never die
                log.error("outbox of %s: %s", self.notifier.name, exc)
                busy = False
            self.wakeup.wait(0.2 if busy else 1.0)
            self.wakeup.clear()


class Notifications:
    """Every notifier of the service configuration, each with its delivery loop.

    Args:
        config: The service configuration (``notifiers``, ``dispatch``, ``voice``).
        store: The case store whose outbox is delivered.
        publish: Publishes an event on the service's event bus.
        dlr_url: Where SMS gateways report deliveries of a reminder (by its id and the notifier's name).
    """

    def __init__(self, config: ServiceConfig, store: CaseStore, publish: Publish,
                 dlr_url: Callable[[int, str], str] | None = None) -> None:
        self.store, self.publish = store, publish
        self.notifiers = build_notifiers(config.all_notifiers(), config.dispatch.public_url, config.voice.cache,
                                         config.voice.tts_voice, dlr_url)
        self.loops = {name: OutboxLoop(store, n, self._attempted) for name, n in self.notifiers.items()}
        # Warnings and texts sent while the outbox (the database) cannot be reached, one at a time each: a slow
        # SMS gateway never holds up a warning.
        self.direct = {kind: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{kind}-now")
                       for kind in ("warning", "sms")}

    def dead_letter_unknown(self) -> None:
        """Dead-letter the outbox rows of notifiers no longer configured (nothing would ever deliver them)."""
        gone = self.store.outbox_dead_letter_unknown(list(self.notifiers), "no notifier of this name is configured")
        if gone:
            log.warning("%d outbox rows name notifiers no longer configured: dead-lettered", gone)

    def start(self) -> None:
        """Start every delivery loop (each waits out a database that is away)."""
        for loop in self.loops.values():
            loop.start()

    def stop(self) -> None:
        """Stop the loops after their current delivery and release the notifiers."""
        for loop in self.loops.values():
            loop.stop_event.set()
            loop.wakeup.set()
        for loop in self.loops.values():
            loop.stop()
        self.drain()
        for n in self.notifiers.values():
            n.close()

    def drain(self) -> None:
        """Wait for the notices being sent without the outbox, and take no more."""
        for pool in self.direct.values():
            pool.shutdown(wait=True)

    def wake(self, target: str | None = None) -> None:
        """Deliver now: rows of ``target`` (or every notifier) were queued or put back."""
        for name, loop in self.loops.items():
            if target is None or name == target:
                loop.wakeup.set()

    def warn(self, camera: CameraConfig, action: WarningAction, case_id: str) -> None:
        """Queue a camera zone's warning for each of the zone's speakers (returns at once)."""
        zone = next((z for z in camera.zones if z.id == action.zone), None)
        if zone is None or zone.warnings is None:
            return
        w = zone.warnings
        audio = next((path for violation, path in w.audio.items() if violation == action.violation), None)
        notice = Notice(kind="warning", case_id=case_id, violation=action.violation, camera=camera.id,
                        camera_name=camera.name, zone=action.zone, address=camera.location.address,
                        text=action.text, audio=str(audio) if audio else None, volume=w.volume, repeat=action.repeat)
        payload = notice.model_dump(mode="json", exclude={"kind"})
        for speaker in w.speakers:
            key = f"warning:{case_id}:{speaker}:{action.repeat}:{action.ts:.3f}"
            try:
                if self.store.enqueue_notice(case_id, speaker, "warning", key, payload):
                    self.wake(speaker)
            except Exception as exc:  # the case stands; a warning that cannot be queued is only logged
                if not (database_down(exc) and self._deliver_now(speaker, notice, key, _down_reason(exc))):
                    log.error("warning of case %s for speaker %s not queued: %s", case_id, speaker, exc)

    def _deliver_now(self, target: str, notice: Notice, key: str, why: str) -> bool:
        """A notice the outbox cannot take because the database is away: delivered now, once, off the camera's
        thread (no retries and no outbox row for it). Returns False (nothing sent) for a notifier not configured.

        The outbox lives in the database. A warning is worth little later and a shop's text is worth most before
        its deadline, so neither waits for the database. A database that dropped the connection while committing
        the outbox row may still hold it: that notice then goes out twice (same idempotency key).
        """
        if target not in self.notifiers:
            return False
        log.warning("%s of case %s via %s sent without the outbox (%s)", notice.kind, notice.case_id, target, why)
        self.direct[notice.kind].submit(self._send_once, target, notice, key)
        return True

    def _send_once(self, target: str, notice: Notice, key: str) -> None:
        """One delivery of a notice that could not be queued; its result is published like any attempt."""
        try:
            result = self.notifiers[target].deliver(notice, key)
        except Exception as exc:  # a notifier that raises is a failed attempt
            result = Delivery(False, f"{type(exc).__name__}: {exc}")
        if not result.ok:
            log.error("%s of case %s via %s failed without the outbox: %s", notice.kind, notice.case_id, target,
                      result.error)
        self._attempted(Attempt(notice.case_id, target, notice.kind, result.ok, 1, not result.ok, result.error,
                                notice))

    def sms_channels(self) -> tuple[str, ...]:
        """The notifiers that send texts to shops."""
        return tuple(name for name, n in self.notifiers.items() if "sms" in n.kinds)

    def text(self, step: ShopReminder, reminder_id: int | None) -> None:
        """Queue a reminder's text for each SMS notifier of its policy (default: every one; returns at once).

        ``reminder_id`` None: the reminder's record waits for the database (:meth:`CaseSpool.add_reminder`), so the
        text is sent now, once per notifier, without the outbox and without a delivery-report address; so is a
        text whose outbox row the database cannot take.
        """
        a, shop = step.action, step.shop
        notice = Notice(kind="sms", case_id=step.case_id, violation=a.violation, camera=step.camera, zone=a.zone,
                        text=step.text, to=shop.phone, shop=shop.id, reminder_id=reminder_id)
        payload = notice.model_dump(mode="json", exclude={"kind"})
        for channel in step.channels or self.sms_channels():
            if reminder_id is None:
                key = f"sms:{step.case_id}:{shop.id}:{a.ts:.3f}:{channel}"
                if not self._deliver_now(channel, notice, key, "its reminder's record waits for the database"):
                    log.error("text of case %s to shop %s: no SMS notifier %s", step.case_id, shop.id, channel)
                continue
            key = f"sms:{reminder_id}:{channel}"
            try:
                if self.store.enqueue_notice(step.case_id, channel, "sms", key, payload):
                    self.wake(channel)
            except Exception as exc:  # the case and the reminder's record stand
                if not (database_down(exc) and self._deliver_now(channel, notice, key, _down_reason(exc))):
                    log.error("text of case %s to shop %s via %s not queued: %s", step.case_id, shop.id, channel,
                              exc)

    def _attempted(self, a: Attempt) -> None:
        if a.kind == "case":
            self.publish("dispatch", {"case_id": a.case_id, "target": a.target, "ok": a.ok, "attempts": a.attempts,
                                      "dead": a.dead, "error": a.error})
        elif a.kind == "sms" and a.notice is not None:
            n = a.notice
            self.publish("sms", {"case_id": n.case_id, "shop": n.shop, "to": mask_phone(n.to), "target": a.target,
                                 "ok": a.ok, "attempts": a.attempts, "dead": a.dead, "error": a.error})
        elif a.ok and a.notice is not None:
            n = a.notice
            self.publish("warning", {"camera": n.camera, "zone": n.zone, "violation": n.violation,
                                     "case_id": n.case_id, "repeat": n.repeat, "text": n.text,
                                     "speakers": [a.target], "at": time.time()})

    def speakers(self) -> list[dict[str, object]]:
        """Health and counters of each loudspeaker."""
        pending = self.store.outbox_pending_by_target()
        return [{**n.status(), "queue": pending.get(name, 0)} for name, n in self.notifiers.items()
                if "warning" in n.kinds]

    def gateways(self) -> list[dict[str, object]]:
        """Health and counters of each SMS gateway."""
        pending = self.store.outbox_pending_by_target()
        return [{**n.status(), "queue": pending.get(name, 0)} for name, n in self.notifiers.items()
                if "sms" in n.kinds]

    def alive(self) -> dict[str, bool]:
        """Readiness: every delivery loop runs."""
        return {"notifiers": all(loop.thread.is_alive() for loop in self.loops.values())}
