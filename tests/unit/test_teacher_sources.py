"""Teacher labels merged with a source's own, external sources rebuilt from git snapshots, the safe unpickler."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from datasets.external import load_sources, materialize_all, original_of, repo_digest
from datasets.pseudo import merge_teacher, to_yolo_lines
from datasets.yolo import DatasetError, YoloDataset
from detector.types import CANONICAL_LABELS
from models.pretrained import CheckpointError, _Unpickler, load_coco_checkpoint


def test_source_labels_win_and_the_teacher_adds_only_confident_context() -> None:
    own = [("truck", (0.1, 0.1, 0.5, 0.5)), ("person", (0.6, 0.6, 0.7, 0.9))]
    teacher = [
        ("car", 0.9, (0.12, 0.1, 0.5, 0.52)),  # the source's truck, seen by COCO as a car: dropped
        ("person", 0.9, (0.8, 0.6, 0.9, 0.9)),  # the source labels people itself: dropped
        ("umbrella", 0.8, (0.55, 0.4, 0.75, 0.6)),  # added
        ("umbrella", 0.9, (0.1, 0.12, 0.48, 0.5)),  # over the source's truck: the source knows better
        ("chair", 0.4, (0.0, 0.8, 0.1, 0.95)),  # below the chair threshold: dropped
        ("dining table", 0.7, (0.2, 0.7, 0.4, 0.9)),  # added, renamed
        ("dog", 0.99, (0.5, 0.5, 0.6, 0.6)),  # not a context class
        ("bus", 0.6, (0.6, 0.0, 0.9, 0.3)),  # a vehicle elsewhere: added
    ]
    merged = merge_teacher(own, teacher, frozenset({"truck", "person"}))
    assert [n for n, _ in merged.boxes] == ["truck", "person", "umbrella", "dining_table", "bus"]
    assert merged.added == {"umbrella": 1, "dining_table": 1, "bus": 1}
    lines = to_yolo_lines([("bus", (0.6, -0.1, 1.2, 0.3)), ("car", (0.5, 0.5, 0.5, 0.6))])
    assert lines == [f"{CANONICAL_LABELS.index('bus')} 0.800000 0.150000 0.400000 0.300000"]  # clipped; empty dropped


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


def test_the_shipped_sources_file_is_valid_and_excludes_the_acceptance_repositories() -> None:
    spec = load_sources()
    assert len(set(spec.excluded_sha256)) == 6 and all(len(h) == 64 for h in spec.excluded_sha256)
    assert not {repo_digest(s.repo) for s in spec.sources} & set(spec.excluded_sha256)
    assert all(s.license and s.attribution for s in spec.sources)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def test_the_checkpoint_unpickler_refuses_anything_off_its_allowlist(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not on the allowlist"):
        _Unpickler(io.BytesIO(pickle.dumps(_Evil()))).load()
    stub = _Unpickler(io.BytesIO(b"cmodels.yolo\nModel\n)\x81}b.")).load()  # YOLOv5's class: a plain container
    assert type(stub).__name__ == "Model" and not hasattr(stub, "forward")
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="sha256"):
        load_coco_checkpoint(fake)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_coco_checkpoint(tmp_path / "missing.pt")


def test_the_teacher_cache_round_trips_and_a_broken_or_foreign_one_is_ignored(tmp_path: Path) -> None:
    from datasets.pack import _read_teacher_cache, _write_teacher_cache

    cache = tmp_path / "teacher.json"
    boxes = {"ab12": [("person", 0.9, (0.1, 0.2, 0.3, 0.4))]}
    _write_teacher_cache(cache, "coco 640", boxes)
    assert _read_teacher_cache(cache, "coco 640") == boxes and not (tmp_path / "teacher.json.tmp").exists()
    assert _read_teacher_cache(cache, "coco 320") == {}  # another teacher's boxes are not reused
    cache.write_text('{"teacher": "coco 640", "boxes": {"ab12": [[')  # a crash mid-write of an older version
    assert _read_teacher_cache(cache, "coco 640") == {}
    assert _read_teacher_cache(tmp_path / "missing.json", "coco 640") == {}
