"""Stream-copy evidence: the packet ring, clips cut without re-encoding, dual streams, full-resolution snapshots."""

from __future__ import annotations

import itertools
import json
import threading
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from detector.events import EventState, ViolationEvent
from pipelines.sinks.evidence import EvidenceRecorder, fullres_snapshot
from pipelines.sinks.packets import PacketRing, frame_at, write_packets
from pipelines.source_kinds import FileSource, FileSourceConfig
from pipelines.sources import RecordedPacket, StreamParams, demux_packets, read_frames
from tests.helpers.video import write_h264

PARAMS = StreamParams("h264", 64, 48, b"", Fraction(1, 90000))


def packet(ts: float, key: bool, size: int = 100) -> RecordedPacket:
    return RecordedPacket(ts, round(ts * 90000), round(ts * 90000), key, bytes(size))


def numbered_clip(path: Path, seconds: float, fps: int, size: tuple[int, int], gop: int) -> Path:
    """Frames whose brightness counts up (frame i has level 10 + 2 i mod 220), B-frames on, a key frame every
    ``gop`` frames: a decoded frame tells which source frame it was."""
    w, h = size
    frames = [np.full((h, w, 3), 10 + (2 * i) % 220, np.uint8) for i in range(round(seconds * fps))]
    return write_h264(path, frames, fps, {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "2"})


def decoded(path: Path) -> tuple[list[float], tuple[int, int]]:
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        times = [float(f.time or 0.0) for f in c.decode(st)]
        return times, (st.codec_context.width, st.codec_context.height)


def garbage_event(start_s: float, ts: float, box: tuple[float, float, float, float] = (8, 8, 40, 30)
                  ) -> ViolationEvent:
    return ViolationEvent(EventState.START, "k", "cam", "z", "garbage", start_s=start_s, ts=ts, confidence=0.8,
                          box=box, best_ts=ts)


def test_ring_keeps_whole_groups_recently_and_spaced_key_frames_before() -> None:
    ring = PacketRing(full_s=3.0, history_s=10.0, history_every_s=2.0)
    assert not ring.add(PARAMS, packet(0.0, False))  # nothing before the first key frame can be decoded
    for i in range(1, 201):  # 10 packets a second, a key frame every second, 20 s
        ring.add(PARAMS, packet(i / 10, i % 10 == 0))
    whole = ring.select(19.0)
    assert whole[0].key and whole[0].ts == 19.0 and len(whole) == 11  # the group from 19 s, then 20 s
    longer = ring.select(5.0)
    keys = [round(p.ts, 1) for p in longer if p.ts < 17.0]
    # Before the last 3 s only key frames remain, one per 2 s, none older than 10 s of history.
    assert keys == [7.0, 9.0, 11.0, 13.0, 15.0] and all(p.key for p in longer if p.ts < 17.0)
    assert next(round(p.ts, 1) for p in longer if p.ts >= 17.0) == 17.0 and len(longer) == 5 + 31
    assert ring.nbytes == sum(len(p.data) for p in ring.select(-1.0))
    assert ring.covers(20.5) and not ring.covers(30.0)


def test_ring_starts_over_on_a_new_connection_and_stays_within_its_bytes() -> None:
    ring = PacketRing(full_s=3.0, history_s=100.0, history_every_s=1.0, max_bytes=5000)
    for i in range(100):
        ring.add(PARAMS, packet(i / 10, i % 10 == 0, size=200))
    # Over the bound the history goes, and older groups, but never the last full_s of packets.
    kept = ring.select(0.0)
    assert kept[0].key and kept[0].ts >= 9.9 - 3.0 - 1.0 and ring.first_key_ts() == kept[0].ts
    assert not ring._history and ring.nbytes == sum(len(p.data) for p in kept)
    other = StreamParams("h264", 64, 48, b"", Fraction(1, 90000))  # equal, but another connection's object
    ring.add(other, packet(0.0, True))
    assert ring.generation == 1 and [p.ts for p in ring.select(0.0)] == [0.0]


