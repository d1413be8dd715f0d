"""Annotated output video: every decoded frame with the latest detections drawn."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from detector.scene import SceneSettings
from detector.types import Detections
from pipelines.overlay import draw_detections
from pipelines.sources import Frame


class AnnotatedVideoWriter:
    """Streams annotated frames into an H.264 MP4 with the source's timestamps."""

    def __init__(self, path: Path, names: list[str], max_width: int = 1280,
                 piles: SceneSettings | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.names = names
        self.piles = piles
        self.max_width = max_width
        self._out = av.open(str(path), "w")
        self._stream: av.VideoStream | None = None
        self._last = Detections.empty()
        self._last_pts = -1

    def __call__(self, frame: Frame, det: Detections | None) -> None:
        """Add a frame; ``det`` replaces the drawn detections when the frame was inferred."""
        if det is not None:
            self._last = det
        img = draw_detections(frame.image, self._last, self.names, self.piles)
        h, w = img.shape[:2]
        if self._stream is None:
            self._stream = self._out.add_stream("libx264", rate=25)
            self._stream.width, self._stream.height = w - w % 2, h - h % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.time_base = Fraction(1, 1000)
            self._stream.options = {"preset": "veryfast", "crf": "26"}
        sw, sh = self._stream.width, self._stream.height
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:sh, :sw]), format="bgr24")
        pts = max(self._last_pts + 1, round(frame.ts * 1000))
        vf.pts, vf.time_base = pts, Fraction(1, 1000)
        self._last_pts = pts
        for packet in self._stream.encode(vf):
            self._out.mux(packet)

    def close(self) -> None:
        """Flush and close the file."""
        if self._stream is not None:
            for packet in self._stream.encode():
                self._out.mux(packet)
        self._out.close()

    def __enter__(self) -> AnnotatedVideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
