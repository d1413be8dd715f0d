"""Cameras' main (record) streams read in a process of their own.

A main stream is never decoded: its packets only go into a ring from which cases' clips are cut by stream copy.
Reading them costs little CPU but one thread per camera, and in the service's process those threads take the
GIL hundreds of times a second each: with 32 two-stream cameras the rules thread, which needs the GIL for a few
milliseconds per sample, got 0.02 of a core and the detector waited for it (bench/README.md, "What limits live
capacity"). Here the record readers, their :class:`~pipelines.sinks.packets.PacketRing` and the clips cut from
them live in one child process:

* :class:`RecorderProcess` (in the service) starts the child, adds and removes cameras, asks for clips and
  hears back what was written; if the child dies its cameras' record streams show ``failed`` (clips then come
  from the detect stream, as when a main stream drops) and it is started again with every camera.
* :class:`RemoteRecord` is one camera's handle, the :class:`~pipelines.sinks.evidence.RecordStream` its evidence
  recorder uses.
* :func:`serve` is the child: one reader per camera (reconnecting with backoff), clips written by one writer
  thread under a temporary name (:func:`~pipelines.sinks.packets.write_packets`).

Messages are tuples over one :func:`multiprocessing.Pipe`. To the child: ``("add", camera, config, epoch,
ring, backoff_s, max_backoff_s)``, ``("remove", camera)``, ``("clip", request, camera, case, path, begin,
event_ts, until, need_reach, answer_by)``, ``("flush", request, camera)``, ``("stop",)``. From it: ``("status", camera,
health, detail, copyable)``, ``("ready",)`` once started, ``("reply", request, value)``, ``("written", camera,
case, path or None)``.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pipelines.sinks.evidence import STALL_GRACE_S
from pipelines.sinks.packets import PacketClip, PacketRing, write_clip_packets
from pipelines.source_kinds import FileSourceConfig, HttpSourceConfig, RtspSourceConfig, Source, open_source
from pipelines.sources import OnPacket, RecordedPacket, SourceError, StreamParams

log = logging.getLogger(__name__)

SourceConfig = FileSourceConfig | RtspSourceConfig | HttpSourceConfig

#: How long the service waits for the child to answer a clip or flush request before it gives up on it (a clip
#: not begun is then cut from the detect stream).
REPLY_TIMEOUT_S = 5.0
#: How long starting the child may take (Python and OpenCV/PyAV imports) before cameras are sent anyway.
READY_TIMEOUT_S = 30.0
#: How often the child writes clips whose stream stalled.
TICK_S = 0.5

#: Health, detail and whether its packets can be cut: called on every change of a camera's record stream.
OnStatus = Callable[[str, str, bool], None]
#: A clip written (its path) or failed (None), by case id.
OnWritten = Callable[[str, Path | None], None]


def record_until_stopped(camera_id: str, source: Source, stop: threading.Event, on_packet: OnPacket,
                         backoff_s: float, max_backoff_s: float, is_live: Callable[[], bool],
                         on_failure: Callable[[str, str], None]) -> None:
    """Read a camera's main stream until ``stop`` is set, reconnecting with exponential backoff (any failure: the
    record stream never stops its camera). ``on_failure`` gets ``connecting``, or ``failed`` from the third
    failure in a row, and why; a failure after the stream was live (``is_live``) counts as the first."""
    failures = 0
    while not stop.is_set():
        try:
            source.packets(stop, on_packet)
            if not stop.is_set():
                raise SourceError(f"{source.name}: stream ended")
        except Exception as exc:  # any record failure: back off and reconnect, never die
            failures = 1 if is_live() else failures + 1
            delay = min(max_backoff_s, backoff_s * 2 ** (failures - 1))
            on_failure("failed" if failures >= 3 else "connecting", str(exc)[:300])
            log.warning("camera %s: record stream: %s; reconnecting in %.1f s", camera_id, exc, delay)
            if stop.wait(delay):
                break


@dataclass(frozen=True)
class RingSpec:
    """A record ring's bounds (see :class:`~pipelines.sinks.packets.PacketRing`)."""

    full_s: float
    history_s: float
    history_every_s: float
    max_bytes: int


# ----------------------------------------------------------------------------------------------------------------
# The child process


@dataclass
class _Clip:
    clip: PacketClip
    deadline: float  # time.monotonic(): written with what it has by then (the stream stalled)


