"""Shop frontage responsibility ("门前三包"): attribute a violation to a shop, remind it, re-check (pure logic).

A violation that starts inside a shop's frontage (the ground point of its box in the frontage polygon), and is
one the shop answers for, is the shop's. The reminder policy of the violation's zone then decides whether a
text goes out now (not in quiet hours, not to a shop that opted out, at most ``max_per_day`` per shop and
day). ``deadline_s`` later the place is checked again: if the violation ended by then, the case is
``resolved_by_reminder``; if it is still there, it is ``reminder_no_effect`` and goes on along the usual path
(a voice warning where one is configured, dispatch to the city platform). A source that ends before the
deadline leaves the reminder ``undecided``.

Everything runs on the caller's clock (source seconds in batch, wall seconds in the service) and a
caller-supplied local date and time, so tests control both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, TypedDict

import numpy as np

from detector.warnings import PlaceWatches, QuietHours
from detector.zones import PolygonZone

#: What a violation is called in a text to a shop.
VIOLATION_NAMES_ZH: dict[str, str] = {
    "street_stall": "占道经营",
    "garbage": "乱堆乱放垃圾",
    "barbecue": "露天烧烤",
    "uncovered_truck": "车辆未密闭运输",
    "overflowing_bin": "垃圾桶满溢",
}

#: The default text: variables {shop} {violation} {place} {time} {deadline} {case}.
DEFAULT_TEMPLATE = ("【城市管理】{shop}：您好，{time}在{place}您店门前发现{violation}。按照门前三包责任，"
                    "请于{deadline}前整改（案件号{case}）。感谢配合。")

#: The violations a shop answers for unless its registry entry says otherwise.
DEFAULT_SHOP_VIOLATIONS: tuple[str, ...] = ("garbage", "street_stall")

Outcome = Literal["resolved_by_reminder", "reminder_no_effect", "undecided"]
SkipReason = Literal["quiet_hours", "opted_out", "daily_limit"]


@dataclass(frozen=True)
class Frontage:
    """The pavement one shop answers for, in one camera's view.

    Attributes:
        shop: The shop's id.
        zone: The frontage polygon (normalised coordinates).
        violations: The violations the shop answers for.
        opted_out: The shop asked not to be texted (its violations go the usual path).
    """

    shop: str
    zone: PolygonZone
    violations: frozenset[str] = frozenset(DEFAULT_SHOP_VIOLATIONS)
    opted_out: bool = False

    def holds(self, point: tuple[float, float]) -> bool:
        """Whether a normalised ground point lies in the frontage (edges count)."""
        pts = np.array([[point[0] * 10_000, point[1] * 10_000]], np.float32)
        return bool(self.zone.contains(pts, 10_000, 10_000)[0])

    def area(self) -> float:
        """The polygon's area in normalised units (the smaller frontage wins where two overlap)."""
        p = np.asarray(self.zone.polygon, np.float64)
        return 0.5 * abs(float(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])))


@dataclass(frozen=True)
class ReminderSettings:
    """The reminder policy of one zone."""

    channels: tuple[str, ...] = ()
    template: str = DEFAULT_TEMPLATE
    deadline_s: float = 600.0
    quiet_hours: tuple[QuietHours, ...] = ()
    max_per_day: int = 2


@dataclass(frozen=True)
class ReminderAction:
    """Something the caller must do or record.

    ``send``: text the shop now (``deadline_ts`` is when the place is re-checked). ``skipped``: the violation
    is the shop's but no text goes out (``reason``); it takes the usual path at once. ``outcome``: what the
    re-check found.
    """

    kind: Literal["send", "skipped", "outcome"]
    key: str
    shop: str
    zone: str
    violation: str
    ts: float
    offence: int = 1  # the shop's n-th attributed violation seen by this loop
    deadline_ts: float | None = None
    reason: SkipReason | None = None
    outcome: Outcome | None = None
    time_to_clear_s: float | None = None


@dataclass(frozen=True)
class Attribution:
    """A violation found to be a shop's, and whether a reminder goes out (``reason`` None) or not."""

    shop: str
    reason: SkipReason | None


@dataclass
class _Watch:
    shop: str
    zone: str
    violation: str
    sent_ts: float
    deadline_ts: float
    ended_at: float | None = None


