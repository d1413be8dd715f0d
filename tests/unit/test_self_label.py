"""datasets self-label: a site's unlabelled frames (images, videos) labelled by the model, then packed for the site
fine-tune."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from datasets.pack import OWN_FRAMES, extra_source
from datasets.self_label import LICENSE_NOTE, frames_of, self_label, self_label_pack
from datasets.yolo import DatasetError
from detector.types import CANONICAL_LABELS
from service.cli import main
from tests.helpers.detections import FakeBackend, make_detections


def _inputs(root: Path) -> Path:
    """Two images, a file that is no image, and a 3 s video at 10 fps (64 x 48)."""
    site = root / "site"
    (site / "cam2").mkdir(parents=True)
    for name in ("a.jpg", "cam2/b.png"):
        cv2.imwrite(str(site / name), np.full((48, 64, 3), 90, np.uint8))
    (site / "broken.jpg").write_bytes(b"not an image")
    writer = cv2.VideoWriter(str(site / "cam2" / "clip.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(30):
        writer.write(np.full((48, 64, 3), 3 * i, np.uint8))
    writer.release()
    return site


def test_frames_become_a_dataset_of_the_models_own_violation_boxes(tmp_path: Path) -> None:
    site = _inputs(tmp_path)
    boxes = make_detections([(10, 10, 30, 30, 0.6, "garbage"), (40, 5, 50, 15, 0.1, "garbage"),  # below conf
                             (0, 0, 20, 40, 0.9, "person"),  # context: the teacher's, not the model's
                             (50, 20, 90, 60, 0.3, "truck")])  # partly outside the frame: clipped
    res = self_label([site], FakeBackend(fixed=boxes), tmp_path / "out", conf=0.25, every_s=1.0,
                     val_fraction=0.0)
    assert res.frames == {"train": 5}  # 2 images + the video's frames at 0, 1 and 2 s
    assert res.boxes == {"garbage": 5, "truck": 5}
    assert len(res.errors) == 1 and "broken.jpg: not a readable image" in res.errors[0]
    spec = yaml.safe_load(res.data_yaml.read_text())
    assert [spec["names"][i] for i in range(len(CANONICAL_LABELS))] == list(CANONICAL_LABELS)
    labels = sorted((tmp_path / "out" / "labels" / "train").iterdir())
    assert [p.stem for p in labels] == ["a", "b", "clip_000000000ms", "clip_000001000ms", "clip_000002000ms"]
    lines = [line.split() for line in labels[0].read_text().splitlines()]
    assert [int(parts[0]) for parts in lines] == [CANONICAL_LABELS.index("garbage"), CANONICAL_LABELS.index("truck")]
    np.testing.assert_allclose([float(v) for v in lines[0][1:]], [20 / 64, 20 / 48, 20 / 64, 20 / 48], atol=1e-5)
    cx, cy, w, h = (float(v) for v in lines[1][1:])
    assert cx + w / 2 <= 1.0 + 1e-6 and cy + h / 2 <= 1.0 + 1e-6 and w == pytest.approx(14 / 64, abs=1e-5)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["license"] == LICENSE_NOTE and manifest["classes"] == ["garbage", "truck"]
    assert manifest["labelled_by"]["conf"] == 0.25 and len(manifest["files"]) == 5
    # `datasets pack --extra` takes the folder: its license line and the classes the model labelled.
    assert extra_source(tmp_path / "out") == (LICENSE_NOTE, frozenset({"garbage", "truck"}))
    with pytest.raises(ValueError, match="is not empty"):
        self_label([site], FakeBackend(), tmp_path / "out")


def test_a_files_frames_stay_in_one_split_and_nothing_readable_is_an_error(tmp_path: Path) -> None:
    site = _inputs(tmp_path)
    res = self_label([site / "cam2"], FakeBackend(), tmp_path / "out", every_s=1.0, val_fraction=0.5)
    splits = {f["input"]: f["split"] for f in json.loads((tmp_path / "out" / "manifest.json").read_text())["files"]}
    assert len(splits) == 2 and sum(res.frames.values()) == 4  # one image, three frames of the clip
    assert res.frames.get("train")  # training always gets frames, even when every input hashed to val
    assert all(not f.read_text() for f in (tmp_path / "out" / "labels").rglob("*.txt"))  # nothing found: negatives
    with pytest.raises(ValueError, match="no frame could be read"):
        self_label([site / "broken.jpg"], FakeBackend(), tmp_path / "none")
    assert [t for t, _ in frames_of(site / "cam2" / "clip.mp4", 1.5)] == ["clip_000000000ms", "clip_000001500ms"]


def test_pack_takes_a_bureaus_own_labelled_folder(tmp_path: Path) -> None:
    """A folder from `datasets import` has no manifest: the pack calls it the deployment's own frames and lets
    the teacher add only the classes its labels lack."""
    folder = tmp_path / "site"
    (folder / "labels" / "train").mkdir(parents=True)
    (folder / "data.yaml").write_text("train: images/train\nval: images/train\nnames: {0: garbage, 1: person}\n")
    (folder / "images" / "train").mkdir(parents=True)
    cv2.imwrite(str(folder / "images" / "train" / "x.jpg"), np.zeros((8, 8, 3), np.uint8))
    (folder / "labels" / "train" / "x.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    assert extra_source(folder) == (OWN_FRAMES, frozenset({"garbage"}))
    with pytest.raises(DatasetError, match=r"no data\.yaml"):
        extra_source(tmp_path / "nothing")


def test_self_label_command_with_the_shipped_model(tmp_path: Path, default_model: Path) -> None:
    site = _inputs(tmp_path)
    assert main(["datasets", "self-label", str(site), "--model", str(default_model), "--every", "2",
                 "--out", str(tmp_path / "out")]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["labelled_by"]["model"] == "default 0.4.0" and len(manifest["files"]) == 4
    with pytest.raises(SystemExit, match="self-label: no frame could be read"):
        main(["datasets", "self-label", str(site / "broken.jpg"), "--out", str(tmp_path / "o2")])


def test_a_site_pack_relabelled_by_the_model_keeps_its_held_out_labels(tmp_path: Path) -> None:
    """How `adapt --self-label` measures self-labelling: training labels the model's, held-out labels a person's."""
    pack = tmp_path / "site"
    person, garbage = CANONICAL_LABELS.index("person"), CANONICAL_LABELS.index("garbage")
    for folder in ("train_s", "val_s"):
        (pack / "images" / folder).mkdir(parents=True)
        (pack / "labels" / folder).mkdir(parents=True)
        cv2.imwrite(str(pack / "images" / folder / "f.jpg"), np.zeros((40, 40, 3), np.uint8))
        (pack / "labels" / folder / "f.txt").write_text(f"{garbage} 0.5 0.5 0.2 0.2\n{person} 0.2 0.2 0.1 0.1\n")
    (pack / "data.yaml").write_text("train: [images/train_s]\nval: [images/val_s]\nnames: {}\n")
    model = FakeBackend(fixed=make_detections([(0, 0, 20, 20, 0.5, "garbage")]))
    out = self_label_pack(pack, tmp_path / "relabelled", model, conf=0.25)
    assert (out / "data.yaml").read_text() == (pack / "data.yaml").read_text()
    assert (out / "images" / "train_s" / "f.jpg").is_file()
    train = (out / "labels" / "train_s" / "f.txt").read_text().splitlines()
    assert train == [f"{person} 0.2 0.2 0.1 0.1", f"{garbage} 0.250000 0.250000 0.500000 0.500000"]
    assert (out / "labels" / "val_s" / "f.txt").read_text() == (pack / "labels" / "val_s" / "f.txt").read_text()