class _Recording:
    """One camera's record stream in the child: its reader thread, ring and clips being gathered."""

    def __init__(self, camera_id: str, cfg: SourceConfig, epoch: float | None, ring: RingSpec,
                 backoff_s: float, max_backoff_s: float, server: _Server) -> None:
        self.camera_id, self.server = camera_id, server
        self.source = open_source(cfg, epoch=epoch)
        self.ring = PacketRing(ring.full_s, ring.history_s, ring.history_every_s, ring.max_bytes)
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.lock = threading.Lock()
        self.clips: list[_Clip] = []
        self.health, self.detail = "connecting", ""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"record-{camera_id}", daemon=True)

    def _status(self, health: str, detail: str = "", copyable: bool = False) -> None:
        if (health, detail) != (self.health, self.detail):
            self.health, self.detail = health, detail
            self.server.send("status", self.camera_id, health, detail, copyable)

    def _packet(self, params: StreamParams, packet: RecordedPacket) -> None:
        done: list[PacketClip] = []
        with self.lock:
            if self.health != "live":
                self._status("live", "", params.copyable)
                log.info("camera %s: record stream live (%s %dx%d)", self.camera_id, params.codec, params.width,
                         params.height)
            if self.ring.add(params, packet):
                for c in self.clips:
                    c.clip.offer(packet)
            done = [c.clip for c in self.clips if c.clip.complete]
            if done:
                self.clips = [c for c in self.clips if c.clip not in done]
        for clip in done:
            self.server.write(self.camera_id, clip)

    def _run(self) -> None:
        record_until_stopped(self.camera_id, self.source, self.stop, self._packet, self.backoff_s,
                             self.max_backoff_s, lambda: self.health == "live", self._failed)

    def _failed(self, health: str, detail: str) -> None:
        with self.lock:
            self._status(health, detail)

    def start_clip(self, case_id: str, path: Path, begin: float, event_ts: float, until: float,
                   need_reach: bool) -> float | None:
        """See :meth:`pipelines.sinks.evidence.RecordStream.start_clip`."""
        with self.lock:
            ring = self.ring
            if self.health != "live" or not ring.clippable(event_ts) or (need_reach and not ring.reaches(begin)):
                return None
            clip = ring.cut(case_id, path, begin, until)
            if clip is None:
                return None
            if not clip.closed:
                self.clips.append(_Clip(clip, time.monotonic() + max(0.0, until - ring.last_ts) + STALL_GRACE_S))
        if clip.closed:
            self.server.write(self.camera_id, clip)
        return clip.t0

    def overdue(self, now: float) -> None:
        """Write the clips whose stream stalled past their deadline with the packets they have."""
        with self.lock:
            done = [c.clip for c in self.clips if now >= c.deadline]
            self.clips = [c for c in self.clips if c.clip not in done]
        for clip in done:
            self.server.write(self.camera_id, clip)

    def flush(self) -> list[tuple[str, Path | None]]:
        """Write every clip still gathering now, in this thread."""
        with self.lock:
            clips, self.clips = [c.clip for c in self.clips], []
        return [(clip.case_id, write_clip_packets(clip)) for clip in clips]


