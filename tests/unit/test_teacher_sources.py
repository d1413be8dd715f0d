"""Teacher labels merged with a source's own, the shipped sources file, the safe unpickler, the teacher cache.

(External sources rebuilt from git snapshots are in tests/integration/test_external_sources.py.)"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import pytest

from datasets.external import load_sources, repo_digest
from datasets.pseudo import correct_teacher, merge_teacher, to_yolo_lines
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


def test_corrections_relabel_or_drop_the_teacher_box_they_name_and_nothing_else() -> None:
    teacher = [("truck", 0.6, (0.1, 0.1, 0.3, 0.3)),  # a van: car
               ("truck", 0.5, (0.5, 0.5, 0.7, 0.7)),  # wheeled bins: dropped
               ("truck", 0.7, (0.52, 0.5, 0.72, 0.7)),  # a real truck beside them, 0.02 off: kept
               ("person", 0.9, (0.8, 0.1, 0.9, 0.4))]
    fixes = [("truck", 0.2, 0.2, "car"), ("truck", 0.6, 0.6, "none"), ("truck", 0.9, 0.9, "bus"),
             ("car", 0.85, 0.25, "person")]  # the last two name no teacher box of theirs
    fixed, matched = correct_teacher(teacher, fixes)
    assert matched == 2
    assert fixed == [("car", 0.6, (0.1, 0.1, 0.3, 0.3)), ("truck", 0.7, (0.52, 0.5, 0.72, 0.7)),
                     ("person", 0.9, (0.8, 0.1, 0.9, 0.4))]
    merged = merge_teacher([], fixed, frozenset())
    assert [n for n, _ in merged.boxes] == ["car", "truck", "person"]


def test_the_shipped_teacher_corrections_are_valid_and_a_bad_row_is_a_one_line_error(tmp_path: Path) -> None:
    from datasets.teacher_fixes import fixes_by_image, read_teacher_fixes

    rows = read_teacher_fixes()
    assert len(rows) == 108 and {r.teacher for r in rows} == {"truck", "umbrella", "chair"}
    assert {s: sum(map(len, images.values())) for s, images in fixes_by_image().items()} == \
        {"garbage_roadside_in": 8, "garbage_street_cn": 16, "garbage_street_cn_more": 40, "vehicles_atl_cctv": 39,
         "street_stalls_aerial": 1, "vehicles_highway_id": 4}
    bad = tmp_path / "fixes.csv"
    for row, problem in (("s,a.jpg,truck,0.5,0.5,van", "label not one of"), ("s,a.jpg,truck,1.5,0.5,car", "0..1"),
                         ("s,a.jpg,truck,x,0.5,car", "could not convert")):
        bad.write_text(f"# comment\nsource,image,teacher,cx,cy,label\ns,b.jpg,truck,0.1,0.1,none\n{row}\n")
        with pytest.raises(ValueError, match=rf"row 3: expected source,image,teacher,cx,cy,label \(.*{problem}"):
            read_teacher_fixes(bad)
