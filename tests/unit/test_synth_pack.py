"""Synthetic scenes and training packs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from datasets.pack import Source, build_pack
from datasets.synth import barbecue, render_scene, write_yolo_dataset
from datasets.yolo import DatasetError, YoloDataset, label_path
from detector.types import CANONICAL_LABELS


@pytest.mark.parametrize("focus", ["street_stall", "barbecue", "truck", "garbage", "bin"])
def test_render_scene_boxes_lie_in_the_image(focus: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(3):
        img, boxes, _tags = render_scene(rng, 320, 192, focus)
        assert img.shape == (192, 320, 3) and img.dtype == np.uint8
        for name, (x1, y1, x2, y2) in boxes:
            assert name in CANONICAL_LABELS
            assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 192


def test_smoke_plume_has_a_box() -> None:
    objs = barbecue(np.random.default_rng(0), 0.0, 10.0, smoke=True)
    pts = [o.points() for o in objs if o.soft]
    assert pts and pts[0].shape[1] == 3 and len(pts[0]) >= 2


def test_yolo_dataset_round_trip(tmp_path: Path) -> None:
    data = write_yolo_dataset(tmp_path / "syn", n=14, seed=1, width=320, height=192)
    ds = YoloDataset.load(data)
    assert ds.names[0] == "street_stall" and ds.canonical_map() == {i: i for i in range(len(CANONICAL_LABELS))}
    items = list(ds.items("train")) + list(ds.items("val"))
    assert len(items) == 14
    for it in items:
        img = cv2.imread(str(it.image))
        assert img.shape[:2] == (192, 320)
        for _c, cx, cy, w, h in it.boxes:
            assert 0 <= cx - w / 2 + 1e-6 and cx + w / 2 <= 1 + 1e-6 and 0 <= cy - h / 2 + 1e-6


def test_a_finished_render_is_reused_and_a_changed_or_unfinished_one_is_not(tmp_path: Path) -> None:
    from datasets.synth import STAMP_FILE

    out = tmp_path / "syn"
    write_yolo_dataset(out, n=3, seed=1, width=160, height=96)
    marker = out / "images" / "train" / "marker.jpg"  # a file no render writes: survives only a reuse
    marker.write_bytes(b"x")
    write_yolo_dataset(out, n=3, seed=1, width=160, height=96)
    assert marker.exists()
    write_yolo_dataset(out, n=3, seed=2, width=160, height=96)  # other settings: rendered again, alone
    assert json.loads((out / STAMP_FILE).read_text())["seed"] == 2
    assert sorted(p.name[:7] for p in (out / "images").rglob("*.jpg")) == ["synth_2"] * 3
    (out / STAMP_FILE).unlink()  # as a render stopped midway leaves it: never reused
    first = sorted((out / "images" / "train").glob("synth_2_*.jpg"))[0]
    first.unlink()
    write_yolo_dataset(out, n=3, seed=2, width=160, height=96)
    assert first.exists() and (out / STAMP_FILE).exists()


def test_label_path_and_bad_label(tmp_path: Path) -> None:
    assert label_path(Path("/d/images/train/a.jpg")) == Path("/d/labels/train/a.txt")
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5\n")
    (tmp_path / "data.yaml").write_text("train: images\nval: images\nnames: [overflow]\n")
    ds = YoloDataset.load(tmp_path / "data.yaml")
    with pytest.raises(DatasetError, match=r"a\.txt:1: expected 5 fields"):
        list(ds.items("train"))
    with pytest.raises(DatasetError, match="not canonical"):
        ds.canonical_map()
    assert ds.canonical_map({"overflow": "overflowing_bin"}) == {0: 5}


def test_pack_fits_budget_and_keeps_provenance(tmp_path: Path) -> None:
    data = write_yolo_dataset(tmp_path / "syn", n=20, seed=2, width=320, height=192)
    manifest = build_pack([Source("synthetic", data, "project's own", {})], tmp_path / "pack", max_mb=0.4,
                          max_side=160)
    size = sum(p.stat().st_size for p in (tmp_path / "pack").rglob("*") if p.is_file())
    assert size <= 0.4 * 2**20
    spec = yaml.safe_load((tmp_path / "pack" / "data.yaml").read_text())
    assert spec["names"][3] == "garbage" and spec["val"] == ["images/val_synthetic"]
    assert (tmp_path / "pack" / "val_synthetic.yaml").exists()
    on_disk = json.loads((tmp_path / "pack" / "manifest.json").read_text())
    assert on_disk["dataset_sha256"] == manifest["dataset_sha256"] and len(on_disk["files"]) == 20
    assert all(f["source"] == "synthetic" and Path(f["original"]).exists() for f in on_disk["files"])
    with pytest.raises(ValueError, match="does not fit"):
        build_pack([Source("synthetic", data, "x", {})], tmp_path / "tiny", max_mb=0.001, max_side=160)


def test_webp_pack_is_smaller_and_readable(tmp_path: Path) -> None:
    data = write_yolo_dataset(tmp_path / "syn", n=12, seed=5, width=320, height=192)
    src = [Source("synthetic", data, "project's own", {})]
    jpg = build_pack(src, tmp_path / "jpg", max_mb=5, max_side=320, qualities=(60,))
    webp = build_pack(src, tmp_path / "webp", max_mb=5, max_side=320, qualities=(60,), fmt="webp")
    assert webp["format"] == "webp" and webp["quality"] == 60 and jpg["format"] == "jpg"
    files = sorted((tmp_path / "webp" / "images").rglob("*.webp"))
    assert len(files) == 12
    size = {k: sum(p.stat().st_size for p in (tmp_path / k / "images").rglob("*") if p.is_file())
            for k in ("jpg", "webp")}
    assert size["webp"] < size["jpg"]
    img = cv2.imread(str(files[0]))
    assert img is not None and img.shape[1] == 320
    labels = tmp_path / "webp" / "labels" / files[0].parent.name / f"{files[0].stem}.txt"
    assert labels.exists()
    with pytest.raises(ValueError, match="unknown image format"):
        build_pack(src, tmp_path / "bad", max_mb=5, fmt="png")


def test_datasets_pack_cli(tmp_path: Path) -> None:
    from service.cli import main

    data_root = tmp_path / "data"
    write_yolo_dataset(data_root / "fake_real", n=7, seed=4, width=320, height=192)
    assert main(["datasets", "pack", "--data", str(data_root), "--out", str(tmp_path / "pk"), "--max-mb", "1",
                 "--synth", "7", "--max-side", "160"]) == 0
    manifest = json.loads((tmp_path / "pk" / "manifest.json").read_text())
    assert {s["name"] for s in manifest["sources"]} == {"fake_real", "synthetic"}
    assert len(manifest["files"]) == 14
    # A small source listed twice keeps its share of each epoch; a source the pack lacks is a clear error.
    assert main(["datasets", "pack", "--data", str(data_root), "--out", str(tmp_path / "rep"), "--max-mb", "1",
                 "--max-side", "160", "--synth", "0", "--repeat", "fake_real=2"]) == 0
    train = yaml.safe_load((tmp_path / "rep" / "data.yaml").read_text())["train"]
    assert train == ["images/train_fake_real", "images/train_fake_real"]
    assert json.loads((tmp_path / "rep" / "manifest.json").read_text())["train_repeats"] == {"fake_real": 2}
    for bad, says in (("smoke=2", "a source of the pack"), ("fake_real=0", "at least 1"), ("fake_real", "SOURCE=N")):
        with pytest.raises(SystemExit, match=says):
            main(["datasets", "pack", "--data", str(data_root), "--out", str(tmp_path / "bad"), "--max-mb", "1",
                  "--max-side", "160", "--synth", "0", "--repeat", bad])
    # A training split cut to fit a transfer limit: evenly spaced images, the validation split untouched.
    assert main(["datasets", "pack", "--data", str(data_root), "--out", str(tmp_path / "cap"), "--max-mb", "1",
                 "--max-side", "160", "--synth", "0", "--train-cap", "fake_real=2"]) == 0
    full = {s["name"]: s["counts"] for s in manifest["sources"]}["fake_real"]
    capped = json.loads((tmp_path / "cap" / "manifest.json").read_text())
    counts = capped["sources"][0]["counts"]
    assert full["train"]["images"] > 2 and counts["train"]["images"] == 2
    assert counts["val"]["images"] == full["val"]["images"] and capped["train_caps"] == {"fake_real": 2}
    for bad, says in (("smoke=2", "a source of the pack"), ("fake_real=0", "at least 1")):
        with pytest.raises(SystemExit, match=says):
            main(["datasets", "pack", "--data", str(data_root), "--out", str(tmp_path / "bad"), "--max-mb", "1",
                  "--max-side", "160", "--synth", "0", "--train-cap", bad])


def test_trucks_labelled_uncovered_go_into_the_pack_as_uncovered_truck(tmp_path: Path) -> None:
    from datasets.truck_loads import TRUCK_LOADS, uncovered_trucks

    data = write_yolo_dataset(tmp_path / "syn", n=30, seed=3, width=320, height=192)
    truck, other = CANONICAL_LABELS.index("truck"), CANONICAL_LABELS.index("uncovered_truck")
    items = list(YoloDataset.load(data).items("train"))
    image, line = next((it.image, i) for it in items for i, b in enumerate(it.boxes) if b[0] == truck)
    loads = tmp_path / "loads.csv"
    loads.write_text(f"# a comment\nsource,image,line,load\nsyn,{image.name},{line},uncovered\nsyn,x.jpg,0,covered\n")
    assert uncovered_trucks(loads) == {"syn": frozenset({(image.name, line)})}
    manifest = build_pack([Source("syn", data, "x", {}, None, uncovered_trucks(loads)["syn"])], tmp_path / "pack",
                          max_mb=5, max_side=160)
    assert manifest["sources"][0]["uncovered_from_load_labels"] == 1  # type: ignore[index]
    plain = build_pack([Source("syn", data, "x", {})], tmp_path / "plain", max_mb=5, max_side=160)
    assert plain["dataset_sha256"] != manifest["dataset_sha256"]  # same images, one box relabelled: another pack
    packed = tmp_path / "pack" / "labels" / "train_syn" / f"syn__{image.stem}.txt"
    before = label_path(image).read_text().splitlines()
    after = packed.read_text().splitlines()
    assert len(after) == len(before)
    changed = [(b, a) for b, a in zip(before, after, strict=True) if b.split()[0] != a.split()[0]]
    assert [(int(b.split()[0]), int(a.split()[0])) for b, a in changed] == [(truck, other)]
    # A load label on a box that is not a truck is an error in the labels, said clearly.
    not_truck = next(i for i, b in enumerate(next(it for it in items if it.image == image).boxes) if b[0] != truck)
    with pytest.raises(ValueError, match="not a truck"):
        build_pack([Source("syn", data, "x", {}, None, frozenset({(image.name, not_truck)}))], tmp_path / "bad",
                   max_mb=5, max_side=160)
    # The project's own load labels: one sand tipper in 9 frames of vehicles_atl_cctv.
    assert {k: len(v) for k, v in uncovered_trucks(TRUCK_LOADS).items()} == {"vehicles_atl_cctv": 9}


def test_teacher_corrections_reach_the_pack_and_are_counted(tmp_path: Path) -> None:
    data = write_yolo_dataset(tmp_path / "syn", n=6, seed=4, width=320, height=192)
    image = next(iter(YoloDataset.load(data).items("train"))).image

    def teacher(_: object) -> list[tuple[str, float, tuple[float, float, float, float]]]:
        return [("truck", 0.6, (0.0, 0.0, 0.06, 0.06)), ("truck", 0.6, (0.9, 0.9, 0.96, 0.96))]

    fixes = {image.name: [("truck", 0.03, 0.03, "car"), ("truck", 0.5, 0.5, "none")]}
    source = Source("syn", data, "x", {}, frozenset({"garbage"}), teacher_fixes=fixes)  # the teacher adds vehicles
    manifest = build_pack([source], tmp_path / "pack", max_mb=5, max_side=160, teacher=teacher)
    src = manifest["sources"][0]  # type: ignore[index]
    assert src["teacher_fixes"] == {"applied": 1, "unmatched": 1}
    assert "syn 1 applied, 1 matching no teacher box" in (tmp_path / "pack" / "DATASET_CARD.md").read_text()
    lines = (tmp_path / "pack" / "labels" / "train_syn" / f"syn__{image.stem}.txt").read_text().splitlines()
    added = [ln.split()[0] for ln in lines if ln.split()[1] in ("0.030000", "0.930000")]
    assert sorted(added) == sorted([str(CANONICAL_LABELS.index("car")), str(CANONICAL_LABELS.index("truck"))])


def test_a_malformed_load_label_row_is_a_one_line_error(tmp_path: Path) -> None:
    from datasets.truck_loads import read_truck_loads

    loads = tmp_path / "loads.csv"
    loads.write_text("# comment\nsource,image,line,load\ns,a.jpg,0,covered\ns,b.jpg,first,uncovered\n")
    with pytest.raises(ValueError, match=r"row 3: expected source,image,line,load"):
        read_truck_loads(loads)
    loads.write_text("source,image,load\ns,a.jpg,covered\n")
    with pytest.raises(ValueError, match=r"row 2: expected"):
        read_truck_loads(loads)
