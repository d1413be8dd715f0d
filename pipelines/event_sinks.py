"""Where a camera's events go once their case is committed: evidence, voice warnings, callbacks.

:class:`~pipelines.runner.CameraPipeline` commits each event to the case store first (a case is never
lost to a failing sink), then fans it out to its list of :class:`EventSink`. A sink's failure is logged
and never stops the frame loop or the other sinks.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

from detector.digest import sha256_file
from detector.events import EventState, ViolationEvent
from detector.rules import ZoneSpec
from detector.warnings import WarningAction, WarningLoop
from pipelines.sinks.evidence import EvidenceRecorder
from pipelines.sinks.store import CaseContext, CaseWriter
from pipelines.sources import Frame, RecordedPacket, StreamParams

log = logging.getLogger(__name__)

EventCallback = Callable[[ViolationEvent, str], None]
"""Called with an event and its case id."""


class EventSink:
    """One consumer of a camera's committed events; every hook is optional (does nothing here).

    A sink that ``enriches_case`` holds a new case's dispatch only until its own ``on_event`` has run (it adds
    to the case what the dispatch must carry, e.g. a truck's plate); the pipeline then dispatches the case
    unless another sink holds it longer.
    """

    enriches_case: bool = False

    def observe(self, frame: Frame) -> None:
        """Every decoded frame, sampled or not (an evidence buffer keeps them)."""

    def packet(self, stream: str, params: StreamParams, packet: RecordedPacket) -> None:
        """Every compressed video packet of the camera's ``detect`` or ``record`` stream (stream-copy evidence)."""

    def sample(self, frame: Frame) -> None:
        """Every frame that went to the detector (or had its detections reused), before the rules see it."""

    def defers_dispatch(self, event: ViolationEvent) -> bool:
        """Whether this sink decides later on the case's dispatch (a voice warning comes first). Asked of
        every sink for every event, before the event is committed."""
        return False

    def on_event(self, event: ViolationEvent, case_id: str, frame: Frame | None) -> None:
        """A committed event and its case id; ``frame`` is the frame it happened on (None at the end)."""

    def tick(self, ts: float) -> None:
        """After each processed sample, at its time."""

    def finish(self) -> None:
        """The source ended."""


class EvidenceSink(EventSink):
    """Evidence files of each case: snapshot at its start, frames and clips, recorded in the store.

    Args:
        recorder: The camera's evidence buffer and writer.
        store: Where the files are recorded.
        root: Paths in the store are relative to this folder (None: as written).
        zones: The camera's zones (drawn on the snapshot).
        source: The source's name, for log lines.
    """

    def __init__(self, recorder: EvidenceRecorder, store: CaseWriter, root: Path | None, zones: list[ZoneSpec],
                 source: str) -> None:
        self.recorder, self.store, self.root, self.zones, self.source = recorder, store, root, zones, source
        recorder.on_written = self._record  # clips written in the background are recorded when they are done

    def observe(self, frame: Frame) -> None:
        self._record(self.recorder.observe(frame.ts, lambda: frame.image))

    def packet(self, stream: str, params: StreamParams, packet: RecordedPacket) -> None:
        self._record(self.recorder.packet(stream, params, packet))

    def sample(self, frame: Frame) -> None:
        self._record(self.recorder.sample(frame.ts, lambda: frame.image))

    def on_event(self, event: ViolationEvent, case_id: str, frame: Frame | None) -> None:
        if event.state is not EventState.START or frame is None:
            return
        zone = next((z for z in self.zones if z.id == event.zone), None)
        h, w = frame.image.shape[:2]
        poly = zone.zone.pixels(w, h) if zone is not None and zone.id != "frame" else None
        snap = self.recorder.start_case(case_id, event, frame.image, poly)
        self._record([(case_id, "snapshot", snap), *self.recorder.take_frames()])

    def finish(self) -> None:
        self._record(self.recorder.finish())

    def _record(self, files: list[tuple[str, str, Path]]) -> None:
        for case_id, kind, path in files:
            rel = path.relative_to(self.root) if self.root else path
            try:
                self.store.add_evidence(case_id, kind, rel.as_posix(), sha256_file(path))
            except Exception as exc:
                log.error("%s: evidence %s of case %s not recorded: %s", self.source, path, case_id, exc)


