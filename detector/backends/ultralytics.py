"""Ultralytics/PyTorch detector backend (optional ``train`` extra).

Loads a local ``.pt`` file only: hub names such as ``yolo26n.pt`` that would be
downloaded are refused, and ``YOLO_OFFLINE=1`` is set before import.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.backends.base import DetectorBackend, Image, ModelLoadError, UltralyticsConfig
from detector.types import Detections


class UltralyticsBackend(DetectorBackend):
    """YOLO detector running in PyTorch through Ultralytics."""

    def __init__(self, config: UltralyticsConfig) -> None:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        if not config.model.is_file():
            raise ModelLoadError(f"model file not found (hub names are never downloaded): {config.model}")
        try:
            from ultralytics.models import YOLO
        except ImportError as exc:
            raise ModelLoadError("the ultralytics backend needs the 'train' extra: pip install '.[train]'") from exc
        self.config = config
        self.model = YOLO(str(config.model))
        names = self.model.names
        self.names = [str(names[k]) for k in sorted(names)]
        self.imgsz = config.imgsz or int(self.model.overrides.get("imgsz", 640) or 640)

    def detect(self, frames: list[Image], sizes: Sequence[int] | None = None) -> list[Detections]:
        """Run Ultralytics predict on a batch of frames (at ``imgsz``; per-frame ``sizes`` are not used)."""
        if not frames:
            return []
        results = self.model.predict(frames, imgsz=self.imgsz, conf=self.config.conf, iou=self.config.iou,
                                     device=self.config.device, verbose=False)
        out = []
        for r in results:
            b: Any = getattr(r, "boxes", None)
            if b is None:
                out.append(Detections.empty())
                continue
            out.append(Detections(xyxy=_numpy(b.xyxy).astype(np.float32), confidence=_numpy(b.conf).astype(np.float32),
                                  class_id=_numpy(b.cls).astype(np.int64)))
        return out


def _numpy(x: Any) -> npt.NDArray[Any]:
    """A torch tensor (or array) as a numpy array."""
    return np.asarray(x.cpu().numpy() if hasattr(x, "cpu") else x)
