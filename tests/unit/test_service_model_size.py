"""The service's detector input size comes from its config (``model.imgsz``), else from the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest
from pydantic import ValidationError

from service.runtime import LocalCameras
from service.settings import ServiceConfig


def _cameras(model: dict[str, Any], tmp_path: Path) -> LocalCameras:
    cfg = ServiceConfig.model_validate({"model": model})
    return LocalCameras(cfg, store=None, evidence_root=tmp_path,  # type: ignore[arg-type]
                        on_event=lambda *_: None, on_health=lambda *_: None, on_warn=lambda *_: None)


def test_model_imgsz_from_config_or_model(tmp_path: Path) -> None:
    default = _cameras({}, tmp_path).backend
    meta = ort.InferenceSession(str(ServiceConfig().model.path)).get_modelmeta().custom_metadata_map
    assert default.imgsz == int(meta["imgsz"].strip("[]").split(",")[0])  # the model's own size
    assert _cameras({"imgsz": 480}, tmp_path).backend.imgsz == 480
    with pytest.raises(ValidationError, match="imgsz"):
        ServiceConfig.model_validate({"model": {"imgsz": 8}})
    with pytest.raises(ValidationError, match="multiple of 32"):
        ServiceConfig.model_validate({"model": {"imgsz": 500}})
