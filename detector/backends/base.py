"""The detector backend interface, its typed configs and the backend registry.

Backends turn a batch of BGR frames into one :class:`~detector.types.Detections`
per frame, in original-frame pixels, with class ids into ``names``. Shared code
only ever sees this interface; the registry maps a config's ``type`` to the
class implementing it, and backends with heavy dependencies (PyTorch) import
them lazily so the ONNX path never loads torch.
"""

from __future__ import annotations

import abc
import hashlib
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from detector.digest import sha256_file
from detector.types import Detections

Image = npt.NDArray[np.uint8]


class ModelLoadError(RuntimeError):
    """The model file is missing, unreadable or not a detector this project can run."""


InputSize = Annotated[int, Field(ge=32, le=4096, multiple_of=32)]
"""A detector input side in pixels: YOLO's feature maps need a multiple of its largest stride (32)."""


class BaseBackendConfig(BaseModel):
    """Settings shared by every backend."""

    model_config = ConfigDict(extra="forbid")

    model: Path = Field(description="Path of the model file (ONNX or PyTorch .pt); never a hub name.")
    conf: float = Field(default=0.25, ge=0.0, le=1.0, description="Minimum detection confidence.")
    iou: float = Field(default=0.6, gt=0.0, le=1.0, description="IoU threshold of NMS for raw outputs.")
    imgsz: InputSize | None = Field(default=None, description="Input size, a multiple of the detector's stride "
                                    "(32); by default read from the model's metadata.")


class OnnxConfig(BaseBackendConfig):
    """ONNX Runtime backend (default; no PyTorch needed)."""

    type: Literal["onnx"] = "onnx"
    threads: int = Field(default=0, ge=0, le=256, description="Intra-op threads; 0 lets ORT decide.")
    rect: bool = Field(default=True, description="Pad frames only to the next multiple of 32 (320x192 for "
                       "16:9 at 320 px) when the model takes any height and width; false: square input.")
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"],
                                 description="ONNX Runtime execution providers, in order of preference.")
    spinning: bool = Field(default=True, description="Let ONNX Runtime's threads spin between calls (fastest "
                           "detector calls); false gives their CPU to the work between calls (decoding, "
                           "evidence, rules): batch analysis runs 21 % faster without spinning (bench/README).")


class UltralyticsConfig(BaseBackendConfig):
    """Ultralytics/PyTorch backend (optional extra ``train``)."""

    type: Literal["ultralytics"] = "ultralytics"
    device: str = Field(default="cpu", description="Torch device, e.g. 'cpu' or '0'.")


BackendConfig = Annotated[OnnxConfig | UltralyticsConfig, Field(discriminator="type")]


@dataclass(frozen=True)
class ModelIdentity:
    """Which weights a detector runs: what each case records as the model that raised it.

    Attributes:
        name: For people: the model folder (or file) and its version, e.g. ``default 0.4.0``.
        sha256: SHA-256 of the weights file: the same weights wherever the file lies.
    """

    name: str
    sha256: str

    def __str__(self) -> str:
        return f"{self.name} (sha256 {self.sha256[:12]})"


def weights_name(path: Path) -> str:
    """What cases call a weights file: ``models/default/model.onnx`` is ``default`` (a file named ``model.*`` is
    named by its folder, any other by its stem)."""
    return path.parent.name if path.stem == "model" and path.parent.name else path.stem


def identify(path: Path, version: str = "") -> ModelIdentity:
    """The identity of a weights file: ``models/default/model.onnx`` of version 0.4.0 is ``default 0.4.0``
    (:func:`weights_name` and the model's own version)."""
    return ModelIdentity(f"{weights_name(path)} {version}".strip(), sha256_file(path))


def copy_weights(data: bytes, origin: Path, folder: Path) -> Path:
    """Write weights that came as bytes (a Ray node has no copy of the file) under ``folder``, named so that
    :func:`identify` gives the copy the name of ``origin`` (the file they were read from): cases name the same
    model wherever they were detected. Copies of different weights never overwrite each other, and the same
    weights are written once (the same file each time, so a detector loaded from it is shared)."""
    target = folder / hashlib.sha256(data).hexdigest()[:16] / weights_name(origin) / f"model{origin.suffix}"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.write_bytes(data)
        partial.replace(target)  # a reader never sees half a model
    return target


class DetectorBackend(abc.ABC):
    """A detector: frames in, detections out.

    Attributes:
        names: Class names indexed by class id.
        imgsz: Network input side in pixels.
        version: The model's own version (``streetwatch_version`` in its metadata), empty when it has none.
        identity: Which weights it runs (set by :func:`create_backend`; None for a backend made otherwise).
    """

    names: list[str]
    imgsz: int
    version: str = ""
    identity: ModelIdentity | None = None

    @abc.abstractmethod
    def detect(self, frames: list[Image], sizes: Sequence[int] | None = None) -> list[Detections]:
        """Detect objects in a batch of BGR frames; one result per frame, in frame pixels.

        ``sizes``: each frame's input side (its longer side after resizing; default ``imgsz``), honoured
        where the model takes any input size (a crop at the frame's own scale is a smaller input).
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources held by the backend."""


#: Maps a config ``type`` to ``module:Class`` of its backend (imported on first use).
REGISTRY: dict[str, str] = {
    "onnx": "detector.backends.onnx:OnnxBackend",
    "ultralytics": "detector.backends.ultralytics:UltralyticsBackend",
}


def create_backend(config: OnnxConfig | UltralyticsConfig) -> DetectorBackend:
    """Instantiate the backend a config names.

    Raises:
        ModelLoadError: The model file is missing or cannot be loaded.
    """
    if not config.model.is_file():
        hint = " (a folder without model.onnx)" if config.model.is_dir() else ""
        raise ModelLoadError(f"model file not found: {config.model}{hint}")
    module_name, cls_name = REGISTRY[config.type].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    backend: DetectorBackend = cls(config)
    backend.identity = identify(config.model, backend.version)
    return backend


def model_file(model: Path) -> Path:
    """The weights a ``--model`` path names: a model folder (``models/default``: the weights beside their card)
    stands for the ``model.onnx`` in it; any other path is returned as given."""
    if model.is_dir() and (model / "model.onnx").is_file():
        return model / "model.onnx"
    return model


def config_for(model: Path, conf: float = 0.25, imgsz: int | None = None, threads: int = 0,
               spinning: bool = True) -> OnnxConfig | UltralyticsConfig:
    """Pick the backend config from a model file's suffix (``.pt``: Ultralytics, else ONNX).

    A model folder (``models/default``: the weights beside their card) stands for the ``model.onnx`` in it.
    ``threads`` sets ONNX Runtime's intra-op threads and ``spinning`` whether they spin between calls; PyTorch
    keeps its own settings.
    """
    model = model_file(model)
    if model.suffix == ".pt":
        return UltralyticsConfig(model=model, conf=conf, imgsz=imgsz)
    return OnnxConfig(model=model, conf=conf, imgsz=imgsz, threads=threads, spinning=spinning)
