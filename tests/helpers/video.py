"""Small test videos written with PyAV, and a detector that finds the red square they can show."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

from detector.backends.base import DetectorBackend
from detector.types import CANONICAL_LABELS, Detections


def write_h264(path: Path, frames: Iterable[npt.NDArray[np.uint8]], fps: int,
               options: dict[str, str] | None = None) -> Path:
    """Encode BGR ``frames`` (all the same size) as H.264 at ``fps``, one frame per 1/fps."""
    with av.open(str(path), "w") as out:
        st = None
        for i, img in enumerate(frames):
            if st is None:
                st = out.add_stream("libx264", rate=fps)
                st.height, st.width = img.shape[:2]
                st.pix_fmt = "yuv420p"
                st.time_base = Fraction(1, fps)
                st.options = {**(options or {})}
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts = i
            for p in st.encode(vf):
                out.mux(p)
        if st is not None:
            for p in st.encode():
                out.mux(p)
    return path


def write_video(path: Path, pts_ms: list[int], gop: int = 10, size: tuple[int, int] = (160, 96)) -> Path:
    """Write an H.264 video whose frames have the given timestamps (ms)."""
    w, h = size
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.time_base = Fraction(1, 1000)
        st.options = {"g": str(gop), "bf": "0"}
        for i, pts in enumerate(pts_ms):
            img = np.full((h, w, 3), (i * 9) % 255, np.uint8)
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts, vf.time_base = pts, Fraction(1, 1000)
            for p in st.encode(vf):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return path


def still_street_video(path: Path, seconds: int, square_from: float) -> Path:
    """A still street (grey, fixed noise) at 10 fps where a red square appears at ``square_from`` and stays."""
    rng = np.random.default_rng(0)
    base = (rng.normal(110, 8, (180, 320, 3))).clip(0, 255).astype(np.uint8)
    frames = []
    for i in range(seconds * 10):
        img = base.copy()
        if i / 10 >= square_from:
            cv2.rectangle(img, (200, 100), (240, 130), (40, 40, 220), -1)
        frames.append(img)
    return write_h264(path, frames, 10)


class CountingBackend(DetectorBackend):
    """Finds a "garbage" box wherever the frame has its red square; counts its calls."""

    def __init__(self) -> None:
        self.names = list(CANONICAL_LABELS)
        self.imgsz = 320
        self.calls = 0

    def detect(self, frames: list[npt.NDArray[np.uint8]], sizes: Sequence[int] | None = None) -> list[Detections]:
        out = []
        for img in frames:
            self.calls += 1
            red = (img[..., 2] > 150) & (img[..., 0] < 80)
            ys, xs = np.nonzero(red)
            if len(xs):
                box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
                out.append(Detections(box, np.array([0.9], np.float32), np.array([3], np.int64),
                                      np.array([-1], np.int64)))
            else:
                out.append(Detections.empty())
        return out

    def close(self) -> None:
        pass