@dataclass
class ReminderLoop(PlaceWatches):
    """One camera's shops and reminder policies: :meth:`attribute`, :meth:`start`, ``on_end`` / ``on_resume``
    (:class:`~detector.warnings.PlaceWatches`), :meth:`tick`.

    Attributes:
        frontages: The camera's shops.
        zones: Reminder policies by zone id (zones without one never remind).
        grace_s: Per zone, how long after the deadline the re-check waits: a violation's end is known only
            once it has been gone for the rules' gap tolerance, so the re-check looks that much later at
            whether it ended by the deadline.
    """

    frontages: list[Frontage]
    zones: dict[str, ReminderSettings]
    grace_s: dict[str, float] = field(default_factory=dict)
    _watch: dict[str, _Watch] = field(default_factory=dict)
    _sent_per_day: dict[tuple[str, dt.date], int] = field(default_factory=dict)
    _offences: dict[str, int] = field(default_factory=dict)

    def already_sent(self, day: dt.date, counts: dict[str, int]) -> None:
        """Texts sent to shops earlier that day (by an earlier run): they count against the daily limit."""
        for shop, n in counts.items():
            self._sent_per_day[(shop, day)] = max(n, self._sent_per_day.get((shop, day), 0))

    def shop_at(self, violation: str, point: tuple[float, float]) -> Frontage | None:
        """The shop whose frontage holds a normalised ground point and who answers for ``violation``."""
        found = [f for f in self.frontages if violation in f.violations and f.holds(point)]
        return min(found, key=Frontage.area) if found else None

    def attribute(self, zone: str, violation: str, point: tuple[float, float], when: dt.datetime
                  ) -> Attribution | None:
        """Whose violation this is and whether a reminder may go out now; None when no shop answers for it
        here or the zone has no reminder policy. Changes nothing."""
        policy = self.zones.get(zone)
        shop = self.shop_at(violation, point) if policy is not None else None
        if policy is None or shop is None:
            return None
        if shop.opted_out:
            return Attribution(shop.shop, "opted_out")
        if any(q.contains(when.time()) for q in policy.quiet_hours):
            return Attribution(shop.shop, "quiet_hours")
        if self._sent_per_day.get((shop.shop, when.date()), 0) >= policy.max_per_day:
            return Attribution(shop.shop, "daily_limit")
        return Attribution(shop.shop, None)

    def start(self, key: str, zone: str, violation: str, ts: float, when: dt.datetime, found: Attribution
              ) -> ReminderAction:
        """Act on an :meth:`attribute` answer: the shop is texted now (``send``), or not (``skipped``)."""
        offence = self._offences.get(found.shop, 0) + 1
        self._offences[found.shop] = offence
        if found.reason is not None:
            return ReminderAction("skipped", key, found.shop, zone, violation, ts, offence, reason=found.reason)
        deadline = ts + self.zones[zone].deadline_s
        self._watch[key] = _Watch(found.shop, zone, violation, ts, deadline)
        day = (found.shop, when.date())
        self._sent_per_day[day] = self._sent_per_day.get(day, 0) + 1
        return ReminderAction("send", key, found.shop, zone, violation, ts, offence, deadline_ts=deadline)

    def waiting(self, key: str) -> bool:
        """Whether a place is waiting for its re-check."""
        return key in self._watch

    def tick(self, ts: float) -> list[ReminderAction]:
        """Re-check the places whose deadline has come."""
        out: list[ReminderAction] = []
        for key, w in list(self._watch.items()):
            if ts < w.deadline_ts + self.grace_s.get(w.zone, 0.0):
                continue
            del self._watch[key]
            if w.ended_at is not None and w.ended_at <= w.deadline_ts:
                out.append(ReminderAction("outcome", key, w.shop, w.zone, w.violation, ts, deadline_ts=w.deadline_ts,
                                          outcome="resolved_by_reminder",
                                          time_to_clear_s=max(0.0, w.ended_at - w.sent_ts)))
            else:
                out.append(ReminderAction("outcome", key, w.shop, w.zone, w.violation, ts, deadline_ts=w.deadline_ts,
                                          outcome="reminder_no_effect"))
        return out

    def finish(self, ts: float) -> list[ReminderAction]:
        """The source ended: places still waiting are ``undecided`` (the end of a recording is no clearing)."""
        out = [ReminderAction("outcome", key, w.shop, w.zone, w.violation, ts, deadline_ts=w.deadline_ts,
                              outcome="undecided") for key, w in self._watch.items()]
        self._watch.clear()
        return out


def render_text(template: str, *, shop: str, violation: str, place: str, time: dt.datetime, deadline: dt.datetime,
                case: str) -> str:
    """A reminder's text from its template (unknown ``{names}`` are left as written)."""
    values = {"shop": shop, "violation": VIOLATION_NAMES_ZH.get(violation, violation), "place": place or "贵店门前",
              "time": time.strftime("%H:%M"), "deadline": deadline.strftime("%H:%M"), "case": case}

    class _Keep(dict[str, str]):
        def __missing__(self, name: str) -> str:
            return "{" + name + "}"

    return template.format_map(_Keep(values))


class ReminderRecord(TypedDict):
    """One attributed violation, as the statistics read it (a batch log row or a stored reminder)."""

    shop: str
    sent: bool
    outcome: str | None
    time_to_clear_s: float | None


class ShopStats(TypedDict):
    """One shop's record: the raw material of a bureau's "credit" records for shops."""

    violations: int  # attributed to the shop
    reminders: int  # texts sent
    resolved: int  # cleared by the deadline
    no_effect: int  # still there at the deadline
    share_resolved: float | None  # resolved / (resolved + no_effect)
    median_time_to_clear_s: float | None
    repeat_offences: int  # attributed violations after the first


def shop_stats(records: Iterable[ReminderRecord]) -> dict[str, ShopStats]:
    """Per shop: violations, reminders sent, share resolved by reminder, median time to clear, repeat offences."""
    out: dict[str, ShopStats] = {}
    clear: dict[str, list[float]] = {}
    for r in records:
        s = out.setdefault(r["shop"], {"violations": 0, "reminders": 0, "resolved": 0, "no_effect": 0,
                                       "share_resolved": None, "median_time_to_clear_s": None, "repeat_offences": 0})
        s["violations"] += 1
        s["reminders"] += int(r["sent"])
        if r["outcome"] == "resolved_by_reminder":
            s["resolved"] += 1
            if r["time_to_clear_s"] is not None:
                clear.setdefault(r["shop"], []).append(r["time_to_clear_s"])
        elif r["outcome"] == "reminder_no_effect":
            s["no_effect"] += 1
    for shop, s in out.items():
        decided = s["resolved"] + s["no_effect"]
        s["share_resolved"] = round(s["resolved"] / decided, 3) if decided else None
        times = sorted(clear.get(shop, []))
        s["median_time_to_clear_s"] = round(times[len(times) // 2], 1) if times else None
        s["repeat_offences"] = max(0, s["violations"] - 1)
    return out
