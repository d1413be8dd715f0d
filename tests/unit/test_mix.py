"""datasets mix: a site's pack with a replay sample of a training pack, the folder a site fine-tune trains on."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.mix import first_k, pack_images, pack_names, write_mix
from datasets.yolo import DatasetError
from service.cli import main

NAMES = ["garbage", "person"]


def _pack(root: Path, folders: dict[str, int]) -> Path:
    header = "".join(f"  {i}: {n}\n" for i, n in enumerate(NAMES))
    (root / "images").mkdir(parents=True)
    (root / "data.yaml").write_text(f"train: [images/train_a]\nval: [images/val_a]\nnames:\n{header}")
    for folder, n in folders.items():
        (root / "images" / folder).mkdir()
        (root / "labels" / folder).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / "images" / folder / f"{folder}__{i}.jpg"), np.zeros((8, 8, 3), np.uint8))
            (root / "labels" / folder / f"{folder}__{i}.txt").write_text(f"0 0.5 0.5 0.{i + 1} 0.2\n")
    return root


def test_smaller_site_sets_are_part_of_larger_ones(tmp_path: Path) -> None:
    images = [tmp_path / f"{i}.jpg" for i in range(20)]
    five, ten = first_k(images, 5, seed=3), first_k(list(reversed(images)), 10, seed=3)
    assert set(five) < set(ten)
    assert first_k(images, 5, seed=4) != five
    assert first_k(images, 0, seed=3) == []
    with pytest.raises(DatasetError, match="21 images"):
        first_k(images, 21, seed=3)


def test_pack_images_by_role_and_source(tmp_path: Path) -> None:
    pack = _pack(tmp_path / "p", {"train_a": 2, "train_b": 3, "val_a": 1})
    assert pack_names(pack) == NAMES
    assert len(pack_images(pack, "train")) == 5
    assert [p.parent.name for p in pack_images(pack, "train", ["b"])] == ["train_b"] * 3
    with pytest.raises(DatasetError, match="train_c"):
        pack_images(pack, "train", ["c"])


def test_split_trains_on_site_and_replay_and_scores_the_site(tmp_path: Path) -> None:
    site = _pack(tmp_path / "site", {"train_s": 3, "val_s": 2})
    replay = _pack(tmp_path / "replay", {"train_r": 4})
    unlabelled = replay / "images" / "train_r" / "train_r__9.jpg"
    cv2.imwrite(str(unlabelled), np.zeros((8, 8, 3), np.uint8))  # a background image without a label file
    data, held = write_mix(pack_images(site, "train")[:2], pack_images(site, "val"),
                             [*pack_images(replay, "train")[:1], unlabelled], NAMES, tmp_path / "split")
    assert data.read_text().splitlines()[:2] == ["train: [images/site, images/replay]", "val: images/site_val"]
    assert held.read_text().splitlines()[:2] == ["train: images/site_val", "val: images/site_val"]
    assert data.read_text().endswith("names:\n  0: garbage\n  1: person\n")
    split = tmp_path / "split"
    assert len(list((split / "images" / "site").iterdir())) == 2
    assert len(list((split / "images" / "site_val").iterdir())) == 2
    labels = {p.name: p.read_text() for p in (split / "labels" / "replay").iterdir()}
    assert labels == {"train_r__train_r__0.txt": "0 0.5 0.5 0.1 0.2\n", "train_r__train_r__9.txt": ""}
    # A few site images among many replay images: the site listed more than once.
    data, _ = write_mix(pack_images(site, "train")[:2], [], pack_images(replay, "train"), NAMES, tmp_path / "x2",
                        site_repeat=3)
    assert data.read_text().splitlines()[0] == "train: [images/site, images/site, images/site, images/replay]"
    with pytest.raises(DatasetError, match="at least 1"):
        write_mix([], [], [], NAMES, tmp_path / "x0", site_repeat=0)
    # The start alone (k = 0): nothing to train on, the site still scored.
    data, _ = write_mix([], pack_images(site, "val"), [], NAMES, tmp_path / "k0")
    assert data.read_text().startswith("train: []\n")


def test_mix_command_writes_the_folder_and_refuses_a_pack_of_other_classes(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    site = _pack(tmp_path / "site", {"train_s": 3, "val_s": 2})
    replay = _pack(tmp_path / "replay", {"train_a": 4, "train_b": 4})
    assert main(["datasets", "mix", "--site", str(site), "--replay", str(replay), "--replay-sources", "b",
                 "--replay-images", "3", "--site-images", "2", "--out", str(tmp_path / "mix")]) == 0
    assert len(list((tmp_path / "mix" / "images" / "site").iterdir())) == 2
    assert {p.name.split("__")[0] for p in (tmp_path / "mix" / "images" / "replay").iterdir()} == {"train_b"}
    assert len(list((tmp_path / "mix" / "images" / "replay").iterdir())) == 3
    # Mixed again into the same folder with fewer site images: only the new mix is there, the images stay.
    assert main(["datasets", "mix", "--site", str(site), "--replay", str(replay), "--replay-images", "2",
                 "--site-images", "1", "--out", str(tmp_path / "mix")]) == 0
    assert [len(list((tmp_path / "mix" / d / "site").iterdir())) for d in ("images", "labels")] == [1, 1]
    assert len(list((site / "images" / "train_s").iterdir())) == 3
    (replay / "data.yaml").write_text("train: [images/train_a]\nval: [images/train_a]\nnames:\n  0: garbage\n")
    assert main(["datasets", "mix", "--site", str(site), "--replay", str(replay), "--out", str(tmp_path / "m2")]) == 1
    assert "name their classes differently" in caplog.text
    assert not (tmp_path / "m2").exists()
    unscored = _pack(tmp_path / "unscored", {"train_s": 3})
    assert main(["datasets", "mix", "--site", str(unscored), "--replay", str(site), "--out", str(tmp_path / "m3")]) == 1
    assert "no validation images" in caplog.text
