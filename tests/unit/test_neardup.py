"""Same-scene search: a sheared, rescaled, re-exposed copy of a place is found; another place is not."""

from __future__ import annotations

import numpy as np

from datasets.neardup import affine_inliers, features, file_number, same_scenes
from tests.helpers.data import augmented_copy, textured_scene


def test_a_sheared_copy_shows_the_same_scene_and_another_place_does_not() -> None:
    ref = {"val_000010": features("000010_jpg", textured_scene(1)),
           "val_000500": features("000500_jpg", textured_scene(2))}
    imgs = {"copy": features("000011_jpg.rf.x", augmented_copy(textured_scene(1))),
            "other": features("000900_jpg.rf.y", textured_scene(3))}
    assert affine_inliers(imgs["copy"], ref["val_000010"]) >= 15
    assert affine_inliers(imgs["other"], ref["val_000010"]) < 15
    found = same_scenes(imgs, ref)
    assert set(found) == {"copy"}
    assert found["copy"][0] == "val_000010"


def test_an_image_without_corners_matches_nothing() -> None:
    flat = features("1_jpg", np.full((100, 100, 3), 127, np.uint8))
    assert flat.desc is None
    assert same_scenes({"flat": flat}, {"r": features("2_jpg", textured_scene(4))}) == {}
    assert same_scenes({"flat": flat}, {}) == {}


def test_file_numbers() -> None:
    assert file_number("000123_jpg.rf.ab12") == 123
    assert file_number("street.jpg") is None
