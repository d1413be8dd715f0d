"""Automatic decoding: key frames only where a camera's rules do not need motion and key frames come often
enough; every frame otherwise. The decision is made on the stream's own key frames and reported."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipelines.config import CameraConfig, ZoneConfig
from pipelines.sources import keyframes_suffice, read_frames

SQUARE = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]


def clip(path: Path, seconds: int = 6, fps: int = 10, keyint: int = 10) -> Path:
    """A clip with a key frame every ``keyint`` frames exactly (no scene-cut key frames)."""
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = 160, 120, "yuv420p"
        st.options = {"x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0"}
        for k in range(seconds * fps):
            img = np.full((120, 160, 3), (k * 7) % 255, np.uint8)
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts, vf.time_base = k, Fraction(1, fps)
            for p in st.encode(vf):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return path


def test_keyframes_suffice_needs_three_key_frames_and_compares_the_median_interval() -> None:
    assert keyframes_suffice([0.0, 1.0], 1.0) is None
    assert keyframes_suffice([0.0, 1.0, 2.0], 1.0) == (True, 1.0)
    assert keyframes_suffice([0.0, 1.0, 2.04], 1.0) == (True, pytest.approx(1.02))  # jitter within 5 %
    assert keyframes_suffice([0.0, 2.0, 4.0, 4.1], 1.0) == (False, 2.0)
    # Sampling on key frames detects every whole number of key-frame intervals: every 1.5 s would give every 3 s
    # to a camera asking every 2 s; every 1 s or 0.5 s gives every 2 s.
    assert keyframes_suffice([0.0, 1.5, 3.0], 2.0) == (False, 1.5)
    assert keyframes_suffice([0.0, 1.0, 2.0], 2.0) == (True, 1.0)
    assert keyframes_suffice([0.0, 0.5, 1.0], 2.0) == (True, 0.5)
    assert keyframes_suffice([0.0, 1.9, 3.8], 2.0) == (True, pytest.approx(1.9))


def test_the_plan_decodes_every_frame_for_trucks_and_decides_on_the_stream_otherwise() -> None:
    assert CameraConfig(id="a").decode_plan()[0] == "all"  # no zones: every violation, trucks included
    pavement = ZoneConfig(id="walk", polygon=SQUARE, violations=["garbage", "street_stall"])
    mode, interval, _ = CameraConfig(id="a", detect_fps=0.5, zones=[pavement]).decode_plan()
    assert (mode, interval) == ("auto", 2.0)
    fast = pavement.model_copy(update={"detect_fps": 2.0})
    assert CameraConfig(id="a", detect_fps=0.5, zones=[fast]).decode_plan()[:2] == ("auto", 0.5)
    road = ZoneConfig(id="road", polygon=SQUARE, violations=["uncovered_truck"])
    mode, _, why = CameraConfig(id="a", zones=[pavement, road]).decode_plan()
    assert mode == "all" and "uncovered_truck" in why
    assert CameraConfig(id="a", decode="keyframes").decode_plan()[0] == "keyframes"


def test_auto_switches_to_key_frames_once_it_has_measured_them(tmp_path: Path) -> None:
    video = clip(tmp_path / "gop1s.mp4")  # 10 fps, a key frame every second
    told: list[tuple[str, str]] = []
    frames = list(read_frames(video, "auto", auto_interval_s=1.0, on_decode=lambda d, why: told.append((d, why))))
    assert [d for d, _ in told] == ["keyframes"] and "every 1.00 s" in told[0][1]
    first_21 = frames[:21]  # every frame up to the third key frame (t = 2 s)
    assert len(first_21) == 21 and [f.ts for f in first_21] == pytest.approx([k / 10 for k in range(21)])
    rest = frames[21:]
    assert rest and all(f.keyframe for f in rest) and [round(f.ts) for f in rest] == [3, 4, 5]


def test_auto_keeps_every_frame_when_key_frames_are_too_rare(tmp_path: Path) -> None:
    video = clip(tmp_path / "gop1s.mp4")
    told: list[str] = []
    frames = list(read_frames(video, "auto", auto_interval_s=0.5, on_decode=lambda d, _: told.append(d)))
    assert told == ["all"] and len(frames) == 60


def test_a_live_camera_decides_on_its_own_key_frame_times_not_their_arrivals(tmp_path: Path) -> None:
    import itertools
    import threading

    from pipelines.source_kinds import RtspSourceConfig, StreamSource

    # A key frame a second, read by a slow reader: the clock moves on a second each time it is read, so the key
    # frames arrive about ten seconds apart. Detecting every 2 s, key frames suffice all the same.
    ticks = itertools.count()
    cfg = RtspSourceConfig.model_construct(url=str(clip(tmp_path / "c.mp4")), open_timeout_s=5.0, read_timeout_s=5.0)
    source = StreamSource(cfg, epoch=0.0, clock=lambda: float(next(ticks)))
    said: list[str] = []
    frames = list(source.frames("auto", threading.Event(), 2.0, lambda decoding, _why: said.append(decoding)))
    assert said == ["keyframes"] and all(f.keyframe for f in frames[-3:])
