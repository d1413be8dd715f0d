"""The recorder process (service/recorder.py): cameras' main streams read in a child process, clips cut there by
stream copy and reported back; a camera whose stream cannot be read fails alone; a killed child is started again
with every camera; stopping writes the clips still gathering."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from pipelines.source_kinds import FileSourceConfig
from service.recorder import RecorderProcess, RemoteRecord, RingSpec
from tests.helpers.net import wait_for
from tests.helpers.video import write_h264

RING = RingSpec(full_s=8.0, history_s=60.0, history_every_s=2.0, max_bytes=8 << 20)


class Camera:
    """What the service keeps of one camera: its record stream's status and the clips reported written."""

    def __init__(self) -> None:
        self.status: tuple[str, str, bool] = ("connecting", "", False)
        self.written: dict[str, Path | None] = {}
        self.lock = threading.Lock()

    def on_status(self, health: str, detail: str, copyable: bool) -> None:
        self.status = (health, detail, copyable)

    def on_written(self, case_id: str, path: Path | None) -> None:
        with self.lock:
            self.written[case_id] = path


@pytest.fixture()
def main_stream(tmp_path: Path) -> Path:
    """A camera's main stream: 20 s of 320x180 at 10 fps, a key frame every second, looped in real time."""
    frames = [np.full((180, 320, 3), 10 + (3 * i) % 200, np.uint8) for i in range(200)]
    return write_h264(tmp_path / "main.mp4", frames, 10, {"g": "10", "keyint_min": "10", "sc_threshold": "0"})


@pytest.fixture()
def recorder() -> Iterator[RecorderProcess]:
    rec = RecorderProcess(restart_s=0.2)
    rec.start()
    yield rec
    rec.stop()


def add(rec: RecorderProcess, name: str, path: Path) -> tuple[RemoteRecord, Camera]:
    cam = Camera()
    handle = rec.add(name, FileSourceConfig(path=path, loop=True), None, RING, 0.2, 1.0, cam.on_status)
    handle.on_written = cam.on_written
    return handle, cam


def frames_of(path: Path) -> tuple[int, tuple[int, int]]:
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        return sum(1 for _ in c.decode(st)), (st.codec_context.width, st.codec_context.height)


def test_clips_are_cut_in_the_recorder_process_and_reported_back(recorder: RecorderProcess, main_stream: Path,
                                                                 tmp_path: Path) -> None:
    handle, cam = add(recorder, "cam", main_stream)
    broken, bad = add(recorder, "broken", tmp_path / "missing.mp4")
    wait_for(lambda: cam.status[0] == "live" and handle.copyable, 30, "record stream live")
    assert recorder.process is not None and recorder.process.pid != threading.get_native_id()
    # A case seen from 0 s and confirmed at 0.5 s: its clip runs to 1.5 s, cut from the first key frame.
    t0 = handle.start_clip("c1", tmp_path / "ev" / "c1.mp4", -1.0, 0.5, 1.5, need_reach=True)
    assert t0 == pytest.approx(0.0, abs=0.05)
    path = wait_for(lambda: cam.written.get("c1"), 30, "clip written")
    count, size = frames_of(path)
    assert size == (320, 180) and 14 <= count <= 22  # 0 to 1.5 s at 10 fps, and up to half a second more
    assert not list((tmp_path / "ev").glob("*.part.mp4"))
    # A request the service stopped waiting for is refused (the clip was cut from the detect stream instead).
    late = recorder.request("clip", "cam", "late", tmp_path / "ev" / "late.mp4", -1.0, 0.5, 1.5, False,
                            time.monotonic() - 1.0)
    assert late is None and "late" not in cam.written
    # The camera whose main stream cannot be read fails alone; asked for a clip, it begins none.
    wait_for(lambda: bad.status[0] == "failed" and "missing.mp4" in bad.status[1], 30, "broken stream failed")
    assert broken.start_clip("c2", tmp_path / "ev" / "c2.mp4", -1.0, 0.5, 1.5, need_reach=False) is None
    assert cam.status[0] == "live"


def test_a_killed_recorder_is_started_again_and_stopping_writes_what_is_gathering(main_stream: Path,
                                                                                  tmp_path: Path) -> None:
    rec = RecorderProcess(restart_s=0.2)
    rec.start()
    try:
        handle, cam = add(rec, "cam", main_stream)
        wait_for(lambda: cam.status[0] == "live", 30, "record stream live")
        first = rec.process
        assert first is not None
        first.kill()
        wait_for(lambda: cam.status[0] == "failed" and "recorder process exited" in cam.status[1], 30,
                 "the camera's record stream shown down")
        assert handle.start_clip("x", tmp_path / "x.mp4", -1.0, 0.5, 1.5, need_reach=False) is None
        wait_for(lambda: cam.status[0] == "live" and rec.process is not first, 30, "recorder started again")
        assert rec.restarts == 1
        # A clip that would end far ahead is written with what it has when the recorder stops.
        assert handle.start_clip("long", tmp_path / "long.mp4", -1.0, 0.0, 600.0, need_reach=False) is not None
    finally:
        rec.stop()
    path = cam.written.get("long")
    assert path is not None and frames_of(path)[0] >= 1
    assert rec.process is not None and not rec.process.is_alive()
