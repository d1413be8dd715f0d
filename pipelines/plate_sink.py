"""The vehicle of a truck case: its plate, read on the case's frames and voted, and the muck-transport register's
word on it (company, permit, ``licensed`` or why not) — an event sink.

For every truck case's event (``uncovered_truck``, ``unlicensed_muck_truck``) that comes with its frame (the
start, and the updates while the truck is seen) the :class:`~detector.plate_reader.PlateReader` reads the
truck's box; the readings are voted per case (:class:`~detector.plates.PlateVotes`) and the case's ``vehicle``
is written whenever the voted plate or its register status changes. OCR costs a few hundred milliseconds per
reading, so cameras switch it on (``plates: true``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detector.digest import sha256_file
from detector.events import EventState, ViolationEvent
from detector.plate_reader import PlateReading, ReadsPlates
from detector.plates import PlateVotes
from detector.rules import MOVING
from pipelines.event_sinks import EventSink
from pipelines.muck_register import MuckRegister
from pipelines.sinks.store import CaseWriter
from pipelines.sources import Frame

log = logging.getLogger(__name__)

TRUCK_CASES = MOVING  # the truck violations


@dataclass(frozen=True)
class PlateSetup:
    """What a pipeline needs to name a truck case's vehicle.

    Attributes:
        reader: The plate reader (one per process: it holds the OCR models).
        register: Licensed muck trucks (None: no register, plates only).
        clock: Local time of a source time (permits' validity and hours).
    """

    reader: ReadsPlates
    register: MuckRegister | None = None
    clock: Callable[[float], dt.datetime] | None = None


class PlateSink(EventSink):
    """Reads and votes the plate of each truck case and records it with the register's status.

    Args:
        setup: Reader, register and clock.
        store: Where the case's vehicle is recorded.
        source: The source's name, for log lines.
    """

    enriches_case = True  # a truck case's dispatch waits for its first reading (the payload names the vehicle)

    def __init__(self, setup: PlateSetup, store: CaseWriter, source: str = "", evidence_dir: Path | None = None,
                 evidence_root: Path | None = None) -> None:
        self.setup, self.store, self.source = setup, store, source
        self.evidence_dir, self.evidence_root = evidence_dir, evidence_root
        self.votes: dict[str, PlateVotes] = {}
        self.written: dict[str, dict[str, Any]] = {}
        self.crop_confidence: dict[str, float] = {}

    def defers_dispatch(self, event: ViolationEvent) -> bool:
        return event.state is EventState.START and event.violation in TRUCK_CASES

    def on_event(self, event: ViolationEvent, case_id: str, frame: Frame | None) -> None:
        if event.violation not in TRUCK_CASES or frame is None or event.state is EventState.END:
            return
        readings = self.setup.reader.read(frame.image, event.box)
        votes = self.votes.setdefault(case_id, PlateVotes())
        if readings:
            votes.add(readings[0].plate, readings[0].confidence)
        voted = votes.result()
        if readings and voted and readings[0].plate == voted[0]:
            self._crop(case_id, frame, readings[0])
        vehicle: dict[str, Any] = {"plate": voted[0] if voted else None,
                                   "plate_confidence": voted[1] if voted else None, "readings": len(votes.readings)}
        if voted and self.setup.register is not None:
            when = (self.setup.clock or (lambda _ts: dt.datetime.now()))(event.ts)
            check = self.setup.register.check(voted[0], when)
            vehicle["licence"] = check.status
            vehicle["unlicensed"] = check.unlicensed
            if check.vehicle is not None:
                vehicle["company"], vehicle["permit"] = check.vehicle.company, check.vehicle.permit
        if vehicle != self.written.get(case_id):
            self.store.set_vehicle(case_id, vehicle)
            self.written[case_id] = vehicle
            if voted:
                log.info("%s: case %s: plate %s (%.2f)%s", self.source, case_id, voted[0], voted[1],
                         f", {vehicle['licence']}" if "licence" in vehicle else "")

    def _crop(self, case_id: str, frame: Frame, reading: PlateReading) -> None:
        """Keep the plate's crop as the case's ``plate`` evidence (the clearest reading of the voted plate)."""
        if self.evidence_dir is None or reading.confidence <= self.crop_confidence.get(case_id, -1.0):
            return
        h, w = frame.image.shape[:2]
        x1, y1, x2, y2 = reading.box
        mx, my = (x2 - x1) * 0.15, (y2 - y1) * 0.3
        crop = frame.image[max(0, int(y1 - my)):min(h, int(y2 + my)), max(0, int(x1 - mx)):min(w, int(x2 + mx))]
        if crop.size == 0:
            return
        crop = np.asarray(cv2.resize(crop, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC), np.uint8)
        path = self.evidence_dir / f"{case_id}_plate.jpg"
        try:
            self.evidence_dir.mkdir(parents=True, exist_ok=True)
            ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not ok:
                return
            path.write_bytes(buf.tobytes())
            rel = path.relative_to(self.evidence_root) if self.evidence_root else path
            self.store.add_evidence(case_id, "plate", rel.as_posix(), sha256_file(path))
            self.crop_confidence[case_id] = reading.confidence
        except (OSError, ValueError) as exc:  # a full disk never stops the frames; the plate stays on the case
            log.error("%s: plate crop of case %s not kept: %s", self.source, case_id, exc)
