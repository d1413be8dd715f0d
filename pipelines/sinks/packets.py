"""Stream-copy evidence: a time-bounded ring of a camera's compressed packets, cut into MP4 clips without
re-encoding, and a full-resolution frame decoded from such a clip on demand.

A :class:`PacketRing` keeps the last ``full_s`` seconds whole, as groups of pictures that each begin with a key
frame (a clip can only begin at one), and, further back, one key frame every ``history_every_s`` seconds for
``history_s`` seconds: a long dwell's clip is then a time-lapse of the camera's own key frames followed by the
last seconds in full, all as the camera encoded them. Nothing is ever decoded to keep or cut a clip: the main
stream of a camera costs memory (its bit rate times the window) but no CPU.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt

from pipelines.sources import RecordedPacket, StreamParams

log = logging.getLogger(__name__)

#: A clip ends at the first packet, in decoding order, this far past its end: frames shown before the end but
#: decoded after a later one (B-frames) are kept.
REORDER_S = 0.5


class PacketRing:
    """The recent packets of one video stream.

    Args:
        full_s: Seconds kept whole (every packet), counted back from the newest packet.
        history_s: Seconds of key-frame history before that.
        history_every_s: At most one key frame kept per this many seconds of history.
        max_bytes: Hard memory bound: the oldest history goes first, then whole groups of pictures.
    """

    def __init__(self, full_s: float = 12.0, history_s: float = 330.0, history_every_s: float = 2.0,
                 max_bytes: int = 48 << 20) -> None:
        self.full_s, self.history_s, self.history_every_s = full_s, history_s, history_every_s
        self.max_bytes = max_bytes
        self.params: StreamParams | None = None
        self._gops: deque[list[RecordedPacket]] = deque()
        self._history: deque[RecordedPacket] = deque()
        self.nbytes = 0
        self.last_ts = float("-inf")
        self.generation = 0  # counts new connections (each empties the ring: its times start over)
        self.held_from: float | None = None  # the rules' time: packets read ahead of it are not what is trimmed

    def add(self, params: StreamParams, packet: RecordedPacket) -> bool:
        """Keep a packet; returns whether it was kept (packets before the stream's first key frame are not)."""
        new_stream = params is not self.params and self.params is not None  # its times start over, its size may differ
        if new_stream or packet.ts < self.last_ts - 1.0:  # or the clock went back
            self.clear()
            self.generation += 1
        self.params = params
        self.last_ts = max(self.last_ts, packet.ts)
        if packet.key:
            self._gops.append([packet])
        elif self._gops:
            self._gops[-1].append(packet)
        else:
            return False
        self.nbytes += len(packet.data)
        self._trim()
        return True

    def clear(self) -> None:
        """Forget every packet."""
        self._gops.clear()
        self._history.clear()
        self.nbytes = 0
        self.last_ts = float("-inf")
        self.held_from = None

    def hold(self, ts: float) -> None:
        """The rules have reached ``ts``: a clip may still need every packet from ``full_s`` before it, however
        far ahead the stream was read (a batch decodes ahead of its detector)."""
        self.held_from = ts

    def _trim(self) -> None:
        now = self.last_ts if self.held_from is None else min(self.last_ts, self.held_from)
        horizon = now - self.full_s
        while len(self._gops) > 1 and self._gops[1][0].ts <= horizon:
            gop = self._gops.popleft()
            self.nbytes -= sum(len(p.data) for p in gop)
            key = gop[0]
            if not self._history or key.ts - self._history[-1].ts >= 0.9 * self.history_every_s:  # key frames jitter
                self._history.append(key)
                self.nbytes += len(key.data)
        oldest = self.last_ts - self.full_s - self.history_s
        while self._history and (self._history[0].ts < oldest or self.nbytes > self.max_bytes):
            self.nbytes -= len(self._history.popleft().data)
        # Over the bound, packets held for the rules (read ahead of them) go too, but never the last full_s.
        window = self.last_ts - self.full_s
        while len(self._gops) > 1 and self.nbytes > self.max_bytes and self._gops[1][0].ts <= window:
            self.nbytes -= sum(len(p.data) for p in self._gops.popleft())

    def covers(self, ts: float, fresh_s: float = 2.0) -> bool:
        """Whether the ring has packets and its newest is at most ``fresh_s`` older than ``ts``."""
        return bool(self._gops) and self.last_ts >= ts - fresh_s

    def clippable(self, ts: float) -> bool:
        """Whether a clip of a case at ``ts`` can be cut from this ring now (H.264/H.265 packets covering it)."""
        return self.params is not None and self.params.copyable and self.covers(ts)

    def reaches(self, begin: float) -> bool:
        """Whether the ring reaches back to a clip's start (a stream that reconnected a moment ago does not)."""
        first = self.first_key_ts()
        return first is not None and first <= begin + self.history_every_s

    def cut(self, case_id: str, path: Path, begin: float, until: float) -> PacketClip | None:
        """A clip of the packets from ``begin`` to ``until`` (and the rest as they come), or None when the ring has
        none. The ring may already hold packets past the clip's end (a batch reads ahead of its detector)."""
        packets = list(itertools.takewhile(lambda p: p.ts <= until + REORDER_S, self.select(begin)))
        if not packets or self.params is None:
            return None
        return PacketClip(case_id, path, until, self.params, self, self.generation, packets,
                          closed=self.last_ts > until + REORDER_S)

    def select(self, begin: float) -> list[RecordedPacket]:
        """Packets for a clip from ``begin`` on: the history's key frames from ``begin``, then every packet from
        the last group of pictures that starts at or before ``begin`` (or the oldest one kept)."""
        gops = list(self._gops)
        first = max([0] + [i for i, g in enumerate(gops) if g[0].ts <= begin])
        start = gops[first][0].ts if gops else float("inf")
        history = [p for p in self._history if begin - self.history_every_s < p.ts < start]
        return history + [p for g in gops[first:] for p in g]

    def frame_at(self, ts: float) -> tuple[npt.NDArray[np.uint8], float] | None:
        """The frame nearest ``ts``, decoded now: from the group of pictures holding it (decoded from its key
        frame), or the nearest key frame of the history. ``(BGR image, its time)``, or None when the ring has
        nothing near (more than half a history interval away) or the packets do not decode."""
        import av

        if self.params is None:
            return None
        gops = [g for g in self._gops if g[0].ts <= ts + 1e-6]
        near = min([*self._history, *(g[0] for g in self._gops)], key=lambda p: abs(p.ts - ts), default=None)
        packets = gops[-1] if gops else [near] if near is not None else []
        tolerance = max(self.history_every_s / 2, 1.0)
        try:
            ctx = cast("av.video.codeccontext.VideoCodecContext", av.CodecContext.create(self.params.codec, "r"))
            if self.params.extradata:
                ctx.extradata = self.params.extradata
            times = {p.pts: p.ts for p in packets}
            best: tuple[float, av.VideoFrame] | None = None
            for i, p in enumerate(packets):
                packet = av.Packet(self.params.extradata + p.data if i == 0 and self.params.extradata[:1] == b"\x00"
                                   else p.data)
                packet.pts, packet.dts = p.pts, p.dts
                for frame in [*ctx.decode(packet), *(ctx.decode(None) if i == len(packets) - 1 else [])]:
                    t = times.get(frame.pts if frame.pts is not None else -1, p.ts)
                    if best is None or abs(t - ts) < abs(best[0] - ts):
                        best = (t, frame)
                if p.ts >= ts and best is not None and best[0] >= ts - 1e-6:
                    break  # packets come in decoding order: once the frame is out, the rest is later
        except av.error.FFmpegError as exc:
            log.warning("snapshot at %.2f s not decoded from the stream's packets: %s", ts, exc)
            return None
        if best is None or abs(best[0] - ts) > tolerance:
            return None
        return np.asarray(best[1].to_ndarray(format="bgr24"), np.uint8), best[0]

    def first_key_ts(self) -> float | None:
        """Time of the oldest packet a clip could begin with, if any."""
        if self._history:
            return self._history[0].ts
        return self._gops[0][0].ts if self._gops else None


@dataclass
class PacketClip:
    """A clip being gathered: its packets so far and when it is complete."""

    case_id: str
    path: Path
    until: float
    params: StreamParams
    ring: PacketRing
    generation: int
    packets: list[RecordedPacket]
    closed: bool = False  # a packet past its end has come: nothing more is added

    @property
    def t0(self) -> float:
        """Source-clock time of the clip's first frame."""
        return self.packets[0].ts if self.packets else 0.0

    @property
    def complete(self) -> bool:
        """Whether nothing more comes: a packet past its end came, or its ring started over (a reconnect)."""
        return self.closed or self.generation != self.ring.generation

    def offer(self, packet: RecordedPacket) -> None:
        """A packet its ring has just kept: gathered until the first one past the clip's end closes it."""
        if not self.complete:
            if packet.ts > self.until + REORDER_S:
                self.closed = True
            else:
                self.packets.append(packet)


def write_clip_packets(clip: PacketClip) -> Path | None:
    """Write a gathered clip (:func:`write_packets`); None, logged, when it cannot be: a failed clip must not lose
    its case, which keeps its snapshot."""
    try:
        write_packets(clip.params, clip.packets, clip.path)
    except (OSError, ValueError) as exc:
        log.error("clip %s could not be written: %s", clip.path, exc)
        return None
    return clip.path


def write_packets(params: StreamParams, packets: Iterable[RecordedPacket], path: Path) -> int:
    """Mux packets into an MP4 at ``path`` by stream copy (no decoding, no encoding); returns the packets
    written. The clip's time starts at its first packet; decoding times are kept increasing.

    The file is written under a temporary name and renamed when complete: a failure (a full disk) leaves
    nothing half-written.

    Raises:
        ValueError: No packets, or the first is not a key frame.
        OSError: The file cannot be written.
    """
    import av

    pk = list(packets)
    if not pk or not pk[0].key:
        raise ValueError("a clip needs packets beginning with a key frame")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.mp4")
    base = pk[0].pts  # the first frame shows at 0 (decoding times before it are negative with B-frames)
    written = 0
    try:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            # Start codes in, no header given: the MP4 muxer takes the parameter sets from the first key frame.
            stream = out.add_mux_stream(params.codec, width=params.width, height=params.height)
            stream.time_base = params.time_base
            dtss: list[int] = []
            for p in pk:
                dtss.append(max(p.dts - base, dtss[-1] + 1) if dtss else p.dts - base)
            # Each packet lasts until the next one's decoding time (the last as long as the one before it):
            # without durations the muxer's edit list would cut the last frame.
            durations = [b - a for a, b in itertools.pairwise(dtss)]
            durations.append(durations[-1] if durations else 1)
            for i, (p, dts, duration) in enumerate(zip(pk, dtss, durations, strict=True)):
                # A stream whose parameter sets came only in its header (an RTSP SDP) has them put before the
                # first key frame.
                data = params.extradata + p.data if i == 0 and params.extradata[:3] in (b"\x00\x00\x01",
                                                                                       b"\x00\x00\x00") else p.data
                packet = av.Packet(data)
                packet.dts, packet.pts, packet.duration = dts, max(dts, p.pts - base), duration
                packet.time_base = params.time_base
                packet.is_keyframe = p.key
                packet.stream = stream
                out.mux(packet)
                written += 1
        tmp.replace(path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise
        raise OSError(f"cannot write clip {path.name}: {exc}") from exc
    return written


def frame_at(clip: Path, offset_s: float) -> tuple[npt.NDArray[np.uint8], float]:
    """The frame of a clip nearest ``offset_s`` seconds from its start, decoded from the key frame before it:
    ``(BGR image, its offset)``.

    Raises:
        OSError: The clip cannot be read or has no frame.
    """
    import av

    best: tuple[float, npt.NDArray[np.uint8]] | None = None
    try:
        with av.open(str(clip)) as src:
            stream = src.streams.video[0]
            stream.thread_type = "AUTO"
            tb = float(stream.time_base or 0) or 1 / 90000
            start = stream.start_time or 0
            if offset_s > 0:
                src.seek(int(offset_s / tb) + start, stream=stream, backward=True, any_frame=False)
            for frame in src.decode(stream):
                t = float(((frame.pts or 0) - start) * tb)
                if best is None or abs(t - offset_s) < abs(best[0] - offset_s):
                    best = (t, np.asarray(frame.to_ndarray(format="bgr24"), np.uint8))
                if t >= offset_s:
                    break
    except av.error.FFmpegError as exc:
        raise OSError(f"cannot read {clip.name}: {exc.strerror or type(exc).__name__}") from exc
    if best is None:
        raise OSError(f"{clip.name} has no frame")
    return best[1], best[0]
