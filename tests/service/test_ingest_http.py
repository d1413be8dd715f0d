"""HTTP cameras: MJPEG (multipart/x-mixed-replace) and HLS, from real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import cv2
import pytest

from detector.rules import RuleSettings
from detector.types import CANONICAL_LABELS
from pipelines.config import CameraConfig
from pipelines.runner import build_pipeline
from pipelines.sinks.store import CaseStore
from pipelines.source_kinds import open_source, source_config
from pipelines.sources import open_stream, read_frames
from service.cameras import CameraWorker
from service.settings import IngestConfig
from tests.helpers.data import DATA
from tests.helpers.mjpeg import mjpeg_camera
from tests.helpers.net import wait_for

CLIP = DATA / "clips" / "reg_violations_b.mp4"


@pytest.fixture(scope="module")
def mjpeg_url() -> Iterator[str]:
    jpegs = [cv2.imencode(".jpg", f.image)[1].tobytes() for f in read_frames(CLIP) if f.index < 30]

    def frames() -> Iterator[bytes]:
        for i in range(300):
            yield jpegs[i % len(jpegs)]
            time.sleep(0.05)  # a camera's frame rate, not a synchronisation

    with mjpeg_camera(frames) as url:
        yield url


class _QuietFiles(SimpleHTTPRequestHandler):
    """A file server that does not log every request (setting ``log_message`` on a ``partial`` did nothing)."""

    def log_message(self, format: str, *args: object) -> None:
        """Drop the request log."""


@pytest.fixture(scope="module")
def hls_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("hls")
    with av.open(str(CLIP)) as inp, av.open(str(root / "live.m3u8"), "w", format="hls",
                                             options={"hls_time": "2", "hls_list_size": "0"}) as out:
        ist = inp.streams.video[0]
        ost = out.add_stream_from_template(ist)
        for pkt in inp.demux(ist):
            if pkt.dts is None:
                continue
            pkt.stream = ost
            out.mux(pkt)
    handler = functools.partial(_QuietFiles, directory=str(root))
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/live.m3u8"
    srv.shutdown()


@pytest.mark.parametrize("which", ["mjpeg_url", "hls_url"])
def test_http_streams_decode(which: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(which)
    frames = []
    for fr in open_stream(url, read_timeout_s=5):
        frames.append(fr)
        if len(frames) >= 25:
            break
    assert len(frames) == 25 and frames[0].image.shape == (360, 640, 3)


def test_camera_worker_goes_live_on_mjpeg_and_samples_in_time(mjpeg_url: str, tmp_path: Path) -> None:
    cam = CameraConfig(id="mjpeg", source=mjpeg_url, detect_fps=2)
    pipeline = build_pipeline(cam, RuleSettings(), list(CANONICAL_LABELS), CaseStore(tmp_path / "c.db"), mjpeg_url)
    health: list[str] = []
    source = open_source(source_config(mjpeg_url, live=True))
    worker = CameraWorker("mjpeg", source, "all", pipeline, IngestConfig(queue=100),
                          lambda c, s, d: health.append(s), threading.Event())
    worker.start()
    try:
        wait_for(lambda: worker.stats.frames_queued >= 4, 30, "four sampled frames")
        decoded, queued = worker.pipeline.stats.frames_decoded, worker.stats.frames_queued
        assert health[:2] == ["connecting", "live"]
        assert queued <= decoded / 5  # 20 fps camera sampled at 2 fps
    finally:
        worker.stop()
    assert health[-1] == "stopped"
