"""Leave-one-source-out splits: a folder that extends a source is left out with it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from pipelines.evaluation.loso import source_group, write_split


def _source(data: Path, name: str, splits: dict[str, int], extends: str | None = None) -> None:
    for split, n in splits.items():
        (data / name / "images" / split).mkdir(parents=True)
        (data / name / "labels" / split).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(data / name / "images" / split / f"{i}.jpg"), np.zeros((8, 8, 3), np.uint8))
            (data / name / "labels" / split / f"{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (data / name / "data.yaml").write_text("train: images/train\nval: images/val\nnames:\n  0: garbage\n")
    if extends:
        (data / name / "manifest.json").write_text(json.dumps({"name": name, "extends": extends}))


def test_leaving_out_a_source_leaves_out_what_extends_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _source(data, "cn", {"train": 2, "val": 1})
    _source(data, "in", {"train": 2, "val": 1})
    _source(data, "cn_more", {"train": 3, "val": 0}, extends="cn")
    sources = ["cn", "in", "cn_more"]
    assert [source_group(data, s) for s in sources] == ["cn", "in", "cn"]

    out = write_split(data, sources, "cn", ["garbage"], tmp_path / "without_cn")
    assert out.read_text().splitlines()[:2] == ["train: [images/train_in]", "val: [images/val_in]"]
    assert not (out.parent / "images" / "train_cn_more").exists()
    assert len(list((out.parent / "images" / "heldout_cn").iterdir())) == 1

    out = write_split(data, sources, "in", ["garbage"], tmp_path / "without_in")
    assert out.read_text().splitlines()[:2] == ["train: [images/train_cn, images/train_cn_more]",
                                                "val: [images/val_cn]"]
    assert len(list((out.parent / "images" / "train_cn_more").iterdir())) == 3
