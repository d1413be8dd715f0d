"""Frame sources: video files and still images, with real timestamps.

Video is decoded with PyAV; every frame carries its presentation timestamp in
seconds from the start of the stream (never a frame-index guess). The
``keyframes`` mode asks the decoder to skip non-key frames entirely, which is
what makes hours of recordings cheap to scan. Corrupt packets in the middle of
a file are skipped; a file that yields no frame at all is an error.
"""

from __future__ import annotations

import glob
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypedDict

import cv2
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import av.container

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".ts", ".mov", ".m4v", ".flv"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
DecodeMode = Literal["all", "keyframes", "auto"]
#: Called once per opened stream in ``auto`` mode with the decoding chosen (``all`` or ``keyframes``) and why.
OnDecode = Callable[[str, str], None]


@dataclass(frozen=True)
class StreamParams:
    """What a demuxed video stream's packets need to be muxed again without decoding (stream copy).

    Attributes:
        codec: FFmpeg codec name (``h264``, ``hevc``, ``mjpeg``...).
        width: Coded width in pixels.
        height: Coded height in pixels.
        extradata: The codec's global header (SPS/PPS for H.264), or empty where it travels in-band.
        time_base: Unit of the packets' ``pts`` and ``dts``.
    """

    codec: str
    width: int
    height: int
    extradata: bytes
    time_base: Fraction

    @property
    def copyable(self) -> bool:
        """Whether its packets can be cut into an MP4 that browsers play (H.264, H.265)."""
        return self.codec in ("h264", "hevc") and self.width > 0 and self.height > 0


class RecordedPacket(NamedTuple):
    """One compressed video packet, as demuxed (never decoded here).

    Attributes:
        ts: Seconds on the source's clock (a file's presentation time; a live camera's arrival time).
        pts: Presentation time in the stream's time base.
        dts: Decoding time in the stream's time base.
        key: Whether it starts a key frame (a clip may begin here).
        data: The compressed bytes.
    """

    ts: float
    pts: int
    dts: int
    key: bool
    data: bytes


#: Called with every demuxed video packet of a source, and the parameters of the stream it came from (one
#: object per opened stream: a new object after a reconnect).
OnPacket = Callable[[StreamParams, RecordedPacket], None]


def stream_params(stream: av.video.stream.VideoStream) -> StreamParams:
    """The stream-copy parameters of an open video stream."""
    cc = stream.codec_context
    return StreamParams(str(cc.name), int(cc.width or 0), int(cc.height or 0), bytes(cc.extradata or b""),
                        Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000))


#: Key frames seen before ``auto`` decides (two intervals).
AUTO_KEYFRAMES = 3


#: A frame this share of a period early still takes its sampling slot (but never more than a quarter of the gap
#: between frames, so a 25 fps stream is sampled as before): key frames that arrive every 2.00 s give or take a
#: few milliseconds must all be taken by a camera detecting every 2 s, not every other one.
JITTER = 0.05


def keyframes_suffice(keyframe_ts: list[float], detect_interval_s: float) -> tuple[bool, float] | None:
    """Whether key frames alone keep a detection interval: ``(suffice, median key-frame interval)``, or None
    before :data:`AUTO_KEYFRAMES` key frames were seen. On key frames a camera samples the first key frame of
    each period (:class:`pipelines.stages.Sampler`), so it detects every whole number of key-frame intervals:
    key frames every 1.5 s would give a detection every 3 s to a camera asking every 2 s. They suffice when that
    number of intervals is within 5 % of the asked interval (key frames every 2 s, 1 s, 0.5 s for 2 s)."""
    if len(keyframe_ts) < AUTO_KEYFRAMES:
        return None
    gaps = np.diff(np.asarray(keyframe_ts, np.float64))
    interval = float(np.median(gaps))
    if interval <= 0:
        return False, interval
    margin = min(JITTER * detect_interval_s, interval / 4)
    sampled_every = math.ceil((detect_interval_s - margin) / interval - 1e-9) * interval
    return sampled_every <= detect_interval_s * 1.05, interval


class SourceError(RuntimeError):
    """An input that cannot be read; the message says why in one line."""


