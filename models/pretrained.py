"""The COCO-pretrained start: a safe loader for the YOLOv5n checkpoint, the student it initialises and the
teacher it becomes.

``../shared/pretrained/yolov5n-coco.pt`` is Ultralytics' YOLOv5n v6.1 release checkpoint (COCO, 80 classes,
GPL-3.0). It is a PyTorch pickle that names classes of the YOLOv5 repository (``models.yolo.Model``,
``models.common.Conv``...), and this project has a top-level ``models`` package of its own: letting pickle
import by those names would load the wrong modules, and unpickling with arbitrary globals runs arbitrary
code. :func:`load_coco_checkpoint` therefore unpickles with an allowlist: the ``models.*`` names become plain
attribute containers, only the ``torch`` classes and builtins the file is known to use are resolved, and
anything else is refused. The tensors are then read off the module tree (``_parameters``, ``_buffers``,
``_modules``) by name.

Two uses:
    * :func:`student_start`: an Ultralytics ``yolov5n.yaml`` detector (anchor-free "u" head) with the
      project's classes, whose layers 0-23 (backbone and neck, 342 tensors) are copied from the checkpoint,
      saved as a ``.pt`` that ``YOLO(path).train(...)`` fine-tunes (Ultralytics rebuilds a model from a YAML
      and drops copied weights unless it starts from a checkpoint file).
    * :class:`CocoTeacher`: the checkpoint as it is (its anchor-based head decoded with its own anchors and
      strides) for pseudo-labelling context classes (people, vehicles, umbrellas, furniture).

Needs the ``train`` extra (PyTorch, Ultralytics); nothing at inference time imports this module.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.postprocess import decode_raw, letterbox, to_blob

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = ROOT.parent / "shared" / "pretrained" / "yolov5n-coco.pt"
CHECKPOINT_SHA256 = "4f180cf23ba0717ada0badd6c685026d73d48f184d00fc159c2641284b2ac0a3"
STUDENT_CFG = "yolov5n.yaml"
BACKBONE_NECK_LAYERS = 24  # layers 0-23 map one to one onto Ultralytics' yolov5n.yaml; 24 is the head

#: Globals of the checkpoint's pickle that are resolved to real objects (everything else but ``models.*``
#: is refused). Checked against the file's list of globals.
_ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("torch", "DoubleStorage"),
    ("torch", "FloatStorage"),
    ("torch", "HalfStorage"),
    ("torch", "LongStorage"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch.nn.modules.activation", "SiLU"),
    ("torch.nn.modules.batchnorm", "BatchNorm2d"),
    ("torch.nn.modules.container", "ModuleList"),
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.conv", "Conv2d"),
    ("torch.nn.modules.pooling", "MaxPool2d"),
    ("torch.nn.modules.upsampling", "Upsample"),
})
_YOLOV5_CLASSES = frozenset({"Model", "Detect", "Conv", "C3", "SPPF", "Bottleneck", "Concat"})


class CheckpointError(ValueError):
    """A checkpoint that is not the expected file or names a global outside the allowlist."""


class _Container:
    """Stands in for a YOLOv5 repository class: keeps the pickled attributes, runs nothing."""


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":
            module = "builtins"
        if module in ("models.yolo", "models.common") and name in _YOLOV5_CLASSES:
            return type(name, (_Container,), {"__module__": f"yolov5.{module}"})
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise CheckpointError(f"checkpoint refers to {module}.{name}, which is not on the allowlist")


def _pickle_module() -> types.ModuleType:
    """A stand-in for the ``pickle`` module that ``torch.load`` uses, with the allowlisting unpickler."""
    mod = types.ModuleType("streetwatch_safe_pickle")
    mod.Unpickler = _Unpickler  # type: ignore[attr-defined]
    mod.load = lambda f, **kw: _Unpickler(f, **kw).load()  # type: ignore[attr-defined]
    return mod


@dataclass(frozen=True)
class CocoCheckpoint:
    """What the project uses of the YOLOv5n COCO checkpoint.

    Attributes:
        state: Every parameter and buffer as float32, named like a state dict (``model.0.conv.weight``).
        names: The 80 COCO class names, in the head's order.
        anchors: Anchors ``(3 levels, 3, 2)`` in grid units of each level.
        strides: Feature strides of the three levels (8, 16, 32).
        yaml: The checkpoint's model description (depth and width multiples, layers).
    """

    state: dict[str, Any]
    names: list[str]
    anchors: Any
    strides: list[float]
    yaml: dict[str, Any]


def _walk(node: Any, prefix: str, out: dict[str, Any]) -> None:
    attrs = vars(node)
    for kind in ("_parameters", "_buffers"):
        for key, tensor in (attrs.get(kind) or {}).items():
            if tensor is not None:
                out[f"{prefix}{key}"] = tensor.detach().float().clone()
    for key, child in (attrs.get("_modules") or {}).items():
        if child is not None:
            _walk(child, f"{prefix}{key}.", out)


def load_coco_checkpoint(path: Path = DEFAULT_CHECKPOINT, verify: bool = True) -> CocoCheckpoint:
    """Load the YOLOv5n COCO checkpoint without running code from it.

    Args:
        path: The checkpoint file.
        verify: Refuse a file whose SHA-256 is not the documented one.

    Raises:
        CheckpointError: missing file, wrong checksum, a global outside the allowlist, or an unexpected layout.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint (see ../shared/pretrained/README.md)")
    if verify and (digest := hashlib.sha256(path.read_bytes()).hexdigest()) != CHECKPOINT_SHA256:
        raise CheckpointError(f"{path}: sha256 {digest} is not the YOLOv5n COCO checkpoint's {CHECKPOINT_SHA256}")
    import torch  # the train extra; only after the file passed its checks

    try:
        ckpt = torch.load(path, map_location="cpu", pickle_module=_pickle_module(), weights_only=False)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc}") from exc
    model = ckpt.get("ema") or ckpt.get("model") if isinstance(ckpt, dict) else None
    if model is None or "_modules" not in vars(model):
        raise CheckpointError(f"{path}: no model in the checkpoint")
    state: dict[str, Any] = {}
    _walk(model, "", state)
    attrs = vars(model)
    head = vars(attrs["_modules"]["model"])["_modules"][str(BACKBONE_NECK_LAYERS)]
    anchors = vars(head)["_buffers"]["anchors"].float()
    strides = [float(s) for s in attrs["stride"]]
    names = attrs["names"]
    names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    if len(names) != 80 or anchors.shape != (3, 3, 2):
        raise CheckpointError(f"{path}: expected 80 classes and 3x3 anchors, found {len(names)} and "
                              f"{tuple(anchors.shape)}")
    return CocoCheckpoint(state=state, names=names, anchors=anchors, strides=strides, yaml=dict(attrs["yaml"]))


