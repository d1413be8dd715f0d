"""Texts to the responsible shop ("门前三包") as an event sink: attribute, send, re-check, then the usual path.

:class:`ReminderSink` sits before the voice warnings in a camera's sinks. A violation that starts in a shop's
frontage (and is one the shop answers for) is the shop's: its case's dispatch is held back, a text goes out
(``send``, through the service's SMS notifiers; batch analysis only records it), and at the deadline the
re-check decides: cleared -> the case closes as ``resolved_by_reminder``; still there -> ``reminder_no_effect``
and the usual path follows (the zone's voice warning if it has one, else dispatch to the city platform). A
violation that is the shop's but cannot be texted now (quiet hours, opted out, daily limit) takes the usual
path at once and is only counted against the shop.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypedDict

from detector.events import EventState, ViolationEvent
from detector.reminders import Attribution, ReminderAction, ReminderLoop, ReminderRecord, ReminderSettings, render_text
from pipelines.config import ReminderConfig
from pipelines.event_sinks import EventSink, WarningSink
from pipelines.shops import Shop, mask_phone
from pipelines.sinks.store import CaseContext, CaseWriter
from pipelines.sources import Frame

log = logging.getLogger(__name__)

Clock = Callable[[float], dt.datetime]
"""The local date and time of a moment on the source's clock."""


@dataclass(frozen=True)
class ShopReminder:
    """A reminder step the service acts on: a text to send, a skipped one, or the re-check's outcome."""

    action: ReminderAction
    case_id: str
    camera: str
    shop: Shop
    channels: tuple[str, ...] = ()
    text: str = ""


@dataclass(frozen=True)
class ReminderSetup:
    """What a pipeline needs to remind shops: the registry, the default policy, and where steps go.

    Attributes:
        shops: Every registered shop (each camera takes its own).
        default: The policy of cameras and zones without their own.
        notify: The service's handler of every step; None in batch (only recorded).
        clock: Local time of a source time (default: the wall clock, for live sources).
        sent_today: Texts already sent to each shop today (the service's record), for the daily limit.
    """

    shops: tuple[Shop, ...]
    default: ReminderConfig
    notify: Callable[[ShopReminder], None] | None = None
    clock: Clock | None = None
    sent_today: dict[str, int] | None = None


class ReminderLogRow(TypedDict):
    """One text sent (per channel), as ``cases.json`` lists it."""

    case: str
    shop: str
    shop_name: str
    channel: str
    to: str  # masked
    text: str
    zone: str
    violation: str
    offence: int
    sent_s: float
    deadline_s: float  # when the place is re-checked, on the source's clock
    outcome: str | None  # resolved_by_reminder, reminder_no_effect, undecided; None while waiting
    time_to_clear_s: float | None


