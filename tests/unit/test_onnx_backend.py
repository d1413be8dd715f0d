"""The ONNX Runtime backend on the bundled default model (no PyTorch involved)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from detector.backends.base import (
    ModelIdentity,
    ModelLoadError,
    OnnxConfig,
    config_for,
    copy_weights,
    create_backend,
    identify,
    model_file,
)
from detector.backends.onnx import parse_names
from detector.digest import sha256_file
from detector.postprocess import box_iou
from detector.types import CANONICAL_LABELS


def test_default_model_metadata_and_batch(default_model: Path, street_clip: tuple[Path, dict]) -> None:
    from pipelines.sources import read_frames

    backend = create_backend(config_for(default_model, threads=1))
    assert backend.names == list(CANONICAL_LABELS)
    assert backend.imgsz == 320  # model 0.4.0 runs at 320 px unless told (its card: AP at 320, 416, 480)
    # Cases record which weights raised them: the folder's name, the metadata's version, the file's SHA-256.
    assert backend.identity == ModelIdentity("default 0.4.0", sha256_file(default_model))
    frames = [f.image for f in read_frames(street_clip[0]) if f.index in (20, 30)]
    batch = backend.detect(frames)
    single = [backend.detect([f])[0] for f in frames]
    assert len(batch) == 2
    for b, s in zip(batch, single, strict=True):
        np.testing.assert_allclose(b.xyxy, s.xyxy, atol=0.5)
    names = {backend.names[c] for d in batch for c in d.class_id}
    assert "garbage" in names
    h, w = frames[0].shape[:2]
    for d in batch:
        assert (d.xyxy[:, [0, 2]] <= w).all() and (d.xyxy[:, [1, 3]] <= h).all()
    assert backend.detect([np.zeros((1, 1, 3), np.uint8)])[0] is not None  # a 1x1 frame is no crash
    assert "torch" not in sys.modules, "the inference path must not import torch"


def test_missing_or_broken_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model file not found"):
        create_backend(OnnxConfig(model=tmp_path / "none.onnx"))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="cannot load ONNX model"):
        create_backend(OnnxConfig(model=broken))


def test_a_model_folder_stands_for_its_onnx_file(tmp_path: Path) -> None:
    folder = tmp_path / "default"
    folder.mkdir()
    with pytest.raises(ModelLoadError, match=r"a folder without model\.onnx"):
        create_backend(config_for(folder))
    (folder / "model.onnx").write_bytes(b"x")
    assert config_for(folder).model == model_file(folder) == folder / "model.onnx"
    assert model_file(tmp_path / "x.pt") == tmp_path / "x.pt"
    assert config_for(folder / "model.pt").type == "ultralytics"


def test_model_identity_names_the_weights(tmp_path: Path) -> None:
    (tmp_path / "site_a").mkdir()
    (tmp_path / "site_a" / "model.onnx").write_bytes(b"weights")
    (tmp_path / "candidate.pt").write_bytes(b"weights")
    a = identify(tmp_path / "site_a" / "model.onnx", "0.4.1")
    b = identify(tmp_path / "candidate.pt")
    assert (a.name, b.name) == ("site_a 0.4.1", "candidate")  # a model.* file by its folder, others by name
    assert a.sha256 == b.sha256 == sha256_file(tmp_path / "candidate.pt")  # the same bytes are the same model
    assert str(a) == f"site_a 0.4.1 (sha256 {a.sha256[:12]})"


def test_a_copy_of_weights_keeps_their_name(tmp_path: Path) -> None:
    """A Ray node's copy of a model is named like the file it came from; different weights never share a copy."""
    site = tmp_path / "models" / "site_a" / "model.onnx"
    one = copy_weights(b"site weights", site, tmp_path / "scratch")
    assert identify(one).name == "site_a" and one.suffix == ".onnx" and one.read_bytes() == b"site weights"
    other = copy_weights(b"other weights", tmp_path / "candidate.pt", tmp_path / "scratch")
    assert identify(other).name == "candidate" and other.suffix == ".pt"
    again = copy_weights(b"newer site weights", site, tmp_path / "scratch")
    assert again != one and one.read_bytes() == b"site weights"  # a second site model beside the first
    mtime = one.stat().st_mtime_ns
    assert copy_weights(b"site weights", site, tmp_path / "scratch") == one  # the same weights: the same file,
    assert one.stat().st_mtime_ns == mtime  # not written again (a detector loaded from it stays the one shared)


def test_parse_names() -> None:
    assert parse_names("{0: 'a', 1: 'b', 10: 'c', 2: 'd'}") == ["a", "b", "d", "c"]
    assert parse_names("['x', 'y']") == ["x", "y"]


def test_rectangular_and_small_inputs(default_model: Path, street_clip: tuple[Path, dict]) -> None:
    from pipelines.sources import read_frames

    backend = create_backend(config_for(default_model, threads=1))
    frame = [f for f in read_frames(street_clip[0])][-1].image  # the stall, garbage and barbecue are out
    assert backend.stride == 32  # type: ignore[attr-defined]  # the model takes any height and width
    rect = backend.detect([frame])[0]
    backend.stride = 0  # type: ignore[attr-defined]
    square = backend.detect([frame])[0]
    backend.stride = 32  # type: ignore[attr-defined]
    # The same objects whether the 16:9 frame is padded to 320x320 or only to 320x192.
    assert len(rect) == len(square) and len(rect) > 0
    assert box_iou(rect.xyxy, square.xyxy).max(axis=1).min() > 0.8
    # Inputs too small for the NMS-free head's 300 anchors are padded up instead of failing in ONNX Runtime;
    # frames of different shapes in one call come back in order.
    crops = [frame[:40, :300], frame[:64, :64], frame]
    out = backend.detect(crops, [64, 64, 320])
    assert len(out) == 3 and len(out[2]) == len(rect)