def _offline_ultralytics() -> None:
    """Ultralytics must never look for the network (see ``models/train_gpu.py`` for the full set-up)."""
    import os

    os.environ.setdefault("YOLO_OFFLINE", "1")


def _detection_model(nc: int) -> Any:
    """An untrained Ultralytics ``yolov5n.yaml`` detector with ``nc`` classes."""
    _offline_ultralytics()
    from ultralytics.nn import tasks

    build: Any = tasks.DetectionModel
    return build(STUDENT_CFG, nc=nc, verbose=False)


def copy_backbone_neck(model: Any, ckpt: CocoCheckpoint) -> int:
    """Copy layers 0-23 of the checkpoint into an Ultralytics ``yolov5n.yaml`` model, in place.

    Returns:
        The number of tensors copied.

    Raises:
        CheckpointError: when a tensor of layers 0-23 has no counterpart of the same name and shape.
    """
    target = model.state_dict()
    copied = {}
    for key, tensor in ckpt.state.items():
        layer = int(key.split(".")[1])
        if layer >= BACKBONE_NECK_LAYERS:
            continue
        if key not in target or target[key].shape != tensor.shape:
            raise CheckpointError(f"{key} {tuple(tensor.shape)} has no counterpart in the {STUDENT_CFG} model")
        copied[key] = tensor
    missing = [k for k in target if int(k.split(".")[1]) < BACKBONE_NECK_LAYERS and k not in copied
               and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(f"the checkpoint lacks {len(missing)} backbone/neck tensors, e.g. {missing[:3]}")
    model.load_state_dict(copied, strict=False)
    return len(copied)


def student_start(names: list[str], out: Path, ckpt: CocoCheckpoint | None = None) -> Path:
    """Write an Ultralytics checkpoint: ``yolov5n.yaml`` with ``names`` as classes, backbone and neck from COCO.

    ``YOLO(out).train(data=...)`` then fine-tunes it (the data's class list must be ``names``).
    """
    import torch

    ckpt = ckpt or load_coco_checkpoint()
    model = _detection_model(len(names))
    n = copy_backbone_neck(model, ckpt)
    model.names = dict(enumerate(names))
    model.args = {"imgsz": 320}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "train_args": {}, "date": None, "version": "streetwatch-coco-start",
                "license": "GPL-3.0 (derived from Ultralytics YOLOv5n v6.1)"}, out)
    log.info("COCO start: %d tensors of layers 0-%d copied; %d classes -> %s", n, BACKBONE_NECK_LAYERS - 1,
             len(names), out)
    return out