class _Server:
    """The child's state: cameras, the writer thread and the one connection to the service."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.send_lock = threading.Lock()
        self.cams: dict[str, _Recording] = {}
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clip-writer")
        self.stopping = threading.Event()

    def send(self, *msg: object) -> None:
        with self.send_lock:
            try:
                self.conn.send(msg)
            except (OSError, ValueError):  # the service is gone: the main loop ends on its side of the pipe
                pass

    def write(self, camera_id: str, clip: PacketClip) -> None:
        def job() -> None:
            self.send("written", camera_id, clip.case_id, write_clip_packets(clip))
        self.writer.submit(job)

    def tick(self) -> None:
        while not self.stopping.wait(TICK_S):
            now = time.monotonic()
            for rec in list(self.cams.values()):
                rec.overdue(now)

    def handle(self, msg: tuple[Any, ...]) -> bool:
        """Carry out one message; False once told to stop."""
        kind = msg[0]
        if kind == "stop":
            return False
        if kind == "add":
            _, camera_id, cfg, epoch, ring, backoff_s, max_backoff_s = msg
            old: _Recording | None = self.cams.pop(camera_id, None)
            if old is not None:
                old.stop.set()
            try:
                new = _Recording(camera_id, cfg, epoch, ring, backoff_s, max_backoff_s, self)
            except Exception as exc:  # a bad source config fails this camera's record stream only
                self.send("status", camera_id, "failed", str(exc)[:300], False)
                return True
            self.cams[camera_id] = new
            new.thread.start()
        elif kind == "remove":
            gone = self.cams.pop(msg[1], None)
            if gone is not None:
                gone.stop.set()
        elif kind == "clip":
            _, request, camera_id, case_id, path, begin, event_ts, until, need_reach, answer_by = msg
            rec: _Recording | None = self.cams.get(camera_id)
            late = time.monotonic() > answer_by  # the service has given up and cut the clip elsewhere
            self.send("reply", request, rec.start_clip(case_id, path, begin, event_ts, until, need_reach)
                      if rec is not None and not late else None)
        elif kind == "flush":
            _, request, camera_id = msg
            cam = self.cams.get(camera_id)
            self.send("reply", request, cam.flush() if cam is not None else [])
        return True

    def close(self) -> None:
        """Stop the readers and write every clip still gathering."""
        self.stopping.set()
        for rec in self.cams.values():
            rec.stop.set()
        for camera_id, rec in self.cams.items():
            for case_id, path in rec.flush():
                self.send("written", camera_id, case_id, path)
        self.writer.shutdown(wait=True)


def serve(conn: Connection, log_level: int = logging.INFO) -> None:
    """The recorder process: carry out the service's messages until told to stop or the service is gone."""
    logging.basicConfig(level=log_level, format="%(asctime)s recorder %(levelname)s %(name)s: %(message)s")
    server = _Server(conn)
    server.send("ready")  # imports done: the service adds cameras now, so main streams start with detect streams
    threading.Thread(target=server.tick, name="clip-deadlines", daemon=True).start()
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            try:
                if not server.handle(msg):
                    break
            except Exception:  # one bad message never ends the recorder
                log.exception("recorder: message %r failed", msg[:2])
    finally:
        server.close()
        conn.close()


# ----------------------------------------------------------------------------------------------------------------
# The service's side


@dataclass
class _Camera:
    add: tuple[Any, ...]
    on_status: OnStatus
    on_written: OnWritten
    copyable: bool = False


@dataclass
class RemoteRecord:
    """One camera's main stream in the recorder process (a :class:`~pipelines.sinks.evidence.RecordStream`)."""

    camera_id: str
    recorder: RecorderProcess
    copyable: bool = False
    on_written: OnWritten | None = None

    def start_clip(self, case_id: str, path: Path, begin: float, event_ts: float, until: float,
                   need_reach: bool) -> float | None:
        """See :meth:`pipelines.sinks.evidence.RecordStream.start_clip`."""
        if not self.copyable:
            return None
        # The child begins nothing after this (CLOCK_MONOTONIC is shared): a clip the service stopped waiting for
        # is cut from the detect stream, never written twice to one path.
        answer_by = time.monotonic() + REPLY_TIMEOUT_S - 0.5
        got = self.recorder.request("clip", self.camera_id, case_id, path, begin, event_ts, until, need_reach,
                                    answer_by)
        return float(got) if got is not None else None

    def flush(self) -> list[tuple[str, Path | None]]:
        """See :meth:`pipelines.sinks.evidence.RecordStream.flush`."""
        got = self.recorder.request("flush", self.camera_id)
        return list(got) if got is not None else []


