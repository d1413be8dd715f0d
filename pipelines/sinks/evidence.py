"""Evidence: a JPEG snapshot and a short H.264 clip for every case.

A case's clip runs from a few seconds before the violation was first seen to a few seconds after its
confirmation; a long dwell is a time-lapse. Two ways to make it:

* **Stream copy** (whenever the source's packets are H.264/H.265 and reach the recorder): the camera's own
  compressed packets are kept in a :class:`~pipelines.sinks.packets.PacketRing` per stream and cut into the
  MP4 without decoding or encoding anything: key frames only for the long history, every packet for the last
  seconds. With two streams per camera the ``record`` (main) stream's ring is used, and the ``detect`` stream's
  when the main stream does not cover the case (it dropped). The snapshot frame is then decoded from the detect
  stream's packets too: no frame is kept decoded or re-encoded while nothing happens.
* **Re-encoded** (images, MJPEG, sources without packets): two bounded rings of JPEG-encoded, downscaled frames,
  a short one at a higher rate and a long one at a low rate covering the longest dwell, encoded into H.264.

The snapshot is the sampled frame with the best detection, with the box and the zone drawn on it; a
full-resolution one can be decoded from a stream-copied clip later (:func:`fullres_snapshot`).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Protocol, TypeVar

import cv2
import numpy as np
import numpy.typing as npt

from detector.events import ViolationEvent
from pipelines.sinks.packets import PacketClip, PacketRing, frame_at, write_clip_packets
from pipelines.sources import RecordedPacket, StreamParams

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]


def draw_case(image: Image, box: tuple[float, float, float, float], label: str,
              polygon: npt.NDArray[np.float32] | None) -> Image:
    """Draw a case's box, label and zone polygon (pixels) on a copy of the image."""
    out = image.copy()
    if polygon is not None:
        cv2.polylines(out, [polygon.astype(np.int32).reshape(-1, 1, 2)], True, (0, 220, 255), 2, cv2.LINE_AA)
    x1, y1, x2, y2 = (round(v) for v in box)
    cv2.rectangle(out, (x1, y1), (x2, y2), (0, 0, 255), 2, cv2.LINE_AA)
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2)
    ty = max(th + 4, y1)
    cv2.rectangle(out, (x1, ty - th - 4), (x1 + tw + 4, ty), (0, 0, 255), -1)
    cv2.putText(out, label, (x1 + 2, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def write_clip(frames: list[tuple[float, Image]], path: Path, fps_hint: float = 10.0) -> None:
    """Write ``(ts, image)`` frames to an H.264 MP4, keeping their relative timing."""
    import av

    if not frames:
        raise ValueError("no frames for clip")
    h, w = frames[0][1].shape[:2]
    w2, h2 = w - w % 2, h - h % 2
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=round(fps_hint) or 10)
        stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.options = {"preset": "veryfast", "crf": "28"}
        t0 = frames[0][0]
        last_pts = -1
        for ts, img in frames:
            if img.shape[:2] != (h, w):
                img = np.asarray(cv2.resize(img, (w, h)), np.uint8)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:h2, :w2]), format="bgr24")
            pts = max(last_pts + 1, round((ts - t0) * 1000))
            vf.pts, vf.time_base = pts, Fraction(1, 1000)
            last_pts = pts
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@dataclass
class _PendingClip:
    case_id: str
    path: Path
    until: float
    frames: list[tuple[float, bytes]] = field(default_factory=list)


class RecordStream(Protocol):
    """A camera's main stream kept for stream-copy clips somewhere else (the service reads main streams in a
    recorder process of their own, :mod:`service.recorder`): clips are cut there, from its own packet ring."""

    @property
    def copyable(self) -> bool:
        """Whether the stream is live with packets a clip can be cut from."""
        ...

    def start_clip(self, case_id: str, path: Path, begin: float, event_ts: float, until: float,
                   need_reach: bool) -> float | None:
        """Begin a case's clip at ``path`` from ``begin`` to ``until`` if the ring covers ``event_ts`` (and, with
        ``need_reach``, reaches back to ``begin``): the clip's first frame time, or None (then nothing was begun).
        The clip is written when its last packet came, and reported to the recorder's :meth:`~EvidenceRecorder.
        remote_written`."""
        ...

    def flush(self) -> list[tuple[str, Path | None]]:
        """Write the clips still waiting for packets now: ``(case_id, path or None where it failed)``."""
        ...


