"""Where a camera's frames come from: the :class:`Source` protocol and its kinds, chosen by a config.

A camera's ``source`` in the YAML stays a string (a file path, ``rtsp://``, ``http(s)://``); it is read into a
:data:`SourceConfig` whose ``type`` names the kind, and :func:`open_source` builds the :class:`Source`.
``analyze`` and ``serve`` both open sources this way. A new kind (a GB/T 28181 platform, a vendor SDK) is one
new config model plus one class with ``frames``, added to :data:`SourceConfig` and :data:`KINDS`.

Kinds:
    file: a video or image file; in ``serve`` a file is replayed in a loop at real-time pace, like a camera
        (demos and tests); in ``analyze`` it is read once, as fast as it decodes.
    rtsp: an RTSP stream over TCP (a camera or an NVR/platform's re-stream).
    http: an HTTP MJPEG or HLS stream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from pipelines.sources import (
    DecodeMode,
    Frame,
    OnDecode,
    OnPacket,
    RecordedPacket,
    StreamParams,
    demux_packets,
    open_stream,
    read_frames,
)


class _Kind(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    decode_threads: int = Field(default=0, ge=0, le=64, description="Decoder threads for this source (0: FFmpeg "
                                "decides: about one per core, with frame threads). A camera in ``serve`` gets "
                                "the ingest setting (default 1), which costs the least CPU per frame when many "
                                "cameras share the machine.")


class FileSourceConfig(_Kind):
    """A video or image file."""

    type: Literal["file"] = "file"
    path: Path
    loop: bool = Field(default=False, description="Replay in a loop at real-time pace (a file standing in "
                       "for a camera).")


class RtspSourceConfig(_Kind):
    """An RTSP stream, read over TCP."""

    type: Literal["rtsp"] = "rtsp"
    url: str = Field(pattern=r"^rtsps?://")
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0


class HttpSourceConfig(_Kind):
    """An HTTP MJPEG or HLS stream."""

    type: Literal["http"] = "http"
    url: str = Field(pattern=r"^https?://")
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0


SourceConfig = Annotated[FileSourceConfig | RtspSourceConfig | HttpSourceConfig, Field(discriminator="type")]
"""Any source kind's config, told apart by ``type``."""

_ADAPTER: TypeAdapter[FileSourceConfig | RtspSourceConfig | HttpSourceConfig] = TypeAdapter(SourceConfig)


class Source(Protocol):
    """A camera's frames. ``frames`` may be called again after it failed or ended (a reconnect)."""

    name: str
    live: bool  # a stream that never ends by itself (a reconnect follows its end)
    paced_s: float  # seconds spent waiting for real-time pace rather than decoding (the reader resets it)

    def frames(self, mode: DecodeMode, stop: threading.Event, auto_interval_s: float = 0.0,
               on_decode: OnDecode | None = None, on_packet: OnPacket | None = None) -> Iterator[Frame]:
        """Decoded frames with timestamps in seconds on the source's clock, until ``stop`` is set
        (``mode``, ``auto_interval_s``, ``on_decode`` and ``on_packet`` as in
        :func:`pipelines.sources.read_frames`; packets on the same clock as the frames).

        Raises:
            SourceError: The source cannot be opened or read.
        """
        ...

    def packets(self, stop: threading.Event, on_packet: OnPacket) -> None:
        """Demux without decoding until ``stop`` is set or the source ends, giving every video packet to
        ``on_packet`` on the source's clock (a camera's record stream).

        Raises:
            SourceError: The source cannot be opened or read.
        """
        ...


class FileSource:
    """A file read once, or replayed in a loop at real-time pace with a clock that keeps running."""

    def __init__(self, cfg: FileSourceConfig, epoch: float | None = None) -> None:
        self.name, self.path, self.loop, self.live = str(cfg.path), cfg.path, cfg.loop, cfg.loop
        self.threads = cfg.decode_threads
        self.paced_s = 0.0  # time spent waiting for real-time pace (not decoding)
        self._offset = 0.0
        self._params: StreamParams | None = None  # one object for every replay: a loop is one stream
        self._last_packet = 0.0  # the latest packet time of the replay under way

    def frames(self, mode: DecodeMode, stop: threading.Event, auto_interval_s: float = 0.0,
               on_decode: OnDecode | None = None, on_packet: OnPacket | None = None) -> Iterator[Frame]:
        if not self.loop:
            yield from read_frames(self.path, mode, self.threads, auto_interval_s, on_decode, on_packet)
            return
        while not stop.is_set():
            start, last = time.monotonic(), 0.0
            self._last_packet = 0.0
            tap = self._shifted(on_packet, self._offset) if on_packet is not None else None
            for fr in read_frames(self.path, mode, self.threads, auto_interval_s, on_decode, tap):
                delay = start + fr.ts - time.monotonic()
                if delay > 0:
                    self.paced_s += delay
                    if stop.wait(delay):
                        return
                last = fr.ts
                yield fr.at(self._offset + fr.ts)
            # The next replay starts after the last packet, not the last frame decoded (key frames only: its
            # last key frame), so packet times keep rising across replays.
            self._offset += max(last, self._last_packet) + 0.04

    def packets(self, stop: threading.Event, on_packet: OnPacket) -> None:
        while not stop.is_set():
            start, last = time.monotonic(), 0.0
            tap = self._shifted(on_packet, self._offset)
            for params, packet in demux_packets(str(self.path), live=False):
                delay = start + packet.ts - time.monotonic()
                if self.loop and delay > 0 and stop.wait(delay):
                    return
                last = max(last, packet.ts)
                tap(params, packet)
            if not self.loop:
                return
            self._offset += last + 0.04

    def _shifted(self, on_packet: OnPacket, offset: float) -> OnPacket:
        """``on_packet`` for one replay: its times moved on by the replays before it, in seconds and in the
        stream's own time base (a clip may span the end of one replay and the start of the next)."""

        def tap(params: StreamParams, packet: RecordedPacket) -> None:
            self._last_packet = max(self._last_packet, packet.ts)
            if self._params is None or self._params != params:
                self._params = params
            shift = round(offset / self._params.time_base)
            on_packet(self._params, packet._replace(ts=packet.ts + offset, pts=packet.pts + shift,
                                                    dts=packet.dts + shift))
        return tap


