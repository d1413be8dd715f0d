"""Inputs a camera network really produces: time that goes backwards, tiny and huge frames. Each gives a
clear error or a clean result, and nothing else stops. (RTSP servers that never answer, ask for a password
or speak garbage are in tests/integration/test_rtsp_bad_servers.py.)"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from pipelines.sources import read_frames
from service.cli import main
from tests.helpers.video import write_h264


def _ts_segment(path: Path, n: int, start_pts: int = 0) -> bytes:
    """An MPEG-TS segment of ``n`` frames at 25 fps whose clock starts at ``start_pts`` (90 kHz)."""
    with av.open(str(path), "w", format="mpegts") as out:
        st = out.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = 160, 96, "yuv420p"
        st.time_base = Fraction(1, 90_000)
        st.options = {"g": "5", "bf": "0"}
        for i in range(n):
            vf = av.VideoFrame.from_ndarray(np.full((96, 160, 3), i * 20 % 255, np.uint8), format="bgr24")
            vf.pts, vf.time_base = start_pts + i * 3600, Fraction(1, 90_000)
            for p in st.encode(vf):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return path.read_bytes()


def test_timestamps_that_go_backwards_are_made_monotonic(tmp_path: Path) -> None:
    # A recorder that restarted its clock mid-file: the second segment starts back at zero.
    data = _ts_segment(tmp_path / "a.ts", 10, start_pts=900_000) + _ts_segment(tmp_path / "b.ts", 10)
    (tmp_path / "restart.ts").write_bytes(data)
    frames = list(read_frames(tmp_path / "restart.ts"))
    ts = [f.ts for f in frames]
    assert len(frames) == 20
    assert all(b > a for a, b in itertools.pairwise(ts))


def test_a_one_pixel_image_is_analysed_without_cases(tmp_path: Path) -> None:
    img = tmp_path / "dot.png"
    cv2.imwrite(str(img), np.zeros((1, 1, 3), np.uint8))
    assert main(["analyze", str(img), "--out", str(tmp_path / "o"), "-q"]) == 0
    data = json.loads((tmp_path / "o" / "cases.json").read_text())
    assert data["cases"] == [] and data["errors"] == []


def test_an_8k_video_is_analysed(tmp_path: Path) -> None:
    def frames() -> Iterator[np.ndarray]:
        for i in range(3):
            frame = np.full((4320, 7680, 3), 90 + i, np.uint8)
            cv2.rectangle(frame, (4000, 2000), (5200, 3200), (30, 30, 200), -1)
            yield frame

    clip = write_h264(tmp_path / "8k.mp4", frames(), 5, {"preset": "ultrafast"})
    assert main(["analyze", str(clip), "--out", str(tmp_path / "o"), "-q"]) == 0
    data = json.loads((tmp_path / "o" / "cases.json").read_text())
    assert data["errors"] == []
    (src,) = data["stats"]["sources"].values()
    assert (src["width"], src["height"], src["frames_decoded"]) == (7680, 4320, 3)