class RecorderProcess:
    """The recorder child process, seen from the service: cameras in, clips and record health out.

    Args:
        log_level: The child's logging level.
        restart_s: First delay before a dead child is started again; doubles up to a minute.
    """

    def __init__(self, log_level: int = logging.INFO, restart_s: float = 1.0) -> None:
        self.log_level, self.restart_s = log_level, restart_s
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._cams: dict[str, _Camera] = {}
        self._handles: dict[str, RemoteRecord] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._replies: dict[int, Future[Any]] = {}
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._conn: Connection | None = None
        self.process: multiprocessing.process.BaseProcess | None = None
        self.restarts = 0
        self._listener: threading.Thread | None = None

    def start(self) -> None:
        """Start the child and the thread that listens to it."""
        self._spawn()
        self._listener = threading.Thread(target=self._listen, name="recorder-listener", daemon=True)
        self._listener.start()

    def _spawn(self) -> None:
        ours, theirs = self._ctx.Pipe()
        proc = self._ctx.Process(target=serve, args=(theirs, self.log_level), name="streetwatch-recorder",
                                 daemon=True)
        proc.start()
        theirs.close()
        try:  # wait for its imports: a main stream read seconds after its detect stream would miss the first case
            if ours.poll(READY_TIMEOUT_S):
                ours.recv()
            else:
                log.warning("recorder process not ready after %.0f s", READY_TIMEOUT_S)
        except (EOFError, OSError):
            pass  # it died at once: the listener sees the pipe's end and starts it again
        with self._lock:
            self._conn, self.process = ours, proc
            adds = [c.add for c in self._cams.values()]
        for add in adds:  # a restarted child gets every camera back
            self._send(add)

    def _send(self, msg: tuple[Any, ...]) -> bool:
        with self._send_lock:
            conn = self._conn
            if conn is None:
                return False
            try:
                conn.send(msg)
            except (OSError, ValueError) as exc:
                log.warning("recorder process unreachable: %s", exc)
                return False
        return True

    def add(self, camera_id: str, cfg: SourceConfig, epoch: float | None, ring: RingSpec, backoff_s: float,
            max_backoff_s: float, on_status: OnStatus | None = None) -> RemoteRecord:
        """Start recording a camera's main stream (``epoch``: its detect stream's clock zero, shared so clips line
        up with detections); returns its handle, whose ``on_written`` the camera's evidence recorder sets."""
        handle = RemoteRecord(camera_id, self)

        def status(health: str, detail: str, copyable: bool) -> None:
            handle.copyable = copyable
            if on_status is not None:
                on_status(health, detail, copyable)

        def written(case_id: str, path: Path | None) -> None:
            if handle.on_written is not None:
                handle.on_written(case_id, path)

        add = ("add", camera_id, cfg, epoch, ring, backoff_s, max_backoff_s)
        with self._lock:
            self._cams[camera_id] = _Camera(add, status, written)
            self._handles[camera_id] = handle
        self._send(add)
        return handle

    def remove(self, camera_id: str) -> None:
        """Stop recording a camera (its clips still gathering were flushed by its evidence recorder's finish)."""
        with self._lock:
            self._cams.pop(camera_id, None)
            self._handles.pop(camera_id, None)
        self._send(("remove", camera_id))

    def request(self, kind: str, *args: object) -> Any:
        """Send a request and wait for its reply (None if the child does not answer in time or is down)."""
        request = next(self._ids)
        reply: Future[Any] = Future()
        with self._lock:
            self._replies[request] = reply
        if not self._send((kind, request, *args)):
            self._replies.pop(request, None)
            return None
        try:
            return reply.result(timeout=REPLY_TIMEOUT_S)
        except TimeoutError:
            log.warning("recorder process did not answer a %s request in %.0f s", kind, REPLY_TIMEOUT_S)
            return None
        finally:
            with self._lock:
                self._replies.pop(request, None)

    def _listen(self) -> None:
        delay = self.restart_s
        while True:  # until the child is gone for good: what it writes while stopping still arrives
            conn = self._conn
            try:
                assert conn is not None
                msg = conn.recv()
            except (EOFError, OSError, AssertionError):
                if self._stopping.is_set():
                    break
                self._child_died()
                if self._stopping.wait(delay):
                    break
                delay = min(60.0, delay * 2)
                self.restarts += 1
                self._spawn()
                continue
            delay = self.restart_s
            self._dispatch(msg)

    def _dispatch(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "ready":
            return
        if kind == "reply":
            with self._lock:
                reply = self._replies.get(msg[1])
            if reply is not None and not reply.done():
                reply.set_result(msg[2])
            return
        with self._lock:
            cam = self._cams.get(msg[1])
        if cam is None:
            return
        try:
            if kind == "status":
                cam.on_status(msg[2], msg[3], msg[4])
            elif kind == "written":
                cam.on_written(msg[2], msg[3])
        except Exception:  # a callback's failure never stops the listener
            log.exception("recorder: handling %s of camera %s failed", kind, msg[1])

    def _child_died(self) -> None:
        """The child is gone: its cameras' record streams are down and its answers will not come."""
        proc = self.process
        code = proc.exitcode if proc is not None else None
        log.error("recorder process exited (code %s): restarting it", code)
        with self._lock:
            self._conn = None
            replies = list(self._replies.values())
            cams = list(self._cams.values())
        for reply in replies:
            if not reply.done():
                reply.set_result(None)
        for cam in cams:
            cam.on_status("failed", f"recorder process exited (code {code})", False)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the child (it writes the clips still gathering first) and the listener."""
        self._stopping.set()
        self._send(("stop",))
        proc = self.process
        if proc is not None:
            proc.join(timeout)
            if proc.is_alive():
                log.warning("recorder process did not stop in %.0f s: killed", timeout)
                proc.kill()
                proc.join(2.0)
        if self._listener is not None:
            self._listener.join(5.0)  # it ends at the pipe's end, once the child has exited
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
