"""External sources rebuilt from git snapshots (real git repositories made here, read with ``git archive``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from datasets.external import load_sources, materialize_all, original_of, repo_digest, yolo_box
from datasets.yolo import DatasetError, YoloDataset
from detector.types import CANONICAL_LABELS
from tests.helpers.data import augmented_copy, textured_scene


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def _snapshot(tmp_path: Path) -> tuple[Path, str]:
    """A git repository holding a tiny Roboflow-style export with augmented copies."""
    repo = tmp_path / "src" / "owner" / "vehicles"
    ds = repo / "export"
    for split, stems in (("train", ["a_jpg.rf.1", "a_jpg.rf.2", "b_jpg.rf.3"]), ("valid", ["c_jpg.rf.4"])):
        (ds / split / "images").mkdir(parents=True)
        (ds / split / "labels").mkdir(parents=True)
        for stem in stems:
            cv2.imwrite(str(ds / split / "images" / f"{stem}.jpg"), np.zeros((16, 16, 3), np.uint8))
            rows = "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n2 0.1 0.1 0.1 0.1\n"
            (ds / split / "labels" / f"{stem}.txt").write_text(rows)
    (ds / "data.yaml").write_text("names: ['bike', 'truck', 'dog']\n")
    (ds / "README.dataset.txt").write_text("License: CC BY 4.0\n")
    _git(repo.parent, "init", "-q", "vehicles")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "data")
    return tmp_path / "src", _git(repo, "rev-parse", "HEAD")


def _sources(tmp_path: Path, commit: str, repo: str = "owner/vehicles") -> Path:
    spec = {"excluded_sha256": [repo_digest("Bad/Repo")], "sources": [{
        "name": "veh", "repo": repo, "commit": commit, "path": "export", "license": "CC BY 4.0",
        "license_file": "README.dataset.txt", "attribution": "test", "view": "road camera",
        "names": {"bike": "motorcycle", "truck": "truck"}, "splits": {"train": ["train"], "val": ["valid"]},
        "one_per_original": True}]}
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_materialize_rebuilds_a_source_from_its_pinned_commit(tmp_path: Path) -> None:
    mirror, commit = _snapshot(tmp_path)
    (mirror / "owner" / "vehicles" / "export" / "data.yaml").write_text("names: ['moved']\n")  # later, uncommitted
    [manifest] = materialize_all(mirror, tmp_path / "out", sources_file=_sources(tmp_path, commit))
    counts = manifest["counts"]
    assert counts == {"train": {"images": 2, "motorcycle": 2, "truck": 2}, "val": {"images": 1, "motorcycle": 1,
                                                                                  "truck": 1}}
    ds = YoloDataset.load(tmp_path / "out" / "veh" / "data.yaml")
    items = list(ds.items("train"))
    assert [original_of(i.image.stem) for i in items] == ["a_jpg", "b_jpg"]
    assert [b[0] for b in items[0].boxes] == [CANONICAL_LABELS.index("motorcycle"), CANONICAL_LABELS.index("truck")]
    assert "CC BY 4.0" in (tmp_path / "out" / "veh" / "README.md").read_text()


def test_excluded_repositories_and_missing_snapshots_are_refused(tmp_path: Path) -> None:
    _mirror, commit = _snapshot(tmp_path)
    with pytest.raises(DatasetError, match="excluded"):
        load_sources(_sources(tmp_path, commit, repo="bad/repo"))
    with pytest.raises(DatasetError, match="no git snapshot"):
        materialize_all(tmp_path / "nowhere", tmp_path / "out", sources_file=_sources(tmp_path, commit))


def test_a_source_extending_a_shared_folder_skips_its_images_and_scenes_of_its_val(tmp_path: Path) -> None:
    """More images of a source already in ../shared/data: those already there are skipped, and so is a training
    copy of a place its validation split shows; the manifest says which and why."""
    repo = tmp_path / "src" / "owner" / "garbage"
    for split in ("train", "valid"):
        (repo / split / "images").mkdir(parents=True)
        (repo / split / "labels").mkdir(parents=True)
    photos = {("train", "000001_jpg.rf.a"): textured_scene(11), ("train", "000001_jpg.rf.b"): textured_scene(11),
              ("train", "000002_jpg.rf.c"): textured_scene(12),  # already in the shared folder
              ("train", "000051_jpg.rf.d"): augmented_copy(textured_scene(13)),  # the place of val 000050
              ("train", "000090_jpg.rf.e"): textured_scene(14), ("valid", "000050_jpg.rf.f"): textured_scene(13)}
    for (split, stem), img in photos.items():
        cv2.imwrite(str(repo / split / "images" / f"{stem}.jpg"), img)
        (repo / split / "labels" / f"{stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n2 0.3 0.3 0.1 0.1\n")
    (repo / "data.yaml").write_text("names: ['garbage', 'garbage_bin', 'overflow']\n")
    (repo / "README.dataset.txt").write_text("License: CC BY 4.0\n")
    (repo / "weights.pt").write_text("a large file\n")
    _git(repo.parent, "init", "-q", "garbage")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "data")
    blob = _git(repo, "rev-parse", "HEAD:weights.pt")  # a snapshot without its large files, as fetch gives
    (repo / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    shared = tmp_path / "shared"
    (shared / "garbage_cn").mkdir(parents=True)
    (shared / "garbage_cn" / "manifest.json").write_text('[{"original": "000002_jpg", "split": "train"}]')
    spec = {"excluded_sha256": [], "sources": [{
        "name": "garbage_cn_more", "repo": "owner/garbage", "commit": _git(repo, "rev-parse", "HEAD"), "path": ".",
        "license": "CC BY 4.0", "license_file": "README.dataset.txt", "attribution": "test", "view": "street",
        "names": {"garbage": "garbage", "overflow": "overflowing_bin"}, "splits": {"train": ["train"]},
        "one_per_original": True, "extends": "garbage_cn", "drop_same_scene_as": ["valid"]}]}
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(spec))

    [manifest] = materialize_all(tmp_path / "src", tmp_path / "out", sources_file=tmp_path / "sources.yaml",
                                 data=shared)
    assert manifest["counts"] == {"train": {"images": 2, "garbage": 2, "overflowing_bin": 2}}
    assert manifest["extends"] == "garbage_cn"
    skipped = manifest["skipped"]["train"]  # type: ignore[index]
    assert skipped["already_in_garbage_cn"] == 1
    assert list(skipped["same_scene"]) == ["000051_jpg.rf.d.jpg"]
    assert skipped["same_scene"]["000051_jpg.rf.d.jpg"][0] == "000050_jpg.rf.f.jpg"
    ds = YoloDataset.load(tmp_path / "out" / "garbage_cn_more" / "data.yaml")
    assert [original_of(i.image.stem) for i in ds.items("train")] == ["000001_jpg", "000090_jpg"]
    assert list(ds.items("val")) == []

    with pytest.raises(DatasetError, match="extends garbage_cn"):
        materialize_all(tmp_path / "src", tmp_path / "out", sources_file=tmp_path / "sources.yaml",
                        data=tmp_path / "nowhere")


def test_a_segmentation_polygon_becomes_its_bounding_box() -> None:
    assert yolo_box("3 0.5 0.5 0.2 0.1".split()) == "0.5 0.5 0.2 0.1"
    assert yolo_box("0 0.1 0.2 0.5 0.2 0.3 0.6".split()) == "0.300000 0.400000 0.400000 0.400000"
    assert yolo_box("0 -0.1 0.2 0.5 0.2 0.3 1.4".split()) == "0.250000 0.600000 0.500000 0.800000"  # clipped
    assert yolo_box("0 0.1 0.2 0.1 0.2 0.1 0.2".split()) is None  # no area
    assert yolo_box("0 0.1 0.2 0.5".split()) is None and yolo_box("0 a b c d e f".split()) is None
