"""Ultralytics/PyTorch detector backend (optional ``train`` extra).

Loads a local ``.pt`` file only: hub names such as ``yolo26n.pt`` that would be
downloaded are refused, and ``YOLO_OFFLINE=1`` is set before import.
"""

from __future__ import annotations

import os

import numpy as np

from detector.backends.base import DetectorBackend, Frame, ModelLoadError, UltralyticsConfig
from detector.types import Detections


class UltralyticsBackend(DetectorBackend):
    """YOLO detector running in PyTorch through Ultralytics."""

    def __init__(self, config: UltralyticsConfig) -> None:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        if not config.model.is_file():
            raise ModelLoadError(f"model file not found (hub names are never downloaded): {config.model}")
        try:
            from ultralytics import YOLO
        except ImportError as exc:
            raise ModelLoadError("the ultralytics backend needs the 'train' extra: pip install '.[train]'") from exc
        self.config = config
        self.model = YOLO(str(config.model))
        names = self.model.names
        self.names = [str(names[k]) for k in sorted(names)]
        self.imgsz = config.imgsz or int(self.model.overrides.get("imgsz", 640) or 640)

    def detect(self, frames: list[Frame]) -> list[Detections]:
        """Run Ultralytics predict on a batch of frames."""
        if not frames:
            return []
        results = self.model.predict(frames, imgsz=self.imgsz, conf=self.config.conf, iou=self.config.iou,
                                     device=self.config.device, verbose=False)
        out = []
        for r in results:
            b = r.boxes
            out.append(Detections(xyxy=b.xyxy.cpu().numpy().astype(np.float32),
                                  confidence=b.conf.cpu().numpy().astype(np.float32),
                                  class_id=b.cls.cpu().numpy().astype(np.int64)))
        return out
