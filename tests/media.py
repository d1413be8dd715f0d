"""Writing small test videos with PyAV."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_h264(path: Path, frames: Iterable[np.ndarray], fps: int, options: dict[str, str] | None = None) -> Path:
    """Encode BGR ``frames`` (all the same size) as H.264 at ``fps``, one frame per 1/fps."""
    with av.open(str(path), "w") as out:
        st = None
        for i, img in enumerate(frames):
            if st is None:
                st = out.add_stream("libx264", rate=fps)
                st.height, st.width = img.shape[:2]
                st.pix_fmt = "yuv420p"
                st.time_base = Fraction(1, fps)
                st.options = options or {}
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts = i
            for p in st.encode(vf):
                out.mux(p)
        if st is not None:
            for p in st.encode():
                out.mux(p)
    return path