_Clip = TypeVar("_Clip", _PendingClip, PacketClip)
"""A clip waiting to be written: re-encoded from JPEGs, or stream-copied from packets."""

#: Stream-copy rings in the order a clip prefers them: a camera's main stream, then the stream it detects on.
STREAMS = ("record", "detect")
#: Key frames a stream-copy ring keeps at most for the history before its last seconds (a 5-minute dwell: one
#: every 5.5 s), so a main stream's memory stays bounded by its bit rate, not by the longest dwell.
HISTORY_KEYS = 60
#: A stream-copied clip still waiting for packets this long after its end is written with what it has
#: (the stream stalled).
STALL_GRACE_S = 3.0


class EvidenceRecorder:
    """Buffers recent frames of one source and writes snapshots and clips of its cases.

    Args:
        out_dir: Folder of evidence files.
        long_s: Seconds of low-rate history (the longest dwell time plus margin).
        pre_s: Seconds before the first sighting included in a clip.
        post_s: Seconds after the confirmation included in a clip.
        max_width: Frames are downscaled to at most this width.
        fast_fps: Rate of the short buffer and of the clip's real-time parts.
        slow_fps: Rate of the long buffer.
        max_clip_frames: Longer clips are thinned to this many frames (time-lapse).
        history_every_s: Stream copy: the history's key frames are at least this far apart (and at most
            :data:`HISTORY_KEYS` of them cover ``long_s``).
        max_ring_mb: Stream copy: memory bound of each stream's packet ring.
        writer: Runs a clip's writing (stream copy or re-encoding) in the background (the service's evidence
            thread: a camera's reader and the shared detector never wait for a clip being written); the written
            clip then goes to :attr:`on_written`. None: clips are written by the call that completes them, and
            returned.
    """

    def __init__(self, out_dir: Path, long_s: float = 330.0, pre_s: float = 3.0, post_s: float = 3.0,
                 max_width: int = 960, fast_fps: float = 8.0, slow_fps: float = 1.0,
                 max_clip_frames: int = 160, history_every_s: float = 2.0, max_ring_mb: float = 24.0,
                 writer: Callable[[Callable[[], None]], Future[None]] | None = None) -> None:
        self.out_dir = out_dir
        self.long_s = long_s
        self.pre_s, self.post_s = pre_s, post_s
        self.max_width = max_width
        self.fast_fps, self.slow_fps = fast_fps, slow_fps
        self.max_clip_frames = max_clip_frames
        self.history_every_s, self.max_ring_bytes = history_every_s, int(max_ring_mb * 2**20)
        self._fast: deque[tuple[float, bytes]] = deque(maxlen=int((pre_s + post_s + 4) * fast_fps) + 2)
        self._slow: deque[tuple[float, bytes]] = deque(maxlen=int(long_s * slow_fps) + 2)
        self._last_fast = -1e9
        self._last_slow = -1e9
        self._scale = 1.0
        self._pending: list[_PendingClip] = []
        self._copying: list[PacketClip] = []
        self.writer = writer
        self._writing: list[Future[None]] = []
        #: Told of clips the background writer finished ``(case_id, "clip", path)`` (the evidence sink sets it).
        self.on_written: Callable[[list[tuple[str, str, Path]]], None] | None = None
        self.rings: dict[str, PacketRing] = {}
        #: The main stream when it is kept elsewhere (the service's recorder process); None: in :attr:`rings`.
        self.remote: RecordStream | None = None
        self._remote_lock = threading.Lock()
        self._remote_jobs: list[Future[None]] = []
        self.written: list[tuple[str, str, Path]] = []  # (case_id, kind, path) finished files
        self.frames: list[tuple[str, str, Path]] = []  # clean frames not yet recorded in the store

    @property
    def stream_copy(self) -> bool:
        """Whether clips are cut from the camera's packets (some stream delivers H.264/H.265 packets)."""
        return any(r.params is not None and r.params.copyable for r in self.rings.values()) \
            or (self.remote is not None and self.remote.copyable)

    def packet(self, stream: str, params: StreamParams, packet: RecordedPacket) -> list[tuple[str, str, Path]]:
        """Keep a compressed packet of a camera's ``stream`` (``record`` or ``detect``); returns evidence files
        finished by it."""
        if not params.copyable:
            return []
        ring = self.rings.get(stream)
        if ring is None:
            ring = self.rings[stream] = PacketRing(*self.ring_bounds())
        if ring.add(params, packet):
            for clip in self._copying:
                if clip.ring is ring:
                    clip.offer(packet)
        return self._flush_copies(packet.ts, stream)

    def ring_bounds(self) -> tuple[float, float, float, int]:
        """A stream's packet ring for these clips: ``(full_s, history_s, history_every_s, max_bytes)`` of
        :class:`~pipelines.sinks.packets.PacketRing` (a long dwell's history is a time-lapse of at most
        :data:`HISTORY_KEYS` key frames)."""
        return (self.pre_s + self.post_s + 6.0, self.long_s, max(self.history_every_s, self.long_s / HISTORY_KEYS),
                self.max_ring_bytes)

    def sample(self, ts: float, image: Image | Callable[[], Image]) -> list[tuple[str, str, Path]]:
        """A frame that went to the detector; returns evidence files finished. Stream-copying from a stream
        other than the detect stream (a main stream beside an MJPEG substream), the recorder keeps JPEGs of these
        for snapshots, at most ``slow_fps`` a second; with the detect stream's packets at hand it keeps nothing
        (the snapshot frame is decoded from them)."""
        for ring in self.rings.values():
            ring.hold(ts)
        if self.stream_copy and not self._detect_copied() and ts - self._last_slow >= 1.0 / self.slow_fps - 1e-6:
            self._slow.append((ts, self._encode(image() if callable(image) else image)))
            self._last_slow = ts
        return self._flush_copies(ts - STALL_GRACE_S, None) if self._copying else []

    def _detect_copied(self) -> bool:
        ring = self.rings.get("detect")
        return ring is not None and ring.params is not None and ring.params.copyable

    def _snapshot_image(self, ts: float, image: Image, image_ts: float) -> tuple[Image, float]:
        """The detect frame nearest ``ts``, downscaled to ``max_width``, and its scale from frame pixels: the
        confirming ``image`` (at ``image_ts``) when it is that frame, else decoded from the detect stream's packets,
        or from the kept JPEGs; the confirming ``image`` as it is if neither has it."""
        frame: Image | None = image if abs(ts - image_ts) < 1e-6 else None  # in hand: nothing to decode
        if frame is None:
            ring = self.rings.get("detect")
            got = ring.frame_at(ts) if ring is not None and self._detect_copied() else None
            frame = got[0] if got is not None else None
        if frame is not None:
            h, w = frame.shape[:2]
            s = min(1.0, self.max_width / w)
            if s < 1.0:
                frame = np.asarray(cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA),
                                   np.uint8)
            return frame, s
        best = self._frame_at(ts)
        if best is not None:
            return np.asarray(cv2.imdecode(np.frombuffer(best, np.uint8), cv2.IMREAD_COLOR), np.uint8), self._scale
        return image, 1.0

    def _encode(self, image: Image) -> bytes:
        h, w = image.shape[:2]
        self._scale = min(1.0, self.max_width / w)
        if self._scale < 1.0:
            size = (round(w * self._scale), round(h * self._scale))
            # Linear, not area: 2.5x faster for the usual 1280 -> 960, and this runs for every kept frame.
            image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), np.uint8)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        return bytes(buf) if ok else b""

    def observe(self, ts: float, image: Image | Callable[[], Image]) -> list[tuple[str, str, Path]]:
        """Buffer a decoded frame; returns evidence files finished by it ``(case_id, kind, path)``.

        ``image`` may be a callable returning it: it is called only when the frame is kept. With the detect
        stream's own packets kept, decoded frames are not (clips and snapshots come from the packets); a camera
        whose detect stream has none (MJPEG beside an H.264 main stream) keeps them for when its main stream drops.
        """
        if self._detect_copied():
            return self._flush(ts) if self._pending else []
        need_fast = ts - self._last_fast >= 1.0 / self.fast_fps - 1e-6
        need_slow = ts - self._last_slow >= 1.0 / self.slow_fps - 1e-6
        if not (need_fast or need_slow):
            return self._flush(ts) if self._pending else []
        jpg = self._encode(image() if callable(image) else image)
        if need_fast:
            self._fast.append((ts, jpg))
            self._last_fast = ts
            for p in self._pending:
                p.frames.append((ts, jpg))
        if need_slow:
            self._slow.append((ts, jpg))
            self._last_slow = ts
        return self._flush(ts)

    def _flush(self, ts: float, force: bool = False) -> list[tuple[str, str, Path]]:
        """Encode the re-encoded clips whose last frame came (all of them with ``force``): in the background
        with a :attr:`writer` (then nothing is returned here), else now."""
        done = [p for p in self._pending if force or ts >= p.until]
        if not done:
            return []
        self._pending = [p for p in self._pending if p not in done]
        if self.writer is not None:  # decoding and H.264-encoding a clip takes a reader hundreds of ms
            self._writing = [job for job in self._writing if not job.done()]
            for p in done:
                self._writing.append(self.writer(functools.partial(self._later, self._encode_clip, p)))
            return []
        finished = [f for p in done if (f := self._encode_clip(p)) is not None]
        self.written.extend(finished)
        return finished

    def _encode_clip(self, p: _PendingClip) -> tuple[str, str, Path] | None:
        """A re-encoded clip from its kept JPEGs, thinned to a time-lapse of at most ``max_clip_frames``."""
        frames = sorted({t: b for t, b in p.frames}.items())
        if len(frames) > self.max_clip_frames:
            idx = np.linspace(0, len(frames) - 1, self.max_clip_frames).round().astype(int)
            frames = [frames[i] for i in sorted(set(idx.tolist()))]
        decoded = [(t, cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)) for t, b in frames if b]
        try:
            write_clip([(t, np.asarray(im, np.uint8)) for t, im in decoded if im is not None], p.path,
                       self.fast_fps)
        except Exception as exc:  # a failed clip must not lose the case: it keeps its snapshot
            log.error("clip %s could not be written: %s", p.path, exc)
            return None
        return p.case_id, "clip", p.path

    def _flush_copies(self, ts: float, stream: str | None, force: bool = False) -> list[tuple[str, str, Path]]:
        """Write the stream-copied clips that are complete (a packet past their end came), still waiting at
        ``ts`` with ``stream`` None (the stream stalled), or whose ring started over (a reconnect)."""
        done = [c for c in self._copying if force or c.complete or (stream is None and ts >= c.until)]
        if not done:
            return []
        self._copying = [c for c in self._copying if c not in done]
        if self.writer is not None:  # written in the background: the caller (a reader, the detector) goes on
            self._writing = [job for job in self._writing if not job.done()]
            for c in done:
                self._writing.append(self.writer(functools.partial(self._later, self._write_copy, c)))
            return []
        finished = [f for c in done if (f := self._write_copy(c)) is not None]
        self.written.extend(finished)
        return finished

    def _write_copy(self, clip: PacketClip) -> tuple[str, str, Path] | None:
        return (clip.case_id, "clip", clip.path) if write_clip_packets(clip) is not None else None

    def _later(self, write: Callable[[_Clip], tuple[str, str, Path] | None], clip: _Clip) -> None:
        """A clip written by the background writer, then handed to ``on_written`` (the store)."""
        done = write(clip)
        if done is not None:
            self._deliver(done)

    def _copy_clip(self, case_id: str, begin: float, event: ViolationEvent) -> PacketClip | float | None:
        """A stream-copied clip of a case from a ring that covers it now, preferring the record stream and any ring
        that reaches back to the clip's start: a clip gathered here, the first frame time of one begun by the
        :attr:`remote` main stream, or None (no ring covers it)."""
        until = event.ts + self.post_s
        path = self.out_dir / f"{case_id}.mp4"
        usable = [r for name in STREAMS if (r := self.rings.get(name)) is not None and r.clippable(event.ts)]
        # A ring that reaches back to the clip's start first (a main stream that reconnected a moment ago does not).
        reaching = [r for r in usable if r.reaches(begin)]
        for need_reach, rings in ((True, reaching), (False, [r for r in usable if r not in reaching])):
            if self.remote is not None:  # the main stream, kept in the recorder process, comes first
                t0 = self._remote_clip(case_id, path, begin, event.ts, until, need_reach)
                if t0 is not None:
                    return t0
            for ring in rings:
                clip = ring.cut(case_id, path, begin, until)
                if clip is not None:
                    return clip
        return None

    def _remote_clip(self, case_id: str, path: Path, begin: float, event_ts: float, until: float,
                     need_reach: bool) -> float | None:
        """A clip begun by the remote main stream (its first frame time), or None; a failing recorder is logged
        and treated as not covering the case (the clip then comes from the detect stream)."""
        assert self.remote is not None
        try:
            return self.remote.start_clip(case_id, path, begin, event_ts, until, need_reach)
        except Exception as exc:
            log.warning("case %s: the recorder did not begin its clip: %s", case_id, exc)
            return None

    def remote_written(self, case_id: str, path: Path | None) -> None:
        """A clip of the :attr:`remote` main stream was written (``path``) or failed (None): recorded like one
        written here, by the background writer when there is one (called from the recorder's listener)."""
        done = _remote_done(case_id, path)
        if done is None:
            return
        if self.writer is None:
            self._deliver(done)
            return
        with self._remote_lock:
            self._remote_jobs = [job for job in self._remote_jobs if not job.done()]
            self._remote_jobs.append(self.writer(functools.partial(self._deliver, done)))

    def _deliver(self, done: tuple[str, str, Path]) -> None:
        """A finished file written in the background: kept, and handed to ``on_written`` (the store)."""
        self.written.append(done)
        if self.on_written is not None:
            self.on_written([done])

    def start_case(self, case_id: str, event: ViolationEvent, image: Image,
                   polygon_px: npt.NDArray[np.float32] | None) -> Path:
        """Write the snapshot of a newly confirmed case now and begin its clip; returns the snapshot path."""
        snap = self.out_dir / f"{case_id}.jpg"
        snap.parent.mkdir(parents=True, exist_ok=True)
        img, s = self._snapshot_image(event.best_ts, image, event.ts)
        box = tuple(v * s for v in event.box)
        poly = polygon_px * s if polygon_px is not None else None
        label = f"{event.violation} {event.confidence:.2f}"
        if not cv2.imwrite(str(snap), draw_case(img, box, label, poly), [cv2.IMWRITE_JPEG_QUALITY, 90]):  # type: ignore[arg-type]
            raise OSError(f"cannot write snapshot {snap}")
        begin = event.start_s - self.pre_s
        copy = self._copy_clip(case_id, begin, event)
        if isinstance(copy, float):  # begun by the recorder process, from the main stream
            clip: dict[str, object] = {"clip_t0": round(copy, 3), "clip_stream": "record"}
        elif copy is not None:
            self._copying.append(copy)
            clip = {"clip_t0": round(copy.t0, 3), "clip_stream": next(k for k, r in self.rings.items()
                                                                      if r is copy.ring)}
        else:
            history = [(t, b) for t, b in self._slow if begin <= t < event.ts - self.pre_s]
            recent = [(t, b) for t, b in self._fast if t >= max(begin, event.ts - self.pre_s)]
            frames = history + recent
            self._pending.append(_PendingClip(case_id, self.out_dir / f"{case_id}.mp4", event.ts + self.post_s,
                                              frames))
            clip = {"clip_t0": round(min((t for t, _ in frames), default=event.ts), 3), "clip_stream": "frames"}
        self._write_frame(case_id, event, np.asarray(img, np.uint8), box, clip)
        self.written.append((case_id, "snapshot", snap))
        return snap

    def _write_frame(self, case_id: str, event: ViolationEvent, img: Image, box: tuple[float, ...],
                     clip: dict[str, object]) -> None:
        """The same frame without drawings, plus its box: what an operator's review turns into training data,
        and where the clip begins on the source's clock (a full-resolution snapshot is found by it)."""
        frame = self.out_dir / f"{case_id}_frame.jpg"
        try:
            if not cv2.imwrite(str(frame), img, [cv2.IMWRITE_JPEG_QUALITY, 92]):
                raise OSError(f"cannot write {frame}")
            h, w = img.shape[:2]
            frame.with_suffix(".json").write_text(json.dumps(
                {"case_id": case_id, "violation": event.violation, "box": [round(v, 1) for v in box],
                 "width": w, "height": h, "ts": round(event.best_ts, 3), **clip}))
        except OSError as exc:  # the snapshot is the evidence; the clean frame only feeds reviews
            log.error("clean frame of case %s not written: %s", case_id, exc)
            return
        self.written.append((case_id, "frame", frame))
        self.frames.append((case_id, "frame", frame))

    def take_frames(self) -> list[tuple[str, str, Path]]:
        """Clean frames written since the last call ``(case_id, "frame", path)``."""
        out, self.frames = self.frames, []
        return out

    def _frame_at(self, ts: float) -> bytes | None:
        cands = [(abs(t - ts), b) for t, b in list(self._fast) + list(self._slow)]
        if not cands:
            return None
        d, b = min(cands, key=lambda x: x[0])
        return b if d <= 1.0 else None

    def finish(self) -> list[tuple[str, str, Path]]:
        """Write the clips still waiting for frames (end of the source); with a background writer, wait until it
        has written this source's clips."""
        done = self._flush(float("inf"), force=True) + self._flush_copies(float("inf"), None, force=True)
        if self.remote is not None:
            try:
                flushed = self.remote.flush()
            except Exception as exc:
                log.error("the recorder did not write this camera's last clips: %s", exc)
                flushed = []
            for case_id, path in flushed:
                if (got := _remote_done(case_id, path)) is not None:
                    self.written.append(got)
                    done.append(got)
        writing, self._writing = self._writing, []
        with self._remote_lock:
            writing += self._remote_jobs
            self._remote_jobs = []
        for job in writing:
            job.result()
        return done