class StreamSource:
    """A network stream (RTSP, HTTP MJPEG/HLS); its clock is seconds since the source was made, so it
    stays continuous across reconnects."""

    live = True
    paced_s = 0.0  # a stream arrives at its own pace: no waiting here

    def __init__(self, cfg: RtspSourceConfig | HttpSourceConfig, epoch: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.cfg, self.clock = cfg.url, cfg, clock
        self._t0 = clock() if epoch is None else epoch

    @property
    def epoch(self) -> float:
        """Where this source's clock is zero, on ``clock`` (a camera's second stream shares it)."""
        return self._t0

    def frames(self, mode: DecodeMode, stop: threading.Event, auto_interval_s: float = 0.0,
               on_decode: OnDecode | None = None, on_packet: OnPacket | None = None) -> Iterator[Frame]:
        # Frames come stamped with their packets' arrival on this clock, as the packets do.
        for fr in open_stream(self.cfg.url, mode, self.cfg.open_timeout_s, self.cfg.read_timeout_s, auto_interval_s,
                              on_decode, on_packet, self.now, self.cfg.decode_threads):
            yield fr
            if stop.is_set():
                return

    def packets(self, stop: threading.Event, on_packet: OnPacket) -> None:
        for params, packet in demux_packets(self.cfg.url, True, self.cfg.open_timeout_s, self.cfg.read_timeout_s,
                                            self.now):
            on_packet(params, packet)
            if stop.is_set():
                return

    def now(self) -> float:
        """Seconds on this source's clock: frames and packets are stamped with their arrival on it."""
        return self.clock() - self._t0


KINDS: dict[str, Callable[..., Source]] = {"file": FileSource, "rtsp": StreamSource, "http": StreamSource}
"""Each source kind's ``type`` and the class that opens it."""


def source_config(source: str | dict[str, object], *, live: bool = False, open_timeout_s: float = 10.0,
                  read_timeout_s: float = 10.0,
                  decode_threads: int = 0) -> FileSourceConfig | RtspSourceConfig | HttpSourceConfig:
    """The config of a camera's ``source``: a mapping with ``type``, or a string told apart by its scheme.

    Args:
        source: ``{"type": ..., ...}``, a URL (``rtsp://``, ``http(s)://``) or a file path.
        live: A file stands in for a camera (replayed in a loop at real-time pace).
        open_timeout_s: Network sources: how long connecting may take.
        read_timeout_s: Network sources: how long a read may stall before a reconnect.
        decode_threads: Decoder threads, where a mapping does not give its own (0: FFmpeg decides).

    Raises:
        ValueError: An unknown scheme or kind, or a config that does not validate.
    """
    if isinstance(source, dict):
        return _ADAPTER.validate_python({"decode_threads": decode_threads, **source})
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme in ("rtsp", "rtsps"):
        return RtspSourceConfig(url=source, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s,
                                decode_threads=decode_threads)
    if scheme in ("http", "https"):
        return HttpSourceConfig(url=source, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s,
                                decode_threads=decode_threads)
    if scheme in ("", "file"):
        return FileSourceConfig(path=Path(source.removeprefix("file://")), loop=live, decode_threads=decode_threads)
    raise ValueError(f"{source}: unknown source scheme '{scheme}://' (kinds: {', '.join(sorted(KINDS))})")


def open_source(cfg: FileSourceConfig | RtspSourceConfig | HttpSourceConfig, epoch: float | None = None) -> Source:
    """The :class:`Source` of a config; ``epoch``: a network source's clock zero on ``time.monotonic`` (a
    camera's two streams share one clock)."""
    return KINDS[cfg.type](cfg, epoch)
