"""ONNX Runtime detector backend.

Reads class names and input size from the model's metadata (as written by
Ultralytics' exporter and by ``streetwatch export``), supports YOLO26's
NMS-free ``[N, 300, 6]`` output and YOLO11/v8 raw ``[N, 4 + nc, anchors]``
output (NMS in numpy), batches frames when the model has a dynamic batch axis,
and warms up at load time so the first real frame is not slow.
"""

from __future__ import annotations

import ast
import logging

import numpy as np

from detector.backends.base import DetectorBackend, Frame, ModelLoadError, OnnxConfig
from detector.postprocess import decode_end2end, decode_raw, letterbox, to_blob
from detector.types import Detections

log = logging.getLogger(__name__)


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
        out_shape = self.session.get_outputs()[0].shape
        self.end2end = len(out_shape) == 3 and out_shape[-1] == 6
        log.info("loaded %s: %d classes, %d px, %s output, providers %s", config.model, len(self.names),
                 self.imgsz, "NMS-free" if self.end2end else "raw", providers)
        self._warmup()

    def _warmup(self) -> None:
        self.session.run(None, {self.input_name: np.zeros((1, 3, self.imgsz, self.imgsz), np.float32)})

    def detect(self, frames: list[Frame]) -> list[Detections]:
        """Letterbox, run and decode a batch of frames."""
        if not frames:
            return []
        boxed = [letterbox(f, self.imgsz) for f in frames]
        blobs = to_blob([b[0] for b in boxed])
        if self.dynamic_batch:
            outputs = [self.session.run(None, {self.input_name: blobs})[0]]
        else:
            outputs = [self.session.run(None, {self.input_name: blobs[i : i + 1]})[0] for i in range(len(blobs))]
        raw = np.concatenate(outputs).astype(np.float32)
        if self.end2end:
            decoded = decode_end2end(raw, self.config.conf)
        else:
            decoded = decode_raw(raw, self.config.conf, self.config.iou)
        results = []
        for det, (_, lb) in zip(decoded, boxed, strict=True):
            valid = det.class_id < len(self.names)
            det = det[valid]
            results.append(Detections(xyxy=lb.unmap(det.xyxy), confidence=det.confidence, class_id=det.class_id))
        return results