def test_clip_cut_by_stream_copy_keeps_every_packet_and_full_resolution(tmp_path: Path) -> None:
    src = numbered_clip(tmp_path / "main.mp4", 6.0, 25, (640, 360), 25)
    ring = PacketRing(full_s=30.0)
    sent = [ring.add(params, pk) for params, pk in demux_packets(str(src), live=False)]
    assert all(sent) and ring.params is not None and ring.params.copyable
    packets = ring.select(2.5)  # from the key frame at 2 s on
    assert packets[0].ts == pytest.approx(2.0)
    clip = tmp_path / "clip.mp4"
    assert write_packets(ring.params, packets, clip) == len(packets) == 100
    times, size = decoded(clip)
    assert size == (640, 360) and len(times) == 100  # no frame lost, none re-encoded at another size
    # The first frame is the source's frame at 2.0 s (level 10 + 2 * 50).
    image, at = frame_at(clip, 0.0)
    assert at == 0.0 and abs(float(image.mean()) - 110) < 3
    image, at = frame_at(clip, 1.52)  # decoded from the key frame before it: the source's frame 88
    assert at == pytest.approx(1.52) and abs(float(image.mean()) - (10 + 2 * 88)) < 3


def test_a_failed_clip_write_leaves_nothing_behind(tmp_path: Path) -> None:
    src = numbered_clip(tmp_path / "a.mp4", 1.0, 10, (64, 48), 10)
    got = list(demux_packets(str(src), live=False))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")
    with pytest.raises(OSError):
        write_packets(got[0][0], [p for _, p in got], blocked / "clip.mp4")
    with pytest.raises(ValueError):
        write_packets(got[0][0], [p for _, p in got][1:], tmp_path / "x.mp4")  # not from a key frame
    assert not list(tmp_path.glob("*.part*"))


def test_recorder_cuts_the_case_clip_and_the_snapshot_from_packets(tmp_path: Path) -> None:
    src = numbered_clip(tmp_path / "cam.mp4", 12.0, 25, (320, 180), 25)
    rec = EvidenceRecorder(tmp_path / "ev", long_s=60, pre_s=2, post_s=2, fast_fps=8, slow_fps=1)
    asked: list[int] = []
    finished = []

    def on_packet(params: StreamParams, pk: RecordedPacket) -> None:
        finished.extend(rec.packet("detect", params, pk))

    for fr in read_frames(src, on_packet=on_packet):
        finished.extend(rec.observe(fr.ts, lambda fr=fr: asked.append(fr.index) or fr.image))
        if fr.index % 12 == 0:  # the detector's samples, about 2 a second
            finished.extend(rec.sample(fr.ts, fr.image))
        if fr.index == 150:  # confirmed at 6 s, first seen at 4 s
            rec.start_case("case1", garbage_event(4.0, fr.ts), fr.image, None)
    finished.extend(rec.finish())
    assert rec.stream_copy and asked == []  # no decoded frame was kept for the clip
    assert [(c, k) for c, k, _ in finished] == [("case1", "clip")]
    times, size = decoded(finished[0][2])
    assert size == (320, 180)
    # From the key frame at or before 4 - 2 = 2 s to 6 + 2 = 8 s (and up to half a second more), every frame.
    assert times[0] == pytest.approx(0.0) and 6.0 <= times[-1] <= 6.5 and len(times) >= 150
    meta = json.loads((tmp_path / "ev" / "case1_frame.json").read_text())
    assert meta["clip_stream"] == "detect" and meta["clip_t0"] == pytest.approx(2.0)
    # No frame was kept as a JPEG: the snapshot's frame was decoded from the packets (the source's frame 150).
    assert len(rec._slow) == 0
    clean = cv2.imread(str(tmp_path / "ev" / "case1_frame.jpg"))
    assert clean.shape[:2] == (180, 320) and abs(float(clean.mean()) - (10 + (2 * 150) % 220)) < 3