class ReminderSink(EventSink):
    """One camera's reminder loop between its committed events and the shops.

    Args:
        camera: The camera's id.
        shops: The camera's shops.
        policies: Reminder policies by zone id.
        store: The case store (outcomes close, annotate or dispatch cases).
        context: The camera's case context (its dispatch targets, for ``reminder_no_effect``).
        place: The camera's address (the text's ``{place}``).
        clock: Local time of a source time (texts show times; quiet hours and daily limits use them).
        notify: Called with every step (the service sends texts and keeps the record); None: batch.
        warnings: The camera's voice warnings, which wait until a reminder had no effect.
        source: The source's name, for log lines.
        grace_s: Per zone, the rules' gap tolerance (the re-check waits for a violation's end to be known).
    """

    def __init__(self, camera: str, shops: Iterable[Shop], policies: dict[str, ReminderSettings], store: CaseWriter,
                 context: CaseContext | None, place: str, clock: Clock,
                 notify: Callable[[ShopReminder], None] | None = None, warnings: WarningSink | None = None,
                 source: str = "", grace_s: dict[str, float] | None = None) -> None:
        self.camera, self.store, self.context, self.place, self.clock = camera, store, context, place, clock
        self.notify, self.warnings, self.source = notify, warnings, source
        self.loop = ReminderLoop([], policies, dict(grace_s or {}))
        self.shops: dict[str, Shop] = {}
        self.set_shops(shops)
        self.records: list[ReminderRecord] = []
        self.rows: list[ReminderLogRow] = []
        self._case_of: dict[str, str] = {}
        self._decided: dict[str, Attribution] = {}
        self._last_ts = 0.0
        self.frame_size = (1, 1)  # width, height of the camera's frames (boxes are in pixels)

    def set_shops(self, shops: Iterable[Shop]) -> None:
        """Replace the camera's shops (the registry changed); places already waiting keep their shop."""
        mine = {s.id: s for s in shops if s.camera == self.camera}
        self.shops = {**self.shops, **mine}
        self.loop.frontages = [s.frontage_spec() for s in mine.values()]

    def defers_dispatch(self, event: ViolationEvent) -> bool:
        if event.state is not EventState.START:
            return False
        found = self.loop.attribute(event.zone, event.violation, self._ground(event), self.clock(event.ts))
        if found is None:
            self._decided.pop(event.key, None)
            return False
        self._decided[event.key] = found  # acted on when the committed start comes (on_event)
        return found.reason is None

    def on_event(self, event: ViolationEvent, case_id: str, frame: Frame | None) -> None:
        self._case_of[event.key] = case_id
        if event.state is EventState.START:
            found = self._decided.pop(event.key, None)
            if found is None:
                return
            action = self.loop.start(event.key, event.zone, event.violation, event.ts, self.clock(event.ts), found)
            if action.kind == "send":
                self._sent(action, case_id)
            else:
                self._skipped(action, case_id)
        elif event.state is EventState.END:
            self.loop.on_end(event.key, event.ts)
        else:
            self.loop.on_resume(event.key)

    def tick(self, ts: float) -> None:
        self._last_ts = ts
        for action in self.loop.tick(ts):
            self._outcome(action)

    def finish(self) -> None:
        for action in self.loop.finish(self._last_ts):
            self._outcome(action)

    def observe(self, frame: Frame) -> None:
        h, w = frame.shape
        self.frame_size = (w, h)

    def _ground(self, event: ViolationEvent) -> tuple[float, float]:
        """The normalised ground point (bottom centre) of an event's box."""
        x1, _, x2, y2 = event.box
        w, h = self.frame_size
        return ((x1 + x2) / 2 / w, y2 / h)

    def _sent(self, a: ReminderAction, case_id: str) -> None:
        shop = self.shops[a.shop]
        policy = self.loop.zones[a.zone]
        assert a.deadline_ts is not None
        text = render_text(policy.template, shop=shop.name, violation=a.violation, place=shop.address or self.place,
                           time=self.clock(a.ts), deadline=self.clock(a.deadline_ts), case=case_id)
        if self.warnings is not None:
            self.warnings.hold(a.key)
        for channel in policy.channels or ("sms",):
            self.rows.append({"case": case_id, "shop": shop.id, "shop_name": shop.name, "channel": channel,
                              "to": mask_phone(shop.phone), "text": text, "zone": a.zone, "violation": a.violation,
                              "offence": a.offence, "sent_s": round(a.ts, 3), "deadline_s": round(a.deadline_ts, 3),
                              "outcome": None, "time_to_clear_s": None})
        self._safely(ShopReminder(a, case_id, self.camera, shop, policy.channels, text))
        log.info("%s: case %s is shop %s's (%s, offence %d): reminded %s, re-check at %.0f s", self.source, case_id,
                 shop.id, a.violation, a.offence, mask_phone(shop.phone), a.deadline_ts)

    def _skipped(self, a: ReminderAction, case_id: str) -> None:
        self.records.append({"shop": a.shop, "sent": False, "outcome": None, "time_to_clear_s": None})
        self._safely(ShopReminder(a, case_id, self.camera, self.shops[a.shop]))
        log.info("%s: case %s is shop %s's; not texted (%s)", self.source, case_id, a.shop, a.reason)

    def _outcome(self, a: ReminderAction) -> None:
        case_id = self._case_of.get(a.key, "")
        self.records.append({"shop": a.shop, "sent": True, "outcome": a.outcome, "time_to_clear_s": a.time_to_clear_s})
        for row in self.rows:
            if row["case"] == case_id and row["outcome"] is None:
                row["outcome"], row["time_to_clear_s"] = a.outcome, a.time_to_clear_s
        try:
            if a.outcome == "resolved_by_reminder":
                self.store.transition(case_id, "closed", "system:reminder", "resolved_by_reminder")
            else:
                note = "reminder_no_effect" if a.outcome == "reminder_no_effect" else \
                    "reminder undecided: the source ended before the deadline"
                self.store.annotate(case_id, "system:reminder", note)
                self._usual_path(a, case_id)
        except Exception as exc:  # a state change must never stop the frame loop; the case is stored
            log.error("%s: reminder outcome of case %s not applied: %s", self.source, case_id, exc)
        shop = self.shops.get(a.shop)
        if shop is not None:
            self._safely(ShopReminder(a, case_id, self.camera, shop))

    def _usual_path(self, a: ReminderAction, case_id: str) -> None:
        """After a reminder without effect: the zone's voice warning, else dispatch to the city platform (an
        undecided one, whose source ended, is dispatched at once: nobody is there to hear a warning)."""
        if a.outcome == "reminder_no_effect" and self.warnings is not None and \
                self.warnings.release(a.key, a.zone, a.violation, a.ts):
            return
        if self.context is not None and self.context.targets_for(a.zone):
            self.store.enqueue_dispatch(case_id, self.context)

    def _safely(self, step: ShopReminder) -> None:
        if self.notify is None:
            return
        try:
            self.notify(step)
        except Exception as exc:  # an SMS that cannot be queued never stops the camera
            log.error("%s: reminder step of case %s failed: %s", self.source, step.case_id, exc)