class Frame:
    """A decoded frame.

    Attributes:
        image: BGR pixels ``(h, w, 3)``. A frame straight from the decoder is converted from its YUV
            planes on first use only: the frames nobody looks at (between samples and evidence frames,
            most of a 25 fps stream) cost no conversion.
        ts: Seconds from the start of the source (presentation time).
        index: Decoded-frame counter.
        keyframe: Whether it was a key frame.
    """

    __slots__ = ("_image", "_video", "index", "keyframe", "ts")

    def __init__(self, image: npt.NDArray[np.uint8] | None, ts: float, index: int = 0, keyframe: bool = True,
                 video: av.VideoFrame | None = None) -> None:
        if image is None and video is None:
            raise ValueError("a Frame needs an image or a decoded video frame")
        self._image = image
        self._video = video
        self.ts = ts
        self.index = index
        self.keyframe = keyframe

    @property
    def image(self) -> npt.NDArray[np.uint8]:
        """BGR pixels (converted now if the frame came from the decoder)."""
        video = self._video  # read once: another thread may convert the frame meanwhile
        if self._image is None and video is not None:
            self._image = np.asarray(video.to_ndarray(format="bgr24"), np.uint8)
            self._video = None  # the decoder's buffer goes back to its pool (set after the image)
        assert self._image is not None
        return self._image

    def resized(self, width: int, height: int) -> npt.NDArray[np.uint8]:
        """The frame's BGR pixels at another size (area interpolation). A frame straight from the decoder is
        converted and scaled in one pass from its YUV planes, and its full-size pixels are never made: a
        detector fed a 1280x720 frame at 320 px needs a sixteenth of them."""
        video = self._video
        if self._image is None and video is not None:
            if video.format.name == "yuv420p" and width % 2 == 0 and height % 4 == 0 and video.width % 2 == 0 \
                    and video.height % 4 == 0:  # planes stacked row by row without padding
                return _small_bgr(np.asarray(video.to_ndarray(format="yuv420p"), np.uint8), video.height, width,
                                  height)
            small = video.reformat(width=width, height=height, format="bgr24", interpolation="AREA")
            return np.asarray(small.to_ndarray(), np.uint8)
        return np.asarray(cv2.resize(self.image, (width, height), interpolation=cv2.INTER_AREA), np.uint8)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` without converting anything."""
        video = self._video
        if video is not None:
            return int(video.height), int(video.width)
        assert self._image is not None
        return int(self._image.shape[0]), int(self._image.shape[1])

    def at(self, ts: float) -> Frame:
        """The same pixels at another time (a live camera's clock); still unconverted if this one was."""
        return Frame(self._image, ts, self.index, self.keyframe, self._video)


def _small_bgr(i420: npt.NDArray[np.uint8], h: int, width: int, height: int) -> npt.NDArray[np.uint8]:
    """A YUV 4:2:0 frame (its planes stacked, ``h`` rows of luma) made ``width`` x ``height`` and BGR: each plane
    shrunk (area interpolation), then the colours converted at the small size (a third of the time of converting
    first, measured on 720p)."""
    w = i420.shape[1]
    y = i420[:h]
    u = i420[h:h + h // 4].reshape(h // 2, w // 2)
    v = i420[h + h // 4:h + h // 2].reshape(h // 2, w // 2)
    small = np.empty((height * 3 // 2, width), np.uint8)
    small[:height] = cv2.resize(y, (width, height), interpolation=cv2.INTER_AREA)
    chroma = (width // 2, height // 2)
    small[height:height + height // 4] = cv2.resize(u, chroma, interpolation=cv2.INTER_AREA).reshape(-1, width)
    small[height + height // 4:] = cv2.resize(v, chroma, interpolation=cv2.INTER_AREA).reshape(-1, width)
    return np.asarray(cv2.cvtColor(small, cv2.COLOR_YUV2BGR_I420), np.uint8)


class InputError(TypedDict):
    """An input (or the config, or the model) that could not be analysed, and why."""

    source: str
    error: str


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[InputError]]:
    """Expand files, folders and globs into media files; returns (files, errors)."""
    files: list[Path] = []
    errors: list[InputError] = []
    media = VIDEO_SUFFIXES | IMAGE_SUFFIXES
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in media)
            if not found:
                errors.append({"source": item, "error": "folder has no video or image files"})
            files.extend(found)
        elif p.exists():
            if p.suffix.lower() not in media:
                errors.append({"source": item, "error": f"unsupported file type '{p.suffix or '(none)'}'"
                               f" (videos: {', '.join(sorted(VIDEO_SUFFIXES))}; images: jpg, png, bmp, webp)"})
            else:
                files.append(p)
        elif any(c in item for c in "*?["):
            found = sorted(Path(f) for f in glob.glob(item, recursive=True) if Path(f).suffix.lower() in media)
            if not found:
                errors.append({"source": item, "error": "pattern matches no video or image files"})
            files.extend(found)
        else:
            errors.append({"source": item, "error": "no such file or folder"})
    first: dict[Path, Path] = {}
    for f in files:  # each file once, where it first appears
        first.setdefault(f.resolve(), f)
    return list(first.values()), errors


@dataclass(frozen=True)
class MediaInfo:
    """What a source is: size, duration and frame rate (0 when unknown)."""

    width: int
    height: int
    duration_s: float
    fps: float


def probe(path: Path) -> MediaInfo:
    """Read a source's size, duration and frame rate without decoding it all."""
    _check_file(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        img = _read_image(path)
        return MediaInfo(img.shape[1], img.shape[0], 0.0, 0.0)
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise SourceError(f"{path}: no video stream")
            st = container.streams.video[0]
            dur = float(st.duration * st.time_base) if st.duration and st.time_base else (
                container.duration / 1e6 if container.duration else 0.0)
            fps = float(st.average_rate) if st.average_rate else 0.0
            return MediaInfo(st.codec_context.width, st.codec_context.height, dur, fps)
    except av.error.FFmpegError as exc:
        raise SourceError(f"{path}: not a readable video ({exc.strerror or type(exc).__name__})") from exc


def _check_file(path: Path) -> None:
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: empty file (0 bytes)")


def _read_image(path: Path) -> npt.NDArray[np.uint8]:
    data = np.fromfile(str(path), np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise SourceError(f"{path}: not a readable image")
    return np.asarray(img, np.uint8)


def read_frames(path: Path, mode: DecodeMode = "all", threads: int = 0, auto_interval_s: float = 0.0,
                on_decode: OnDecode | None = None, on_packet: OnPacket | None = None) -> Iterator[Frame]:
    """Yield the frames of a video or image file with their timestamps.

    Args:
        path: Video or image file.
        mode: ``all`` decodes every frame; ``keyframes`` decodes key frames only; ``auto`` decodes every frame
            until it has seen the key-frame interval, then key frames only if they come at least every
            ``auto_interval_s`` seconds.
        threads: Decoder threads (0: FFmpeg decides).
        auto_interval_s: ``auto``: the longest key-frame interval that key-frame decoding may have.
        on_decode: ``auto``: told the decoding chosen and why.
        on_packet: Given every demuxed video packet (also those key-frame decoding skips), for stream-copy
            evidence; ``ts`` on the same clock as the frames.

    Raises:
        SourceError: The file is missing, empty, not a video, or yields no frame.
    """
    _check_file(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        yield Frame(_read_image(path), 0.0, 0, True)
        return
    import av

    try:
        container = av.open(str(path), options={"err_detect": "ignore_err"})
    except av.error.FFmpegError as exc:
        reason = exc.strerror or type(exc).__name__
        if not _opencv_can_open(path):
            raise SourceError(f"{path}: not a readable video ({reason})") from exc
        log.warning("%s: PyAV cannot open it (%s); decoding with OpenCV", path, reason)
        yield from _read_frames_opencv(path, "all" if mode == "auto" else mode)
        return
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: cannot open ({exc})") from exc
    yield from _decode(container, str(path), mode, threads, live=False, auto_interval_s=auto_interval_s,
                       on_decode=on_decode, on_packet=on_packet)


def open_stream(url: str, mode: DecodeMode = "all", open_timeout_s: float = 10.0, read_timeout_s: float = 10.0,
                auto_interval_s: float = 0.0, on_decode: OnDecode | None = None, on_packet: OnPacket | None = None,
                clock: Callable[[], float] | None = None, threads: int = 0) -> Iterator[Frame]:
    """Yield frames of a network stream (RTSP over TCP, HTTP MJPEG/HLS) with their timestamps.

    Any read error or a read stalled for ``read_timeout_s`` raises :class:`SourceError`, so the
    caller can reconnect. ``mode``, ``auto_interval_s``, ``on_decode`` and ``on_packet`` as in
    :func:`read_frames`; a packet's ``ts``, and a frame's, is its arrival on ``clock`` (default: its presentation
    time); ``threads``: decoder threads (0: FFmpeg decides).
    """
    container = _connect(url, open_timeout_s, read_timeout_s)
    yield from _decode(container, url, mode, threads, live=True, auto_interval_s=auto_interval_s, on_decode=on_decode,
                       on_packet=on_packet, clock=clock)


def _connect(url: str, open_timeout_s: float, read_timeout_s: float) -> av.container.InputContainer:
    """Open a network stream: connecting may take ``open_timeout_s``, and any later read that stalls for
    ``read_timeout_s`` fails.

    Reads are bounded by FFmpeg's own socket timeouts (RTSP ``timeout``, other protocols ``rw_timeout``), not by
    PyAV's read timeout, whose interrupt callback takes the GIL at every check FFmpeg makes while it reads, many
    times per packet: 32 record streams cost 0.59 of a core that way against 0.33, with 23,000 context switches a
    second against 1,300 (`make bench-ingest`, bench/README.md). PyAV's callback still bounds the opening."""
    import av

    io_timeout = str(max(1, round(read_timeout_s * 1e6)))  # microseconds
    options = ({"rtsp_transport": "tcp", "timeout": io_timeout} if url.startswith(("rtsp://", "rtsps://"))
               else {"rw_timeout": io_timeout})
    try:
        return av.open(url, options=options, timeout=(open_timeout_s, None))
    except av.error.FFmpegError as exc:
        raise SourceError(f"{url}: cannot connect ({exc.strerror or type(exc).__name__})") from exc
    except (OSError, ValueError) as exc:
        raise SourceError(f"{url}: cannot connect ({exc})") from exc


def demux_packets(location: str, live: bool, open_timeout_s: float = 10.0, read_timeout_s: float = 10.0,
                  clock: Callable[[], float] | None = None) -> Iterator[tuple[StreamParams, RecordedPacket]]:
    """Yield the video packets of a file or network stream without decoding any (a camera's record stream).

    ``ts`` is the packet's arrival on ``clock``, or without one its presentation time from the stream's start.

    Raises:
        SourceError: The source cannot be opened, has no video, or a live read fails or stalls.
    """
    import av

    if live:
        container = _connect(location, open_timeout_s, read_timeout_s)
    else:
        _check_file(Path(location))
        try:
            container = av.open(location)
        except av.error.FFmpegError as exc:
            raise SourceError(f"{location}: not a readable video ({exc.strerror or type(exc).__name__})") from exc
    with container:
        if not container.streams.video:
            raise SourceError(f"{location}: no video stream")
        stream = container.streams.video[0]
        tap = _PacketTap(stream, clock)
        try:
            for packet in container.demux(stream):
                got = tap(packet)
                if got is not None:
                    yield tap.params, got
        except av.error.FFmpegError as exc:
            raise SourceError(f"{location}: read failed ({exc.strerror or type(exc).__name__})") from exc
        if tap.count == 0:
            raise SourceError(f"{location}: no video packets")


class _PacketTap:
    """Turns a stream's demuxed packets into :class:`RecordedPacket` (``ts`` from the stream's start, or the time
    on ``clock`` when each arrives)."""

    def __init__(self, stream: av.video.stream.VideoStream, clock: Callable[[], float] | None = None) -> None:
        import av.bitstream

        self.clock = clock  # a live source's clock: a packet's time is its arrival on it
        self.tb = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        self.start: int | None = stream.start_time
        self.count = 0
        self._last_dts: int | None = None
        self.params = stream_params(stream)
        self._annexb: av.bitstream.BitStreamFilterContext | None = None
        if self.params.codec in ("h264", "hevc") and self.params.extradata[:1] == b"\x01":
            # MP4/MKV packets carry NAL lengths and keep the parameter sets in the header: as start codes with
            # the parameter sets in every key frame, any cut of them is a stream a muxer takes on its own.
            self._annexb = av.bitstream.BitStreamFilterContext(f"{self.params.codec}_mp4toannexb", stream)
            self.params = replace(self.params, extradata=b"")

    def __call__(self, packet: av.Packet[Any], now: float | None = None) -> RecordedPacket | None:
        """The packet as recorded (None: it cannot be placed in a clip); ``now``: its arrival, if already read
        off the clock."""
        pts, key = packet.pts, bool(packet.is_keyframe)
        if not packet.size or pts is None:
            return None  # a flush packet, or one without a time: it cannot be placed in a clip
        dts = packet.dts if packet.dts is not None else pts
        if self._annexb is None:
            data = bytes(packet)
        else:  # the filter takes the buffer of what it is given: a copy, the packet still goes to the decoder
            import av

            copy = av.Packet(bytes(packet))
            copy.pts, copy.dts, copy.is_keyframe = pts, dts, key
            data = b"".join(bytes(p) for p in self._annexb.filter(copy))
        if self._last_dts is not None and dts <= self._last_dts:
            dts = self._last_dts + 1  # muxers need increasing decoding times
        self._last_dts = dts
        if self.start is None:
            self.start = pts  # as the frames' clock: the first presentation time is zero
        self.count += 1
        if now is None:
            now = self.clock() if self.clock is not None else float((pts - self.start) * self.tb)
        return RecordedPacket(now, int(pts), int(dts), key, data)


def _decode(container: av.container.InputContainer, name: str, mode: DecodeMode, threads: int, live: bool,
            auto_interval_s: float = 0.0, on_decode: OnDecode | None = None, on_packet: OnPacket | None = None,
            clock: Callable[[], float] | None = None) -> Iterator[Frame]:
    """Decode the first video stream of an open container; corrupt packets are skipped (files only).

    With ``clock`` (a live camera), a frame's time is its packet's arrival on it, as its recorded packet's is:
    the moment the camera sent it, not the later one the decoder finished it, so a case's snapshot and its
    stream-copied clip show the same instant."""
    import av

    with container:
        if not container.streams.video:
            raise SourceError(f"{name}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        if mode == "keyframes":
            stream.codec_context.skip_frame = "NONKEY"
        tb = float(stream.time_base) if stream.time_base else 0.0
        start = stream.start_time if stream.start_time is not None else None
        fps = float(stream.average_rate) if stream.average_rate else 25.0
        count, last_ts, bad_packets, jumps = 0, -1.0, 0, 0
        keyframe_ts: list[float] | None = [] if mode == "auto" else None  # auto: until it has decided
        keyframes_only = mode == "keyframes"
        tap = _PacketTap(stream, clock) if on_packet is not None else None
        arrived: dict[int, float] = {}  # with a clock: the packets' arrivals by presentation time, until decoded
        last_media = -1.0
        demux = container.demux(stream)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                if live:
                    raise SourceError(f"{name}: read failed ({exc.strerror or type(exc).__name__})") from exc
                bad_packets += 1
                if bad_packets > 50:
                    break
                continue
            now = clock() if clock is not None else None
            if now is not None and packet.pts is not None:
                arrived[packet.pts] = now
                if len(arrived) > 256:  # packets that never become frames (key frames only, corrupt ones)
                    del arrived[next(iter(arrived))]
            if tap is not None and on_packet is not None and (recorded := tap(packet, now)) is not None:
                on_packet(tap.params, recorded)
            if keyframes_only and packet.size and not packet.is_keyframe:
                continue  # non-key packets never reach the decoder
            try:
                frames = packet.decode()
                if keyframes_only and live and packet.is_keyframe:
                    # A decoder holds each frame back until later ones come (B-frame reordering, frame threads):
                    # fed key frames alone it would hand a live key frame out two key frames (seconds) late. It is
                    # drained now and started afresh; the next key frame needs nothing before it.
                    frames = [*frames, *stream.codec_context.decode(None)]
                    stream.codec_context.flush_buffers()
            except av.error.FFmpegError:
                bad_packets += 1
                continue
            for fr in frames:
                if keyframes_only and not fr.key_frame:
                    continue  # decoded before an auto decision (frame threads), after it in time: dropped
                if fr.pts is not None and tb:  # the stream's own time
                    if start is None:
                        start = fr.pts
                    media = float((fr.pts - start) * tb)
                else:
                    media = last_media + 1.0 / fps if last_media >= 0 else 0.0
                if media <= last_media:  # timestamps that jump backwards or repeat: keep time monotonic
                    jumps += 1
                    media = last_media + 1.0 / fps
                last_media = media
                ts = media
                if clock is not None:  # a live frame: when its packet arrived
                    got = arrived.pop(fr.pts, None) if fr.pts is not None else None
                    ts = max(got if got is not None else clock(), last_ts + 1e-4)
                last_ts = ts
                if keyframe_ts is not None and fr.key_frame:
                    # The stream's own times, not arrivals: a stream read late in bursts (a busy machine, the
                    # first seconds' backlog) would make its key frames look irregular.
                    keyframe_ts.append(media)
                    decided = keyframes_suffice(keyframe_ts, auto_interval_s)
                    if decided is not None:
                        keyframe_ts = None
                        keyframes_only = _auto_decided(stream, decided, auto_interval_s, name, on_decode)
                yield Frame(None, float(ts), count, bool(fr.key_frame), video=fr)
                count += 1
        if bad_packets:
            log.warning("%s: skipped %d corrupt packets", name, bad_packets)
        if jumps and not live:  # live streams run on the wall clock; their PTS are not used
            log.warning("%s: %d timestamps went backwards or repeated; made monotonic", name, jumps)
        if count == 0:
            raise SourceError(f"{name}: no decodable video frames (corrupt or truncated)")


def _auto_decided(stream: av.video.stream.VideoStream, decided: tuple[bool, float], detect_interval_s: float,
                  name: str, on_decode: OnDecode | None) -> bool:
    """Switch an ``auto`` stream to key frames only, or keep it decoding every frame, and say why; returns
    whether key frames only are decoded from now on."""
    suffice, interval = decided
    if suffice:
        stream.codec_context.skip_frame = "NONKEY"
        reason = f"key frames every {interval:.2f} s, detection every {detect_interval_s:.2f} s: key frames only"
    else:
        reason = (f"key frames every {interval:.2f} s, too rare for detection every {detect_interval_s:.2f} s: "
                  "every frame decoded")
    log.info("%s: %s", name, reason)
    if on_decode is not None:
        on_decode("keyframes" if suffice else "all", reason)
    return suffice


def _opencv_can_open(path: Path) -> bool:
    cap = cv2.VideoCapture(str(path))
    try:
        return bool(cap.isOpened()) and cap.read()[0]
    finally:
        cap.release()


def _read_frames_opencv(path: Path, mode: DecodeMode) -> Iterator[Frame]:
    """Fallback decoder: OpenCV's FFmpeg backend, timestamps from ``CAP_PROP_POS_MSEC``.

    OpenCV cannot skip non-key frames in the decoder, so ``keyframes`` mode keeps
    one frame per second instead.
    """
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    count, last_ts, next_keep = 0, -1.0, 0.0
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            ts = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if ts <= last_ts:
                ts = last_ts + 1.0 / fps
            last_ts = ts
            if mode == "keyframes":
                if ts + 1e-6 < next_keep:
                    continue
                next_keep = ts + 1.0
            yield Frame(np.asarray(img, np.uint8), float(ts), count, mode == "keyframes")
            count += 1
    finally:
        cap.release()
    if count == 0:
        raise SourceError(f"{path}: no decodable video frames (corrupt or truncated)")