class WarningSink(EventSink):
    """The closed loop of voice warnings: warn at a violation's start, re-check, close or dispatch.

    Args:
        loop: The camera's warning policies and state.
        store: Case store (warning outcomes close, annotate or dispatch a case).
        context: The camera's case context (its dispatch targets).
        play: Plays a warning (the service sends it to speakers); None: only recorded (batch simulation).
        time_of_day: The local time of day, for quiet hours.
        source: The source's name, for log lines.
    """

    def __init__(self, loop: WarningLoop, store: CaseWriter, context: CaseContext | None,
                 play: Callable[[WarningAction, str], None] | None, time_of_day: Callable[[], dt.time],
                 source: str) -> None:
        self.loop, self.store, self.context, self.play = loop, store, context, play
        self.time_of_day, self.source = time_of_day, source
        self.actions: list[WarningAction] = []
        self._case_of: dict[str, str] = {}
        self._held: set[str] = set()

    def defers_dispatch(self, event: ViolationEvent) -> bool:
        policy = self.loop.zones.get(event.zone)
        return policy is not None and event.violation in policy.violations

    def hold(self, key: str) -> None:
        """Another loop goes first at this place (a text to the responsible shop): no warning at its start."""
        self._held.add(key)

    def release(self, key: str, zone: str, violation: str, ts: float) -> bool:
        """The loop that went first had no effect: warn now, as at a start. Returns whether this zone warns
        about the violation (if not, the caller dispatches the case itself)."""
        self._held.discard(key)
        policy = self.loop.zones.get(zone)
        if policy is None or violation not in policy.violations:
            return False
        self._start(key, zone, violation, ts)
        return True

    def on_event(self, event: ViolationEvent, case_id: str, frame: Frame | None) -> None:
        self._case_of[event.key] = case_id
        if event.state is EventState.START:
            if event.key not in self._held and self.defers_dispatch(event):
                self._start(event.key, event.zone, event.violation, event.ts)
        elif event.state is EventState.END:
            self.loop.on_end(event.key, event.ts)
        else:
            self.loop.on_resume(event.key)

    def tick(self, ts: float) -> None:
        self._apply(self.loop.tick(ts, self.time_of_day()))

    @property
    def log_rows(self) -> list[dict[str, object]]:
        """The warning actions so far, with their case ids, as JSON-ready rows (for reports)."""
        return [{"case_id": self._case_of.get(a.key, ""), "kind": a.kind, "zone": a.zone, "violation": a.violation,
                 "ts": round(a.ts, 3), "text": a.text, "repeat": a.repeat, "outcome": a.outcome,
                 "time_to_clear_s": a.time_to_clear_s} for a in self.actions]

    def _apply(self, actions: list[WarningAction]) -> None:
        """Play warnings and apply the closed loop's outcomes to the cases."""
        self.actions.extend(actions)
        for a in actions:
            case_id = self._case_of.get(a.key, "")
            try:
                if a.kind == "play" and self.play is not None:
                    self.play(a, case_id)
                elif a.outcome == "resolved_by_warning" and case_id:
                    self.store.transition(case_id, "closed", "system:warning", "resolved_by_warning")
                elif a.outcome == "warned_no_effect":
                    self._dispatch(a.key, a.zone, "warned_no_effect")
            except Exception as exc:  # a speaker or a state change must never stop the frame loop
                log.error("%s: warning step for case %s failed: %s", self.source, case_id, exc)

    def _start(self, key: str, zone: str, violation: str, ts: float) -> None:
        """Warn at a violation's start; when no warning can be played now (quiet hours, the zone cooling down,
        repeats used up) the case goes on at once: its dispatch was held back for the warning."""
        actions = self.loop.on_start(key, zone, violation, ts, self.time_of_day())
        self._apply(actions)
        if not actions:
            self._dispatch(key, zone, "not warned (quiet hours, cooldown or repeats used up)")

    def _dispatch(self, key: str, zone: str, note: str) -> None:
        """Queue a held-back case for dispatch (with a history note); without dispatch targets, only the note."""
        case_id = self._case_of.get(key, "")
        if not case_id:
            return
        try:
            if self.context is not None and self.context.targets_for(zone):
                self.store.enqueue_dispatch(case_id, self.context, note)
            else:
                self.store.annotate(case_id, "system:warning", note)
        except Exception as exc:  # the case is stored; a failed queueing is logged, never stops the frames
            log.error("%s: dispatch of case %s after its warning step failed: %s", self.source, case_id, exc)


class CallbackSink(EventSink):
    """Calls a function with each committed event and its case id (the service's live event stream)."""

    def __init__(self, callback: EventCallback) -> None:
        self.callback = callback

    def on_event(self, event: ViolationEvent, case_id: str, frame: Frame | None) -> None:
        self.callback(event, case_id)
