"""A camera with two streams on real RTSP servers: the detector sees the substream, evidence is cut from the main
stream by stream copy, a full-resolution snapshot is taken on demand, and the main stream dropping never stops
the camera."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest

from service.settings import ServiceConfig
from tests.helpers.data import DATA
from tests.helpers.net import free_port, wait_for
from tests.helpers.rtsp import RtspServer, gst_or_skip
from tests.helpers.service import TOKENS, running_service

SUB = DATA / "clips" / "reg_violations_b.mp4"  # 640x360, 5 fps


def main_stream(path: Path) -> Path:
    """The substream's scene at twice its size (a camera's main stream), with its own key frames every 2 s."""
    with av.open(str(SUB)) as src, av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=5)
        st.width, st.height, st.pix_fmt, st.time_base = 1280, 720, "yuv420p", Fraction(1, 5)
        st.options = {"g": "10", "bf": "0", "preset": "ultrafast"}
        for i, frame in enumerate(src.decode(video=0)):
            img = cv2.resize(frame.to_ndarray(format="bgr24"), (1280, 720), interpolation=cv2.INTER_LINEAR)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
            vf.pts = i
            for p in st.encode(vf):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return path


@pytest.fixture()
def servers(tmp_path: Path) -> Iterator[tuple[RtspServer, RtspServer]]:
    gst_or_skip()
    sub, main = RtspServer(SUB, free_port()), RtspServer(main_stream(tmp_path / "main.mp4"), free_port())
    sub.start()
    main.start()
    yield sub, main
    sub.kill()
    main.kill()


@pytest.mark.slow  # two live streams until a case's clip is written, then the main stream dies
def test_two_streams_detect_on_the_substream_and_record_the_main_stream(
        servers: tuple[RtspServer, RtspServer], tmp_path: Path) -> None:
    sub, main = servers
    cfg = ServiceConfig.model_validate({
        "server": {"port": free_port()},
        "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"}]},
        "storage": {"db": str(tmp_path / "cases.db"), "evidence": str(tmp_path / "evidence")},
        "ingest": {"open_timeout_s": 5, "read_timeout_s": 3, "backoff_s": 0.5, "max_backoff_s": 2, "stall_s": 2},
        "cameras": [{"id": "dual", "source": sub.url, "record": main.url, "detect_fps": 2,
                     "zones": [{"id": "pavement", "polygon": [[0.44, 0.0], [1.0, 0.0], [1.0, 1.0], [0.74, 1.0]],
                                "violations": ["street_stall", "garbage"]}]}],
        "rules": {"dwell_s": {"street_stall": 2, "garbage": 2}, "gap_tolerance_s": 3},
    })
    headers = {"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}
    with running_service(cfg) as url, httpx.Client(base_url=url, timeout=60, headers=headers) as c:
        def camera() -> dict:
            cams: list[dict] = c.get("/api/cameras").json()
            return cams[0]

        def clipped_case() -> dict | None:
            for item in c.get("/api/cases").json()["items"]:
                detail = c.get(f"/api/cases/{item['id']}").json()
                if "clip" in detail["evidence"]:
                    return detail
            return None

        wait_for(lambda: camera()["health"] == "live" and camera().get("record_health") == "live", 60, "both live")
        assert camera()["evidence"] == "stream copy (record)" and camera()["record"] == main.url
        case = wait_for(clipped_case, 90, "a case with its clip")
        clip = c.get(f"/api/cases/{case['id']}/evidence/clip", params={"original": True})
        assert clip.status_code == 200
        (tmp_path / "got.mp4").write_bytes(clip.content)
        with av.open(str(tmp_path / "got.mp4")) as got:
            st = got.streams.video[0]
            size = (st.codec_context.width, st.codec_context.height)
            frames = sum(1 for _ in got.decode(st))
        assert size == (1280, 720) and frames >= 10  # the main stream, as it came, in real time (5 fps)
        snapshot = c.get(f"/api/cases/{case['id']}/evidence/snapshot", params={"original": True})
        assert cv2.imdecode(np.frombuffer(snapshot.content, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (360, 640)

        taken = c.post(f"/api/cases/{case['id']}/fullres")
        assert taken.status_code == 201, taken.text
        assert (taken.json()["width"], taken.json()["height"]) == (1280, 720) and taken.json()["off_by_s"] <= 0.5
        full = c.get(f"/api/cases/{case['id']}/evidence/fullres", params={"original": True})
        assert cv2.imdecode(np.frombuffer(full.content, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (720, 1280)

        main.kill()  # the main stream drops: the camera goes on, clips come from the substream
        wait_for(lambda: camera()["record_health"] in ("connecting", "failed"), 30, "record stream down")
        cam = camera()
        assert cam["health"] == "live" and cam["evidence"] == "stream copy (detect)" and cam["record_detail"]
        assert 'streetwatch_camera_record_live{camera="dual"} 0' in c.get("/metrics").text