def test_the_snapshot_is_the_frame_in_hand_when_it_is_the_best_else_decoded_from_packets(tmp_path: Path) -> None:
    src = numbered_clip(tmp_path / "cam.mp4", 8.0, 25, (320, 180), 25)
    rec = EvidenceRecorder(tmp_path / "ev", long_s=60, pre_s=2, post_s=2)
    times: dict[int, float] = {}
    level: dict[int, float] = {}
    black = np.zeros((180, 320, 3), np.uint8)  # stands for the confirming frame the detector had in hand
    for fr in read_frames(src, on_packet=lambda params, pk: rec.packet("detect", params, pk)):
        times[fr.index], level[fr.index] = fr.ts, float(fr.image.mean())
        if fr.index == 150:
            rec.start_case("best_now", garbage_event(4.0, fr.ts), black, None)
            earlier = ViolationEvent(EventState.START, "k2", "cam", "z", "garbage", start_s=4.0, ts=fr.ts,
                                     confidence=0.8, box=(8, 8, 40, 30), best_ts=times[144])
            rec.start_case("best_before", earlier, black, None)
    rec.finish()
    now = cv2.imread(str(tmp_path / "ev" / "best_now_frame.jpg"))
    assert float(now.mean()) < 3  # the confirming frame itself: nothing was decoded for it
    before = cv2.imread(str(tmp_path / "ev" / "best_before_frame.jpg"))
    # The best detection's frame (its brightness tells which), decoded from the packets.
    assert abs(float(before.mean()) - level[144]) < 1.5 and abs(float(before.mean()) - level[150]) > 6


def test_dual_streams_clip_from_the_main_stream_and_fall_back_when_it_stops(tmp_path: Path) -> None:
    main = numbered_clip(tmp_path / "main.mp4", 10.0, 25, (640, 360), 50)
    sub = numbered_clip(tmp_path / "sub.mp4", 10.0, 10, (160, 90), 20)
    main_packets = list(demux_packets(str(main), live=False))
    rec = EvidenceRecorder(tmp_path / "ev", long_s=60, pre_s=1, post_s=1)
    finished = []
    for params, pk in main_packets:
        if pk.ts < 5.5:  # the main stream drops at 5.5 s
            finished.extend(rec.packet("record", params, pk))
    def on_packet(params: StreamParams, pk: RecordedPacket) -> None:
        finished.extend(rec.packet("detect", params, pk))

    for fr in read_frames(sub, on_packet=on_packet):
        finished.extend(rec.sample(fr.ts, fr.image))
        if fr.index == 40:  # a case while the main stream is up: its clip comes from it
            rec.start_case("up", garbage_event(3.5, 4.0, (40, 20, 80, 60)), fr.image, None)
        if fr.index == 80:  # a case after it dropped: from the substream
            rec.start_case("down", garbage_event(7.5, 8.0), fr.image, None)
    finished += rec.finish()
    clips = {c: p for c, k, p in finished if k == "clip"}
    assert set(clips) == {"up", "down"}
    assert decoded(clips["up"])[1] == (640, 360) and decoded(clips["down"])[1] == (160, 90)
    up = json.loads((tmp_path / "ev" / "up_frame.json").read_text())
    assert up["clip_stream"] == "record" and (up["width"], up["height"]) == (160, 90)
    # The full-resolution snapshot: the main stream's frame at the detection's time, the box scaled 4x.
    full = fullres_snapshot(clips["up"], tmp_path / "ev" / "up_frame.json", tmp_path / "ev" / "up_full.jpg", "garbage")
    assert (full.width, full.height) == (640, 360) and full.off_by_s <= 0.05
    assert abs(full.ts - 4.0) <= 0.05
    with pytest.raises(ValueError):  # a case whose clip has no full-resolution frames
        meta = tmp_path / "ev" / "down_frame.json"
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "clip_stream": "frames"}))
        fullres_snapshot(clips["down"], meta, tmp_path / "ev" / "down_full.jpg", "garbage")


