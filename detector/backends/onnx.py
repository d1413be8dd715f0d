"""ONNX Runtime detector backend.

Reads class names and input size from the model's metadata (as written by
Ultralytics' exporter and by ``streetwatch export``), supports YOLO26's
NMS-free ``[N, 300, 6]`` output and YOLO11/v8 raw ``[N, 4 + nc, anchors]``
output (NMS in numpy), batches frames when the model has a dynamic batch axis,
feeds rectangular inputs (padding only to a multiple of 32) when it has dynamic
height and width, and warms up at load time so the first real frame is not slow.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Sequence

import numpy as np

from detector.backends.base import DetectorBackend, Image, ModelLoadError, OnnxConfig
from detector.postprocess import Letterbox, UInt8Image, decode_end2end, decode_raw, letterbox, to_blob
from detector.types import Detections

log = logging.getLogger(__name__)

STRIDE = 32  # YOLO's largest feature-map stride: input sides must be multiples of it


def _anchors(h: int, w: int) -> int:
    """Anchor points of a YOLO head at strides 8, 16 and 32 for an ``h x w`` input."""
    return sum((h // st) * (w // st) for st in (8, 16, 32))


def parse_names(raw: str) -> list[str]:
    """Parse Ultralytics' ``names`` metadata (a dict literal) or a JSON list into a list."""
    value = ast.literal_eval(raw)
    if isinstance(value, dict):
        return [str(value[k]) for k in sorted(value, key=int)]
    return [str(v) for v in value]


class OnnxBackend(DetectorBackend):
    """YOLO detector running in ONNX Runtime."""

    def __init__(self, config: OnnxConfig) -> None:
        import onnxruntime as ort

        self.config = config
        opts = ort.SessionOptions()
        if config.threads:
            opts.intra_op_num_threads = config.threads
            opts.inter_op_num_threads = 1
        if not config.spinning:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = set(ort.get_available_providers())
        providers = [p for p in config.providers if p in available] or ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(config.model), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"cannot load ONNX model {config.model}: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        self.dynamic_batch = not isinstance(shape[0], int)
        # Any height and width: pad to the next multiple of the network stride only (Ultralytics' own predict).
        self.stride = STRIDE if config.rect and not isinstance(shape[2], int) and not isinstance(shape[3], int) else 0
        if config.imgsz:
            self.imgsz = config.imgsz
        elif "imgsz" in meta:
            self.imgsz = int(ast.literal_eval(meta["imgsz"])[0])
        elif isinstance(shape[2], int):
            self.imgsz = int(shape[2])
        else:
            raise ModelLoadError(f"{config.model}: input size unknown; pass imgsz")
        if "names" not in meta:
            raise ModelLoadError(f"{config.model}: no 'names' metadata; export it with `streetwatch export`")
        self.names = parse_names(meta["names"])
        self.version = meta.get("streetwatch_version", "")
        out_shape = self.session.get_outputs()[0].shape
        self.end2end = len(out_shape) == 3 and out_shape[-1] == 6
        # An NMS-free head keeps its top ``k`` of all anchors (k fixed at export): a smaller input must still
        # have k anchors or ONNX Runtime refuses it.
        self.top_k = out_shape[1] if self.end2end and isinstance(out_shape[1], int) else 0
        log.info("loaded %s: %d classes, %d px, %s output, providers %s", config.model, len(self.names),
                 self.imgsz, "NMS-free" if self.end2end else "raw", providers)
        self._warmup()

    def _warmup(self) -> None:
        self.session.run(None, {self.input_name: np.zeros((1, 3, self.imgsz, self.imgsz), np.float32)})

    def _fit(self, boxed: tuple[UInt8Image, Letterbox]) -> tuple[UInt8Image, Letterbox]:
        """Pad a small input at the bottom and right (same scale, same offsets) to the smallest square with
        the anchors the NMS-free head needs."""
        img, lb = boxed
        h, w = img.shape[:2]
        if _anchors(h, w) >= self.top_k:
            return boxed
        side = max(h, w)
        while _anchors(side, side) < self.top_k:
            side += STRIDE
        out = np.full((side, side, 3), 114, np.uint8)
        out[:h, :w] = img
        return out, lb

    def detect(self, frames: list[Image], sizes: Sequence[int] | None = None) -> list[Detections]:
        """Letterbox, run and decode a batch of frames (``sizes``: per-frame input sides, dynamic models)."""
        if not frames:
            return []
        sides = list(sizes) if sizes is not None and self.stride else [self.imgsz] * len(frames)
        boxed = [self._fit(letterbox(f, side, stride=self.stride)) for f, side in zip(frames, sides, strict=True)]
        # Frames of one input shape go through in one call (cameras of one resolution); others separately.
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, (img, _) in enumerate(boxed):
            by_shape.setdefault(img.shape, []).append(i)
        results: list[Detections] = [Detections.empty()] * len(frames)
        for idx in by_shape.values():
            blobs = to_blob([boxed[i][0] for i in idx])
            if self.dynamic_batch:
                outputs = [self.session.run(None, {self.input_name: blobs})[0]]
            else:
                outputs = [self.session.run(None, {self.input_name: blobs[k : k + 1]})[0] for k in range(len(idx))]
            raw = np.concatenate(outputs).astype(np.float32)
            if self.end2end:
                decoded = decode_end2end(raw, self.config.conf)
            else:
                decoded = decode_raw(raw, self.config.conf, self.config.iou)
            for det, i in zip(decoded, idx, strict=True):
                det = det[det.class_id < len(self.names)]
                lb = boxed[i][1]
                results[i] = Detections(xyxy=lb.unmap(det.xyxy), confidence=det.confidence, class_id=det.class_id)
        return results
