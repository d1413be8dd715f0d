"""Copy-paste: real objects pasted onto street frames, labelled where they show, clear of the frame's objects."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.paste import Cut, PasteSettings, covered, cut_objects, harmonise, place, write_pasted
from datasets.yolo import DatasetError, YoloDataset
from pipelines.evaluation.loso import objects_from, write_split

GREEN = (0, 200, 0)


def _source(root: Path, name: str, labels: str, colour: tuple[int, int, int], boxes: list[str],
            images: int = 2, size: tuple[int, int] = (160, 120)) -> Path:
    """A YOLO source: ``images`` frames of one colour with a white square at each labelled box."""
    for split in ("train", "val"):
        (root / name / "images" / split).mkdir(parents=True)
        (root / name / "labels" / split).mkdir(parents=True)
        for i in range(images):
            w, h = size
            img = np.full((h, w, 3), colour, np.uint8)
            for row in boxes:
                _, cx, cy, bw, bh = map(float, row.split())
                cv2.rectangle(img, (int((cx - bw / 2) * w), int((cy - bh / 2) * h)),
                              (int((cx + bw / 2) * w) - 1, int((cy + bh / 2) * h) - 1), (255, 255, 255), -1)
            cv2.imwrite(str(root / name / "images" / split / f"{i}.png"), img)
            (root / name / "labels" / split / f"{i}.txt").write_text("".join(f"{b}\n" for b in boxes))
    (root / name / "data.yaml").write_text(f"train: images/train\nval: images/val\nnames:\n{labels}")
    return root / name / "data.yaml"


def test_objects_are_cut_from_their_class_and_size(tmp_path: Path) -> None:
    src = _source(tmp_path, "piles", "  0: garbage\n  1: garbage_bin\n", (50, 50, 50),
                  ["0 0.5 0.5 0.5 0.5", "1 0.2 0.2 0.2 0.2", "0 0.9 0.9 0.05 0.05"])
    cuts = cut_objects(src, ["garbage"], PasteSettings())
    # the bin is another class, the 8x6 px speck is under min_side: one garbage object per training image
    assert [(c.label, c.pixels.shape) for c in cuts] == [("garbage", (60, 80, 3))] * 2
    assert (cuts[0].pixels == 255).all()


def test_a_pasted_object_is_labelled_where_it_shows() -> None:
    rng = np.random.default_rng(1)
    frame = np.full((200, 300, 3), GREEN, np.uint8)
    cut = Cut(np.full((40, 40, 3), 255, np.uint8), "garbage")
    got = place(frame, cut, rng, PasteSettings(height=(0.3, 0.3), harmonise=(0.0, 0.0)))
    assert got is not None
    image, box = got
    assert frame[0, 0].tolist() == list(GREEN)  # the input frame is not changed
    x0, y0, x1, y1 = box
    changed = np.nonzero(np.abs(image.astype(int) - frame.astype(int)).sum(axis=2) > 300)  # over half-opaque
    assert y1 - y0 >= 0.8 * 60 * 0.8 and y0 >= 0.45 * 200 - 60  # about the height asked, on the ground
    inside = image[y0:y1, x0:x1]
    assert inside[(y1 - y0) // 2, (x1 - x0) // 2].min() > 200  # the object shows at the box's centre
    # where the object shows over half, it is inside its box
    assert changed[0].min() >= y0 - 2 and changed[0].max() <= y1 + 2
    assert changed[1].min() >= x0 - 2 and changed[1].max() <= x1 + 2


def test_harmonise_moves_colour_towards_the_spot() -> None:
    obj = np.full((10, 10, 3), 250, np.uint8)
    spot = np.full((10, 10, 3), 50, np.uint8)
    assert harmonise(obj, spot, 0.0).mean() == pytest.approx(250, abs=2)
    half = harmonise(obj, spot, 0.5).mean()
    assert 100 < half < 200
    assert harmonise(obj, spot, 1.0).mean() == pytest.approx(50, abs=3)


def test_write_pasted_keeps_clear_of_the_frames_objects(tmp_path: Path) -> None:
    objects = _source(tmp_path, "piles", "  0: garbage\n", (40, 40, 40), ["0 0.5 0.5 0.5 0.5"], images=3)
    # backgrounds: a truck filling the frame's left half, from the ground up
    streets = _source(tmp_path, "streets", "  0: truck\n", (90, 120, 150), ["0 0.25 0.5 0.5 1.0"], images=3,
                      size=(320, 240))
    data = write_pasted(tmp_path / "pasted", [objects], [streets], ["garbage"], n=20, seed=3)
    ds = YoloDataset.load(data)
    assert ds.names == {0: "garbage"}
    items = list(ds.items("train"))
    assert len(items) == 20 and len(list(ds.items("val"))) == 1
    boxes = [b for it in items for b in it.boxes]
    assert boxes and all(c == 0 for c, *_ in boxes)
    truck = (0, 0, 160, 240)
    for it in items:
        assert 1 <= len(it.boxes) <= 3 or not it.boxes  # objects that found no room are left out
        px = [(round((cx - w / 2) * 320), round((cy - h / 2) * 240), round((cx + w / 2) * 320),
               round((cy + h / 2) * 240)) for _, cx, cy, w, h in it.boxes]
        assert all(covered(b, truck) <= 0.3 for b in px)
        assert all(covered(a, b) <= 0.05 for i, a in enumerate(px) for b in px[i + 1:])
        assert cv2.imread(str(it.image)).shape == (240, 320, 3)
    manifest = json.loads((data.parent / "manifest.json").read_text())
    assert manifest["objects"] == ["piles"] and manifest["backgrounds"] == ["streets"] and manifest["cuts"] == 3
    assert manifest["license"] == "pasted from: piles: unknown; streets: unknown"  # no README or manifest here
    # same seed, same frames
    again = write_pasted(tmp_path / "again", [objects], [streets], ["garbage"], n=20, seed=3)
    assert [it.boxes for it in YoloDataset.load(again).items("train")] == [it.boxes for it in items]


def test_nothing_to_paste_is_a_clear_error(tmp_path: Path) -> None:
    objects = _source(tmp_path, "bins", "  0: garbage_bin\n", (40, 40, 40), ["0 0.5 0.5 0.5 0.5"])
    streets = _source(tmp_path, "streets", "  0: truck\n", (90, 120, 150), [])
    with pytest.raises(DatasetError, match="no garbage objects to cut"):
        write_pasted(tmp_path / "out", [objects], [streets], ["garbage"], n=2)
    with pytest.raises(DatasetError, match="at least one frame"):
        write_pasted(tmp_path / "out", [objects], [streets], ["garbage"], n=0)


def test_leaving_out_a_source_leaves_out_what_was_pasted_from_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cn = _source(data, "cn", "  0: garbage\n", (40, 40, 40), ["0 0.5 0.5 0.5 0.5"])
    _source(data, "india", "  0: garbage\n", (60, 40, 40), ["0 0.5 0.5 0.5 0.5"])
    streets = _source(tmp_path, "streets", "  0: truck\n", (90, 120, 150), [], size=(320, 240))
    pasted = write_pasted(data / "pasted_cn", [cn], [streets], ["garbage"], n=4)
    sources = ["cn", "india", str(pasted)]
    assert objects_from(data, str(pasted)) == ["cn"] and objects_from(data, "india") == []
    out = write_split(data, sources, "cn", ["garbage"], tmp_path / "without_cn")
    assert out.read_text().splitlines()[0] == "train: [images/train_india]"
    out = write_split(data, sources, "india", ["garbage"], tmp_path / "without_india")
    assert out.read_text().splitlines()[0] == "train: [images/train_cn, images/train_pasted_cn]"
