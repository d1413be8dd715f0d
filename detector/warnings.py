"""The warning policy and the closed loop from a voice warning to a case outcome (pure logic).

When a violation starts in a zone with a warning policy, a message is played on
the zone's speakers (unless it is quiet hours, the zone is cooling down, or the
place was already warned ``max_repeats`` times). ``recheck_s`` later the same
place is checked again: if the violation has ended, the case is
``resolved_by_warning``; if it persists, it is ``warned_no_effect`` and goes on to
dispatch (and may be warned again while repeats remain).

Everything runs on the caller's clock (source seconds in batch, wall seconds in
the service) and a caller-supplied time of day, so tests control both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypedDict

#: Default Mandarin messages per violation.
DEFAULT_MESSAGES: dict[str, str] = {
    "street_stall": "您好，此处禁止占道经营，请立即收摊离开，谢谢配合。",
    "garbage": "您好，此处禁止乱堆乱放垃圾，请立即清理，谢谢配合。",
    "barbecue": "您好，此处禁止露天烧烤，请立即停止，谢谢配合。",
    "uncovered_truck": "前方车辆请注意，运输散体物料须密闭覆盖，请立即整改。",
    "overflowing_bin": "您好，垃圾桶已满，请勿继续投放，谢谢配合。",
    "unlicensed_muck_truck": "前方渣土车辆请注意，未经核准不得运输建筑垃圾，请靠边停车接受检查。",
}


@dataclass(frozen=True)
class QuietHours:
    """A daily window (may cross midnight) in which no warning is played."""

    start: dt.time
    end: dt.time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """Parse ``"22:00-07:00"``."""
        a, _, b = text.partition("-")
        try:
            return cls(dt.time.fromisoformat(a.strip()), dt.time.fromisoformat(b.strip()))
        except ValueError as exc:
            raise ValueError(f"quiet hours '{text}' must look like 22:00-07:00") from exc

    def contains(self, t: dt.time) -> bool:
        """Whether a time of day falls inside the window."""
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


@dataclass(frozen=True)
class WarningSettings:
    """Warning policy of one zone."""

    violations: frozenset[str]
    messages: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MESSAGES))
    speakers: tuple[str, ...] = ()
    quiet_hours: tuple[QuietHours, ...] = ()
    cooldown_s: float = 300.0
    max_repeats: int = 2
    recheck_s: float = 60.0
    volume: float = 1.0


@dataclass(frozen=True)
class WarningAction:
    """Something the caller must do: ``play`` a message, or record an ``outcome`` of a case."""

    kind: str  # "play" | "outcome"
    key: str
    zone: str
    violation: str
    ts: float
    text: str = ""
    outcome: str = ""  # resolved_by_warning | warned_no_effect
    repeat: int = 0
    time_to_clear_s: float | None = None


class _Ends(Protocol):
    ended_at: float | None


class PlaceWatches:
    """Places waiting for a re-check after a warning or a reminder: what ended meanwhile, what came back.

    Shared by :class:`WarningLoop` and :class:`detector.reminders.ReminderLoop` (their ``_watch``).
    """

    _watch: Mapping[str, _Ends]

    def on_end(self, key: str, ts: float) -> None:
        """The violation at this place ended (it is re-checked when its time comes)."""
        w = self._watch.get(key)
        if w is not None and w.ended_at is None:
            w.ended_at = ts

    def on_resume(self, key: str) -> None:
        """The violation came back within the cooldown (same case): it has not cleared."""
        w = self._watch.get(key)
        if w is not None:
            w.ended_at = None


@dataclass
class _Watch:
    zone: str
    violation: str
    first_warned: float
    last_warned: float
    repeats: int
    recheck_at: float
    ended_at: float | None = None
    escalated: bool = False


class WarningLoop(PlaceWatches):
    """Per-camera closed loop: call :meth:`on_start`, :meth:`on_end` and :meth:`tick`."""

    def __init__(self, zones: dict[str, WarningSettings]) -> None:
        self.zones = zones
        self._watch: dict[str, _Watch] = {}
        self._zone_last: dict[tuple[str, str], float] = {}

    def on_start(self, key: str, zone: str, violation: str, ts: float, now: dt.time) -> list[WarningAction]:
        """A violation started: warn now if the policy allows."""
        return self._maybe_warn(key, zone, violation, ts, now, repeat=0)

    def _maybe_warn(self, key: str, zone: str, violation: str, ts: float, now: dt.time, repeat: int
                    ) -> list[WarningAction]:
        s = self.zones.get(zone)
        if s is None or violation not in s.violations or repeat >= s.max_repeats:
            return []
        if any(q.contains(now) for q in s.quiet_hours):
            return []
        last = self._zone_last.get((zone, violation))
        if repeat == 0 and last is not None and ts - last < s.cooldown_s:
            return []
        self._zone_last[(zone, violation)] = ts
        w = self._watch.get(key)
        if w is None:
            self._watch[key] = _Watch(zone, violation, ts, ts, repeat + 1, ts + s.recheck_s)
        else:
            w.last_warned, w.repeats, w.recheck_at = ts, repeat + 1, ts + s.recheck_s
        text = s.messages.get(violation, DEFAULT_MESSAGES.get(violation, ""))
        return [WarningAction("play", key, zone, violation, ts, text=text, repeat=repeat + 1)]

    def tick(self, ts: float, now: dt.time) -> list[WarningAction]:
        """Re-check due places; returns outcomes and repeated warnings."""
        actions: list[WarningAction] = []
        for key, w in list(self._watch.items()):
            if ts < w.recheck_at:
                continue
            if w.ended_at is not None and w.ended_at <= w.recheck_at:
                actions.append(WarningAction("outcome", key, w.zone, w.violation, ts, outcome="resolved_by_warning",
                                             time_to_clear_s=max(0.0, w.ended_at - w.first_warned)))
                del self._watch[key]
                continue
            if not w.escalated:
                w.escalated = True
                actions.append(WarningAction("outcome", key, w.zone, w.violation, ts, outcome="warned_no_effect"))
            again = self._maybe_warn(key, w.zone, w.violation, ts, now, repeat=w.repeats)
            actions.extend(again)
            if not again:
                del self._watch[key]  # no repeats left: the case goes on without the loop
        return actions

    def pending(self) -> int:
        """Places waiting for their re-check."""
        return len(self._watch)


class WarningStats(TypedDict):
    """Warnings of one zone and violation: played, and what the re-checks found."""

    played: int
    resolved: int  # cleared after the warning
    no_effect: int  # still there at the re-check
    share_resolved: float | None  # resolved / (resolved + no_effect)
    median_time_to_clear_s: float | None


def warning_stats(actions: list[WarningAction]) -> dict[str, WarningStats]:
    """Per zone and violation (``zone/violation``): warnings played, share resolved by warning, median time to
    clear."""
    out: dict[str, WarningStats] = {}
    clear_times: dict[str, list[float]] = {}
    for a in actions:
        k = f"{a.zone}/{a.violation}"
        s = out.setdefault(k, {"played": 0, "resolved": 0, "no_effect": 0, "share_resolved": None,
                               "median_time_to_clear_s": None})
        if a.kind == "play":
            s["played"] += 1
        elif a.outcome == "resolved_by_warning":
            s["resolved"] += 1
            if a.time_to_clear_s is not None:
                clear_times.setdefault(k, []).append(a.time_to_clear_s)
        else:
            s["no_effect"] += 1
    for k, s in out.items():
        times = sorted(clear_times.get(k, []))
        decided = s["resolved"] + s["no_effect"]
        s["share_resolved"] = round(s["resolved"] / decided, 3) if decided else None
        s["median_time_to_clear_s"] = round(times[len(times) // 2], 1) if times else None
    return out
