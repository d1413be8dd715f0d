"""Evidence: a JPEG snapshot and a short H.264 clip for every case.

The recorder keeps two bounded ring buffers of JPEG-encoded, downscaled frames
per source: a short one at a higher rate (the last seconds) and a long one at a
low rate covering the longest dwell time. When a violation is confirmed, its
clip runs from a few seconds before the violation was first seen to a few
seconds after the confirmation; a long dwell is shown as a time-lapse so clips
stay short. The snapshot is the frame with the best detection, with the box
and the zone drawn on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from detector.events import ViolationEvent

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    """

    def __init__(self, out_dir: Path, long_s: float = 330.0, pre_s: float = 3.0, post_s: float = 3.0,
                 max_width: int = 960, fast_fps: float = 8.0, slow_fps: float = 1.0,
                 max_clip_frames: int = 160) -> None:
        self.out_dir = out_dir
        self.pre_s, self.post_s = pre_s, post_s
        self.max_width = max_width
        self.fast_fps, self.slow_fps = fast_fps, slow_fps
        self.max_clip_frames = max_clip_frames
        self._fast: deque[tuple[float, bytes]] = deque(maxlen=int((pre_s + post_s + 4) * fast_fps) + 2)
        self._slow: deque[tuple[float, bytes]] = deque(maxlen=int(long_s * slow_fps) + 2)
        self._last_fast = -1e9
        self._last_slow = -1e9
        self._scale = 1.0
        self._pending: list[_PendingClip] = []
        self.written: list[tuple[str, str, Path]] = []  # (case_id, kind, path) finished files
        self.frames: list[tuple[str, str, Path]] = []  # clean frames not yet recorded in the store

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

        ``image`` may be a callable returning it: it is called only when the frame is kept.
        """
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
        done = [p for p in self._pending if force or ts >= p.until]
        self._pending = [p for p in self._pending if p not in done]
        finished = []
        for p in done:
            frames = sorted({t: b for t, b in p.frames}.items())
            if len(frames) > self.max_clip_frames:
                idx = np.linspace(0, len(frames) - 1, self.max_clip_frames).round().astype(int)
                frames = [frames[i] for i in sorted(set(idx.tolist()))]
            decoded = [(t, cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)) for t, b in frames if b]
            try:
                write_clip([(t, np.asarray(im, np.uint8)) for t, im in decoded if im is not None], p.path,
                           self.fast_fps)
                finished.append((p.case_id, "clip", p.path))
            except Exception as exc:  # a failed clip must not lose the case: it keeps its snapshot
                log.error("clip %s could not be written: %s", p.path, exc)
        self.written.extend(finished)
        return finished

    def start_case(self, case_id: str, event: ViolationEvent, image: Image,
                   polygon_px: npt.NDArray[np.float32] | None) -> Path:
        """Write the snapshot of a newly confirmed case now and begin its clip; returns the snapshot path."""
        snap = self.out_dir / f"{case_id}.jpg"
        snap.parent.mkdir(parents=True, exist_ok=True)
        best = self._frame_at(event.best_ts)
        if best is not None:
            img = cv2.imdecode(np.frombuffer(best, np.uint8), cv2.IMREAD_COLOR)
            s = self._scale
        else:
            img, s = image, 1.0
        box = tuple(v * s for v in event.box)
        poly = polygon_px * s if polygon_px is not None else None
        label = f"{event.violation} {event.confidence:.2f}"
        if not cv2.imwrite(str(snap), draw_case(img, box, label, poly), [cv2.IMWRITE_JPEG_QUALITY, 90]):  # type: ignore[arg-type]
            raise OSError(f"cannot write snapshot {snap}")
        self._write_frame(case_id, event, np.asarray(img, np.uint8), box)
        begin = event.start_s - self.pre_s
        history = [(t, b) for t, b in self._slow if begin <= t < event.ts - self.pre_s]
        recent = [(t, b) for t, b in self._fast if t >= max(begin, event.ts - self.pre_s)]
        self._pending.append(_PendingClip(case_id, self.out_dir / f"{case_id}.mp4", event.ts + self.post_s,
                                          history + recent))
        self.written.append((case_id, "snapshot", snap))
        return snap

    def _write_frame(self, case_id: str, event: ViolationEvent, img: Image, box: tuple[float, ...]) -> None:
        """The same frame without drawings, plus its box: what an operator's review turns into training data."""
        frame = self.out_dir / f"{case_id}_frame.jpg"
        try:
            if not cv2.imwrite(str(frame), img, [cv2.IMWRITE_JPEG_QUALITY, 92]):
                raise OSError(f"cannot write {frame}")
            h, w = img.shape[:2]
            frame.with_suffix(".json").write_text(json.dumps(
                {"case_id": case_id, "violation": event.violation, "box": [round(v, 1) for v in box],
                 "width": w, "height": h, "ts": round(event.best_ts, 3)}))
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
        """Write the clips still waiting for frames (end of the source)."""
        return self._flush(float("inf"), force=True)
