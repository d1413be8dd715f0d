"""Dataset importers/exporters, checks and merge on tiny hand-made fixtures."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.check import check_dataset, write_card
from datasets.formats import (
    DatasetError,
    canonical,
    read_coco,
    read_cvat_images,
    read_cvat_video,
    read_labelstudio,
    read_voc,
    read_yolo,
    write_coco,
    write_yolo,
)
from datasets.merge import MergeSource, merge
from service.cli import main
from tests.helpers.video import write_video


def textured(seed: int, w: int = 64, h: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(img, np.uint8)


def make_yolo(root: Path, layout: dict[str, list[tuple[str, str]]], names: list[str]) -> Path:
    """layout: split -> [(stem, label text)]; images are random textures."""
    for split, items in layout.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for stem, text in items:
            seed = zlib.crc32(f"{root}{split}{stem}".encode())
            cv2.imwrite(str(root / "images" / split / f"{stem}.png"), textured(seed))
            if text is not None:
                (root / "labels" / split / f"{stem}.txt").write_text(text)
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: " + json.dumps(names) + "\n")
    return root / "data.yaml"


def boxes_of(recs: list) -> list:
    return sorted((r.image.stem, a.label, tuple(round(v, 1) for v in a.box)) for r in recs for a in r.annotations)


def test_yolo_coco_round_trip(tmp_path: Path) -> None:
    data = make_yolo(tmp_path / "src", {"train": [("a", "3 0.5 0.5 0.5 0.5\n"), ("b", "")],
                                        "val": [("c", "4 0.25 0.25 0.5 0.5\n0 0.5 0.5 1 1\n")]},
                     ["street_stall", "uncovered_truck", "truck", "garbage", "garbage_bin"])
    recs = read_yolo(data)
    assert boxes_of(recs) == [("a", "garbage", (16.0, 12.0, 48.0, 36.0)), ("c", "garbage_bin", (0.0, 0.0, 32.0, 24.0)),
                              ("c", "street_stall", (0.0, 0.0, 64.0, 48.0))]
    assert main(["datasets", "export", "--data", str(data), "--format", "coco", "--out", str(tmp_path / "coco")]) == 0
    back = read_coco(tmp_path / "coco" / "val.json", tmp_path / "src")
    assert boxes_of(back) == [b for b in boxes_of(recs) if b[0] == "c"]
    back_yaml, _ = write_yolo(canonical(back, {}), tmp_path / "again")
    assert boxes_of(read_yolo(back_yaml)) == boxes_of(back)


def test_voc_cvat_and_labelstudio_importers(tmp_path: Path) -> None:
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    cv2.imwrite(str(img_dir / "x.jpg"), textured(1, 100, 80))
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "x.xml").write_text(
        "<annotation><filename>x.jpg</filename><size><width>100</width><height>80</height></size>"
        "<object><name>trash</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>50</xmax><ymax>60</ymax></bndbox>"
        "</object></annotation>")
    voc = read_voc(tmp_path / "voc", img_dir)
    assert boxes_of(voc) == [("x", "trash", (10.0, 20.0, 50.0, 60.0))]
    with pytest.raises(DatasetError, match="'trash': 1"):
        canonical(voc, {})
    assert canonical(voc, {"trash": "garbage"})[0].annotations[0].label == "garbage"
    assert canonical(voc, {}, drop_unknown=True)[0].annotations == []
    (tmp_path / "cvat.xml").write_text(
        "<annotations><image id='0' name='x.jpg' width='100' height='80'>"
        "<box label='garbage' xtl='1' ytl='2' xbr='30' ybr='40'/></image></annotations>")
    assert boxes_of(read_cvat_images(tmp_path / "cvat.xml", img_dir)) == [("x", "garbage", (1.0, 2.0, 30.0, 40.0))]
    ls = [{"id": 7, "data": {"image": "/data/upload/1/x.jpg"}, "annotations": [{"result": [
        {"type": "rectanglelabels", "original_width": 100, "original_height": 80,
         "value": {"x": 10, "y": 25, "width": 50, "height": 50, "rectanglelabels": ["barbecue"]}}]}]}]
    (tmp_path / "ls.json").write_text(json.dumps(ls))
    assert boxes_of(read_labelstudio(tmp_path / "ls.json", img_dir)) == [("x", "barbecue", (10.0, 20.0, 60.0, 60.0))]


def test_cvat_video_frames_are_decoded(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", [i * 40 for i in range(30)])
    (tmp_path / "v.xml").write_text(
        "<annotations><track id='0' label='garbage'>"
        + "".join(f"<box frame='{f}' outside='0' xtl='5' ytl='5' xbr='50' ybr='40'/>" for f in range(0, 30, 5))
        + "<box frame='25' outside='1' xtl='5' ytl='5' xbr='50' ybr='40'/></track></annotations>")
    recs = read_cvat_video(tmp_path / "v.xml", video, tmp_path / "frames", step=10)
    assert sorted(r.image.name for r in recs) == ["v_000000.jpg", "v_000010.jpg", "v_000020.jpg"]
    assert all(r.image.exists() and (r.width, r.height) == (160, 96) for r in recs)


def test_check_finds_every_problem_and_writes_a_card(tmp_path: Path) -> None:
    data = make_yolo(tmp_path / "d", {
        "train": [("ok", "0 0.5 0.5 0.2 0.2\n"), ("fields", "0 0.5 0.5\n"), ("cls", "7 0.5 0.5 0.1 0.1\n"),
                  ("out", "0 0.95 0.5 0.2 0.2\n"), ("zero", "0 0.5 0.5 0 0.1\n"), ("nolabel", None)],
        "val": [("v", "1 0.5 0.5 0.3 0.3\n")]}, ["garbage", "garbage_bin"])
    img_train = tmp_path / "d" / "images" / "train"
    cv2.imwrite(str(tmp_path / "d" / "images" / "val" / "dup.png"), cv2.imread(str(img_train / "ok.png")))
    cv2.imwrite(str(tmp_path / "d" / "images" / "val" / "flip.png"), cv2.imread(str(img_train / "cls.png"))[:, ::-1])
    (tmp_path / "d" / "labels" / "val" / "dup.txt").write_text("")
    (tmp_path / "d" / "labels" / "val" / "flip.txt").write_text("")
    (tmp_path / "d" / "images" / "train" / "broken.png").write_bytes(b"")
    (tmp_path / "d" / "labels" / "train" / "broken.txt").write_text("")
    report = check_dataset(data)
    problems = {(Path(p["file"].split(":")[0]).stem, p["problem"].split(" ")[0]) for p in report["problems"]}
    assert problems == {("fields", "3"), ("cls", "class"), ("out", "box"), ("zero", "zero-size"),
                        ("nolabel", "no"), ("broken", "unreadable")}
    assert report["duplicates"]["exact_across_splits"] == 1
    near = {(Path(p["a"]).stem, Path(p["b"]).stem) for p in report["duplicates"]["near_pairs"]}
    assert ("cls", "flip") in near
    assert report["class_balance"]["train"] == {"garbage": 3} and not report["ok"]
    _, md = write_card(report, tmp_path / "card")
    assert "| train | 7 |" in md.read_text()
    assert main(["datasets", "check", str(data), "--out", str(tmp_path / "card2")]) == 4


def test_merge_keeps_near_duplicates_together_and_records_provenance(tmp_path: Path) -> None:
    a = make_yolo(tmp_path / "a", {"train": [(f"a{i}", "0 0.5 0.5 0.2 0.2\n") for i in range(12)], "val": []},
                  ["trash"])
    b = make_yolo(tmp_path / "b", {"train": [(f"b{i}", "0 0.5 0.5 0.2 0.2\n") for i in range(12)], "val": []},
                  ["garbage"])
    # b0 is a flipped copy of a0: they must land in the same split.
    cv2.imwrite(str(tmp_path / "b" / "images" / "train" / "b0.png"),
                cv2.imread(str(tmp_path / "a" / "images" / "train" / "a0.png"))[:, ::-1])
    manifest = merge([MergeSource("a", read_yolo(a), "CC BY 4.0"), MergeSource("b", read_yolo(b), "own")],
                     tmp_path / "m", {"trash": "garbage"}, val_fraction=0.5, seed=1)
    files = {Path(f["original"]).stem: f for f in manifest["files"]}
    assert files["a0"]["group"] == files["b0"]["group"] and files["a0"]["split"] == files["b0"]["split"]
    assert {f["split"] for f in files.values()} == {"train", "val"}
    assert files["a3"]["license"] == "CC BY 4.0" and files["b3"]["source"] == "b"
    assert all((tmp_path / "m" / f["file"]).exists() for f in files.values())
    assert manifest["groups"] == 23


def test_import_cli_assigns_splits(tmp_path: Path) -> None:
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    images = []
    for i in range(10):
        cv2.imwrite(str(img_dir / f"{i}.jpg"), textured(i))
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 48})
    coco = {"images": images, "categories": [{"id": 5, "name": "bin"}],
            "annotations": [{"id": 1, "image_id": 0, "category_id": 5, "bbox": [1, 1, 10, 10]}]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    assert main(["datasets", "import", "--format", "coco", "--src", str(tmp_path / "c.json"), "--images",
                 str(img_dir), "--out", str(tmp_path / "y"), "--names", "bin=garbage_bin", "--val-fraction",
                 "0.3"]) == 0
    recs = read_yolo(tmp_path / "y" / "data.yaml")
    assert len(recs) == 10 and {r.split for r in recs} == {"train", "val"}
    assert boxes_of(recs)[0][1] == "garbage_bin"
    write_coco(recs, tmp_path / "out.json")
    assert len(json.loads((tmp_path / "out.json").read_text())["annotations"]) == 1