def test_a_looped_file_keeps_one_stream_across_replays(tmp_path: Path) -> None:
    src = numbered_clip(tmp_path / "loop.mp4", 1.0, 10, (64, 48), 5)
    source = FileSource(FileSourceConfig(path=src, loop=True))
    got: list[tuple[StreamParams, RecordedPacket]] = []
    stop = threading.Event()

    def keep(params: StreamParams, pk: RecordedPacket) -> None:
        got.append((params, pk))
        if len(got) >= 25:
            stop.set()

    source.packets(stop, keep)
    assert len({id(p) for p, _ in got}) == 1  # one stream for the ring: replays do not start it over
    ts = [pk.ts for _, pk in got]
    dts = [pk.dts for _, pk in got]
    # The third replay's key frame comes after two replays of 0.9 s and the 0.04 s between them.
    assert all(b > a for a, b in itertools.pairwise(dts)) and ts[20] == pytest.approx(2 * 0.94)
    ring = PacketRing(full_s=60.0)
    for params, pk in got:
        ring.add(params, pk)
    assert ring.generation == 0
    clip = tmp_path / "across.mp4"
    write_packets(got[0][0], ring.select(0.0), clip)
    assert len(decoded(clip)[0]) == 25


def test_a_background_writer_writes_clips_off_the_callers_thread_and_finish_waits_for_it(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    src = numbered_clip(tmp_path / "cam.mp4", 6.0, 10, (160, 96), 10)
    written: list[tuple[str, str, Path]] = []
    threads: set[str] = set()
    with ThreadPoolExecutor(1, thread_name_prefix="evidence") as pool:
        rec = EvidenceRecorder(tmp_path / "ev", long_s=30, pre_s=1, post_s=1, writer=pool.submit)

        def on_written(files: list[tuple[str, str, Path]]) -> None:
            threads.add(threading.current_thread().name)
            written.extend(files)

        rec.on_written = on_written
        returned = []
        for params, pk in demux_packets(str(src), live=False):
            returned += rec.packet("detect", params, pk)
            if pk.key and pk.ts == pytest.approx(2.0):
                rec.start_case("bg", garbage_event(1.5, 2.0), np.zeros((96, 160, 3), np.uint8), None)
        rec.finish()  # waits for the writer
    assert returned == [] and [(c, k) for c, k, _ in written] == [("bg", "clip")]
    assert all(name.startswith("evidence") for name in threads)
    times, _ = decoded(written[0][2])
    assert times[-1] >= 1.9  # from 0.5 s to 3 s of the source (and up to half a second more)


def test_a_re_encoded_clip_is_encoded_by_the_background_writer_too(tmp_path: Path) -> None:
    """A camera without packets (MJPEG, images): its clip is decoded from JPEGs and H.264-encoded by the
    evidence thread, not by the reader that delivered its last frame, and is the clip written without one."""
    from concurrent.futures import ThreadPoolExecutor

    def record(rec: EvidenceRecorder) -> list[tuple[str, str, Path]]:
        returned = []
        for i in range(50):  # 10 fps for 5 s; first seen at 1.5 s, confirmed at 2 s: the clip ends at 3 s
            img = np.full((96, 160, 3), i * 4, np.uint8)
            returned += rec.observe(i / 10, img)
            if i == 20:
                rec.start_case("mj", garbage_event(1.5, 2.0), img, None)
        return returned + rec.finish()

    written: list[tuple[str, str, Path]] = []
    threads: set[str] = set()
    with ThreadPoolExecutor(1, thread_name_prefix="evidence") as pool:
        rec = EvidenceRecorder(tmp_path / "bg", long_s=30, pre_s=1, post_s=1, fast_fps=4, writer=pool.submit)

        def on_written(files: list[tuple[str, str, Path]]) -> None:
            threads.add(threading.current_thread().name)
            written.extend(files)

        rec.on_written = on_written
        assert record(rec) == []
    assert [(c, k) for c, k, _ in written] == [("mj", "clip")]
    assert threads and all(name.startswith("evidence") for name in threads)
    ((_, _, inline),) = [f for f in record(EvidenceRecorder(tmp_path / "fg", long_s=30, pre_s=1, post_s=1,
                                                            fast_fps=4)) if f[1] == "clip"]
    assert decoded(written[0][2])[0] == decoded(inline)[0]


def test_an_mjpeg_detect_stream_keeps_frames_for_when_the_main_stream_drops(tmp_path: Path) -> None:
    # H.264 main stream up to 2 s, then down; the detect stream has no packets to keep (MJPEG): the case's clip
    # is re-encoded from its frames and covers the violation.
    main = numbered_clip(tmp_path / "main.mp4", 3.0, 10, (160, 96), 10)
    rec = EvidenceRecorder(tmp_path / "ev", long_s=30, pre_s=2, post_s=2, fast_fps=4, slow_fps=1)
    for params, pk in demux_packets(str(main), live=False):
        if pk.ts < 2.0:
            rec.packet("record", params, pk)
    finished = []
    for i in range(160):  # 10 fps for 16 s
        ts = i / 10
        img = np.full((96, 160, 3), i % 200, np.uint8)
        finished += rec.observe(ts, img)
        if i == 120:  # first seen at 9 s, confirmed at 12 s
            rec.start_case("mj", garbage_event(9.0, ts), img, None)
    finished += rec.finish()
    (clip,) = [p for c, k, p in finished if k == "clip"]
    times, _ = decoded(clip)
    assert len(times) >= 12 and times[-1] >= 6.5  # 7 s to 14 s, at 4 fps from 10 s, not 1-fps history alone
    meta = json.loads((tmp_path / "ev" / "mj_frame.json").read_text())
    assert meta["clip_stream"] == "frames"


def test_a_looped_file_decoding_key_frames_keeps_its_packet_times_rising(tmp_path: Path) -> None:
    frames = [np.full((48, 64, 3), 10 * i % 250, np.uint8) for i in range(10)]
    src = write_h264(tmp_path / "kf.mp4", frames, 10, {"g": "5", "keyint_min": "5", "sc_threshold": "0", "bf": "0"})
    source = FileSource(FileSourceConfig(path=src, loop=True))
    stop = threading.Event()
    ts: list[float] = []

    def keep(params: StreamParams, pk: RecordedPacket) -> None:
        ts.append(pk.ts)
        if len(ts) >= 25:
            stop.set()

    for _ in source.frames("keyframes", stop, on_packet=keep):
        pass
    assert all(b > a for a, b in itertools.pairwise(ts))  # the last key frame is at 0.5 s, the last packet at 0.9 s


def test_a_live_frame_is_stamped_with_its_packets_arrival_not_its_decoding(tmp_path: Path) -> None:
    from pipelines.source_kinds import RtspSourceConfig, StreamSource

    clip = write_h264(tmp_path / "s.mp4", [np.full((48, 64, 3), 10 + 2 * i, np.uint8) for i in range(30)], 10,
                      {"g": "10", "bf": "0"})
    ticks = itertools.count()  # a clock that moves on each time it is read: decoding later reads a later time
    cfg = RtspSourceConfig.model_construct(url=str(clip), open_timeout_s=5.0, read_timeout_s=5.0)
    source = StreamSource(cfg, epoch=0.0, clock=lambda: float(next(ticks)))
    arrived: dict[int, float] = {}
    frames = list(source.frames("all", threading.Event(),
                                on_packet=lambda _params, p: arrived.__setitem__(p.pts, p.ts)))
    assert len(frames) == 30
    # Each frame has the time its packet arrived, as the recorded packet does: a snapshot decoded at a frame's
    # time from the packet ring is that frame.
    assert [f.ts for f in frames] == [ts for _, ts in sorted(arrived.items())]


def test_a_live_camera_decoding_key_frames_gets_each_one_as_its_packet_arrives(tmp_path: Path) -> None:
    from pipelines.source_kinds import RtspSourceConfig, StreamSource

    # A key frame a second and B-frames: a decoder fed only key frames held each back until two more came (four
    # seconds on a camera with a key frame every two), and alerts were that late.
    clip = numbered_clip(tmp_path / "k.mp4", 6.0, 10, (64, 48), 10)
    cfg = RtspSourceConfig.model_construct(url=str(clip), open_timeout_s=5.0, read_timeout_s=5.0)
    source = StreamSource(cfg, epoch=0.0)
    seen: list[RecordedPacket] = []
    last_read = [(fr.index, seen[-1].key, seen[-1].ts == fr.ts)
                 for fr in source.frames("keyframes", threading.Event(), on_packet=lambda _p, pk: seen.append(pk))]
    # Every key frame came out as soon as its own packet was read, stamped with that packet's arrival.
    assert last_read == [(k, True, True) for k in range(6)]


class FakeRecord:
    """A main stream kept elsewhere (the service's recorder process): begins clips when it covers the case."""

    def __init__(self, t0: float | None, reaches: bool = True) -> None:
        self.t0, self.reaches, self.copyable = t0, reaches, True
        self.asked: list[tuple[str, bool]] = []
        self.pending: list[tuple[str, Path]] = []

    def start_clip(self, case_id: str, path: Path, begin: float, event_ts: float, until: float,
                   need_reach: bool) -> float | None:
        self.asked.append((case_id, need_reach))
        if self.t0 is None or (need_reach and not self.reaches):
            return None
        self.pending.append((case_id, path))
        return self.t0

    def flush(self) -> list[tuple[str, Path | None]]:
        out, self.pending = [(c, p) for c, p in self.pending], []
        for _, p in out:
            p.write_bytes(b"clip")
        return list(out)


def test_a_main_stream_kept_elsewhere_is_asked_first_and_the_detect_stream_stands_in(tmp_path: Path) -> None:
    src = numbered_clip(tmp_path / "cam.mp4", 6.0, 10, (160, 96), 10)
    image = np.zeros((96, 160, 3), np.uint8)

    def run(remote: FakeRecord, case: str) -> list[tuple[str, str, Path]]:
        rec = EvidenceRecorder(tmp_path / case, long_s=30, pre_s=1, post_s=1)
        rec.remote = remote
        got = []
        for params, pk in demux_packets(str(src), live=False):
            got += rec.packet("detect", params, pk)
            if pk.key and pk.ts == pytest.approx(3.0):
                rec.start_case(case, garbage_event(2.5, 3.0), image, None)
        return got + rec.finish()

    # Covering the case and reaching back to its start: the clip is the main stream's, the detect ring cuts none.
    remote = FakeRecord(2.4)
    got = run(remote, "main")
    meta = json.loads((tmp_path / "main" / "main_frame.json").read_text())
    assert (meta["clip_stream"], meta["clip_t0"]) == ("record", 2.4) and remote.asked == [("main", True)]
    assert [(c, k) for c, k, _ in got if k == "clip"] == [("main", "clip")]  # flushed by finish, from the remote
    # A main stream that reconnected a moment ago (not reaching back): the detect ring that does comes first.
    late = FakeRecord(2.9, reaches=False)
    got = run(late, "late")
    meta = json.loads((tmp_path / "late" / "late_frame.json").read_text())
    assert meta["clip_stream"] == "detect" and late.asked == [("late", True)]
    assert decoded(next(p for c, k, p in got if k == "clip"))[1] == (160, 96)
    # Down (covers nothing): the detect stream's clip.
    down = FakeRecord(None)
    run(down, "down")
    assert json.loads((tmp_path / "down" / "down_frame.json").read_text())["clip_stream"] == "detect"


def test_a_clip_written_by_the_main_streams_recorder_is_recorded_like_one_written_here(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    written: list[tuple[str, str, Path]] = []
    with ThreadPoolExecutor(1, thread_name_prefix="evidence") as pool:
        rec = EvidenceRecorder(tmp_path / "ev", writer=pool.submit)
        rec.on_written = written.extend
        rec.remote_written("a", tmp_path / "a.mp4")
        rec.remote_written("b", None)  # failed there: logged, the case keeps its snapshot
        rec.finish()  # waits for the delivery
    assert written == [("a", "clip", tmp_path / "a.mp4")] and rec.written == written
