"""Site adaptation study: held-out images of a training scene are not scored; the table of runs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipelines.evaluation.adapt import gauge_name, table_lines, unseen_scenes


def test_held_out_images_of_a_training_scene_are_not_scored(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scene, other = (rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(2))
    scene = np.asarray(cv2.GaussianBlur(scene, (3, 3), 0), np.uint8)
    paths = {}
    for name, img in {"train__10.jpg": scene, "val__11.jpg": np.ascontiguousarray(scene[12:, 20:]),
                      "val__90.jpg": cv2.GaussianBlur(other, (3, 3), 0)}.items():
        paths[name] = tmp_path / name
        cv2.imwrite(str(paths[name]), img)
    kept, found = unseen_scenes([paths["val__11.jpg"], paths["val__90.jpg"]], [paths["train__10.jpg"]])
    assert kept == [paths["val__90.jpg"]]
    assert found["val__11.jpg"][0] == "train__10.jpg"


def test_table_has_a_row_per_run_in_order_of_site_images() -> None:
    def run(k: int, ap: float) -> dict[str, object]:
        return {"k": k, "replay": 800 if k else 0, "epochs": 4 if k else 0, "train_seconds": 10.0 * k,
                "scores": {"site": {"detector": {"garbage": ap}, "product": {"garbage": ap + 0.01}},
                           "gauges": {"smoke": {"smoke": 0.7, "fire": 0.9}}}}

    lines = table_lines({"k50": run(50, 0.3), "k0": run(0, 0.2)})
    assert lines[0] == ("| site images | replay images | epochs | train s | site garbage detector | "
                        "site garbage product | smoke fire | smoke smoke |")
    assert lines[2] == "| 0 | 0 | 0 | 0.0 | 0.2 | 0.21 | 0.9 | 0.7 |"
    assert lines[3].startswith("| 50 | 800 | 4 | 500.0 | 0.3 |")
    # The teacher's context boxes on the site are not the site's labels: the table can leave them out.
    assert "site garbage detector" not in table_lines({"k0": run(0, 0.2)}, site_classes=["bin"])[0]


def test_a_gauge_is_named_by_its_folder_or_its_file() -> None:
    assert gauge_name(Path("../shared/data/smoke/data.yaml")) == "smoke"
    assert gauge_name(Path("runs/misc_all.yaml")) == "misc_all"
