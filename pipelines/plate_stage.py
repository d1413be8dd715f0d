"""The plate stage: the muck-transport register's word on each truck passing a zone that watches for
unlicensed muck trucks, as ``data["unlicensed"]`` on the detections the rules see.

It runs between the tracker and the rules (:class:`~pipelines.runner.CameraPipeline`), for cameras with
``plates: true``, a register, and a zone listing ``unlicensed_muck_truck``. Every truck track inside such a zone
has its plate read on up to ``max_reads`` sampled frames, at least ``interval_s`` apart, until the voted plate
has ``enough`` readings; the readings are voted (:class:`~detector.plates.PlateVotes`) and the voted plate is
checked against the register at the frame's local time. Per row: 1 unlicensed (not in the register, expired,
not yet valid, outside its hours; on two agreeing readings at least, so that one misreading of a licensed
truck accuses nobody), 0 licensed, -1 not known yet (never unlicensed on a guess). Whether the
truck is loaded, and whether one truck is one case, the rules decide (:mod:`detector.rules`).

OCR costs a few hundred milliseconds a reading (``make bench-plates``): a camera pays it only for trucks in
its licence-watching zones, a few times per truck.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field, replace

import numpy as np

from detector.plates import PlateVotes
from detector.rules import TRUCK_LABELS, ZoneSpec
from detector.types import Detections
from pipelines.plate_sink import PlateSetup
from pipelines.sources import Frame

log = logging.getLogger(__name__)


def _agreeing(votes: PlateVotes, plate: str) -> int:
    """How many of the readings read exactly ``plate``."""
    return sum(p == plate for p, _ in votes.readings)


@dataclass
class _Track:
    votes: PlateVotes = field(default_factory=PlateVotes)
    reads: int = 0
    last_read: float = -1e9
    last_seen: float = 0.0
    status: int = -1


class PlateStage:
    """Marks truck rows licensed / unlicensed from their voted plates (see the module docstring).

    Args:
        setup: Plate reader, register (required) and clock.
        names: Detector class names.
        zones: The zones that watch ``unlicensed_muck_truck``.
        source: For log lines.
        max_reads: Most readings per truck track.
        enough: Readings of the voted plate after which a track is not read again.
        interval_s: Least time between two readings of one track.
        forget_s: A track not seen this long is forgotten.
    """

    def __init__(self, setup: PlateSetup, names: list[str], zones: list[ZoneSpec], source: str = "",
                 max_reads: int = 6, enough: int = 3, interval_s: float = 0.5, forget_s: float = 120.0) -> None:
        if setup.register is None:
            raise ValueError("unlicensed muck trucks need a muck-transport register (muck_register:)")
        self.setup, self.zones, self.source = setup, zones, source
        self.truck_ids = np.asarray([i for i, n in enumerate(names) if n in TRUCK_LABELS], np.int64)
        self.max_reads, self.enough, self.interval_s, self.forget_s = max_reads, enough, interval_s, forget_s
        self.tracks: dict[int, _Track] = {}
        self.readings = 0

    def __call__(self, det: Detections, frame: Frame) -> Detections:
        """``det`` with ``data["unlicensed"]`` (one value per row; -1 for everything that is not a watched truck)."""
        col = np.full(len(det), -1, np.int64)
        if len(det):
            h, w = frame.shape
            inside = np.zeros(len(det), bool)
            for z in self.zones:
                inside |= z.zone.trigger(det, w, h)
            rows = np.flatnonzero(inside & np.isin(det.class_id, self.truck_ids) & (det.tracker_id >= 0))
            for i in rows:
                col[i] = self._status(int(det.tracker_id[i]), det, int(i), frame)
        self._forget(frame.ts)
        return replace(det, data={**det.data, "unlicensed": col})

    def _status(self, tid: int, det: Detections, i: int, frame: Frame) -> int:
        t = self.tracks.setdefault(tid, _Track())
        t.last_seen = frame.ts
        voted = t.votes.result()
        settled = voted is not None and _agreeing(t.votes, voted[0]) >= self.enough
        if not settled and t.reads < self.max_reads and frame.ts - t.last_read >= self.interval_s:
            box = tuple(float(v) for v in det.xyxy[i])
            found = self.setup.reader.read(frame.image, (box[0], box[1], box[2], box[3]))
            t.reads, t.last_read = t.reads + 1, frame.ts
            self.readings += 1
            if found:
                t.votes.add(found[0].plate, found[0].confidence)
            voted = t.votes.result()
            if voted is not None and self.setup.register is not None:
                when = (self.setup.clock or (lambda _ts: dt.datetime.now()))(frame.ts)
                check = self.setup.register.check(voted[0], when)
                # A licensed truck misread once must not be accused: "unlicensed" needs two agreeing readings.
                status = int(check.unlicensed) if _agreeing(t.votes, voted[0]) >= 2 or not check.unlicensed else -1
                if status != t.status:
                    log.info("%s: truck %d: plate %s, %s", self.source, tid, voted[0], check.status)
                t.status = status
        return t.status

    def _forget(self, ts: float) -> None:
        for tid in [k for k, t in self.tracks.items() if ts - t.last_seen > self.forget_s]:
            del self.tracks[tid]