def _remote_done(case_id: str, path: Path | None) -> tuple[str, str, Path] | None:
    """A clip the recorder process wrote, as a finished file; None, logged, when it could not write it."""
    if path is None:
        log.error("clip of case %s could not be written by the recorder", case_id)
        return None
    return case_id, "clip", path


@dataclass(frozen=True)
class Fullres:
    """A full-resolution snapshot taken: its size, the frame's time on the source's clock, and how far that is
    from the best detection's frame."""

    width: int
    height: int
    ts: float
    off_by_s: float


def fullres_snapshot(clip: Path, frame_json: Path, out: Path, label: str) -> Fullres:
    """Re-take a case's snapshot at the camera's full resolution from its stream-copied clip: decode the group
    of pictures around the best detection's time, draw the case's box (scaled from the detect frame) and write
    ``out``. Returns what was written (size, the frame's time and its distance from the detection).

    Raises:
        ValueError: The case has no stream-copied clip (its clip was re-encoded from detect frames).
        OSError: The clip or the frame's metadata cannot be read, or the snapshot cannot be written.
    """
    try:
        meta = json.loads(frame_json.read_text())
    except (OSError, ValueError) as exc:
        raise OSError(f"cannot read {frame_json.name}: {exc}") from exc
    if meta.get("clip_stream") not in STREAMS:
        raise ValueError("the case's clip was re-encoded from detected frames: no full-resolution frames to take")
    image, at = frame_at(clip, float(meta["ts"]) - float(meta["clip_t0"]))
    h, w = image.shape[:2]
    sx, sy = w / float(meta["width"]), h / float(meta["height"])
    x1, y1, x2, y2 = (float(v) for v in meta["box"])
    drawn = draw_case(image, (x1 * sx, y1 * sy, x2 * sx, y2 * sy), label, None)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per call: two requests for the same case never write one temporary file.
    tmp = out.with_name(f"{out.name}.{uuid.uuid4().hex[:8]}.part.jpg")
    if not cv2.imwrite(str(tmp), drawn, [cv2.IMWRITE_JPEG_QUALITY, 90]):
        tmp.unlink(missing_ok=True)
        raise OSError(f"cannot write {out.name}")
    tmp.replace(out)
    ts = float(meta["clip_t0"]) + at
    return Fullres(w, h, round(ts, 3), round(abs(ts - float(meta["ts"])), 3))