def _teacher_module(ckpt: CocoCheckpoint) -> Any:
    import torch
    from torch import nn

    body = _detection_model(80)
    copy_backbone_neck(body, ckpt)
    layers = list(body.model)[:BACKBONE_NECK_LAYERS]
    head_in = [17, 20, 23]  # the neck layers the checkpoint's Detect head reads
    convs = nn.ModuleList()
    for level in range(len(head_in)):
        w = ckpt.state[f"model.{BACKBONE_NECK_LAYERS}.m.{level}.weight"]
        conv: Any = nn.Conv2d(w.shape[1], w.shape[0], 1)
        conv.weight.data.copy_(w)
        conv.bias.data.copy_(ckpt.state[f"model.{BACKBONE_NECK_LAYERS}.m.{level}.bias"])
        convs.append(conv)

    class Teacher(nn.Module):
        """YOLOv5n with its anchor-based head, decoded to ``(batch, boxes, 4 + 80)`` (cx, cy, w, h, scores)."""

        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(layers)
            self.head = convs
            self.register_buffer("anchors", ckpt.anchors.clone())
            self.strides = ckpt.strides

        def forward(self, x: Any) -> Any:
            saved: dict[int, Any] = {}
            layers: Any = self.layers
            for i, m in enumerate(layers):
                if m.f != -1:
                    x = saved[m.f] if isinstance(m.f, int) else [x if j == -1 else saved[j] for j in m.f]
                x = m(x)
                saved[i] = x
            out = []
            for level, (src, conv) in enumerate(zip(head_in, self.head, strict=True)):
                p = conv(saved[src])
                bs, _, ny, nx = p.shape
                p = p.view(bs, 3, 85, ny, nx).permute(0, 1, 3, 4, 2).sigmoid()
                gy, gx = torch.meshgrid(torch.arange(ny, dtype=p.dtype), torch.arange(nx, dtype=p.dtype),
                                        indexing="ij")
                grid = torch.stack((gx, gy), -1).view(1, 1, ny, nx, 2)
                stride = self.strides[level]
                anchors: Any = self.anchors
                anchor = (anchors[level] * stride).view(1, 3, 1, 1, 2)
                xy = (p[..., :2] * 2 - 0.5 + grid) * stride
                wh = (p[..., 2:4] * 2) ** 2 * anchor
                scores = p[..., 5:] * p[..., 4:5]
                out.append(torch.cat((xy, wh, scores), -1).view(bs, -1, 84))
            return torch.cat(out, 1)

    return Teacher().eval()


class CocoTeacher:
    """The COCO checkpoint as a detector of its 80 classes (pseudo-labels for context classes).

    Args:
        ckpt: The loaded checkpoint (default: the shared file).
        imgsz: Input side (letterboxed square).
        conf: Minimum score (objectness x class probability).
        iou: NMS IoU within a class.
    """

    def __init__(self, ckpt: CocoCheckpoint | None = None, imgsz: int = 640, conf: float = 0.3,
                 iou: float = 0.5) -> None:
        _offline_ultralytics()
        import torch

        self.ckpt = ckpt or load_coco_checkpoint()
        self.names = self.ckpt.names
        self.imgsz, self.conf, self.iou = imgsz, conf, iou
        self.net = _teacher_module(self.ckpt)
        self._torch = torch

    def detect(self, image: npt.NDArray[np.uint8]) -> list[tuple[str, float, tuple[float, float, float, float]]]:
        """Detect COCO objects in a BGR image: ``(name, score, (x1, y1, x2, y2) pixels)``, best first."""
        boxed, lb = letterbox(image, self.imgsz, stride=32)
        with self._torch.inference_mode():
            raw = self.net(self._torch.from_numpy(to_blob([boxed]))).numpy()
        det = decode_raw(raw.transpose(0, 2, 1), self.conf, self.iou)[0]
        xyxy = lb.unmap(det.xyxy)
        return [(self.names[int(c)], float(s), (float(b[0]), float(b[1]), float(b[2]), float(b[3])))
                for b, s, c in zip(xyxy, det.confidence, det.class_id, strict=True)]

    def __call__(self, image: npt.NDArray[np.uint8]) -> list[tuple[str, float, tuple[float, float, float, float]]]:
        """Detect COCO objects with boxes normalised to 0..1 (the form :mod:`datasets.pseudo` takes)."""
        h, w = image.shape[:2]
        return [(n, s, (x1 / w, y1 / h, x2 / w, y2 / h)) for n, s, (x1, y1, x2, y2) in self.detect(image)]
