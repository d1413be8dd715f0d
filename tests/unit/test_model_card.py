"""The model card's markdown carries every validation split and the input-size study."""

from __future__ import annotations

import json
from pathlib import Path

from models.export import write_card


def test_card_renders_splits_and_size_study(tmp_path: Path) -> None:
    card = {
        "name": "m", "imgsz": 480,
        "metrics": {"real": {"map50": 0.7, "map50_95": 0.4, "classes": {
            "garbage": {"precision": 0.8, "recall": 0.6, "ap50": 0.7, "ap50_95": 0.4, "instances": 9}}}},
        "input_size_study": {
            "what": "AP50 by size",
            "ap50": {"at 320": {"real": {"garbage": 0.61}}, "at 640": {"real": {"garbage": 0.72}, "extra": {"x": 1}}},
            "ms per frame": {"320 px": "5 / 3"},
            "reading": "640 finds more",
        },
    }
    write_card(tmp_path, card)
    md = (tmp_path / "card.md").read_text()
    assert "## Validation: real (480 px input)" in md and "| garbage | 0.8 | 0.6 | 0.7 | 0.4 | 9 |" in md
    assert "| split | class | at 320 | at 640 |" in md and "| real | garbage | 0.61 | 0.72 |" in md
    assert "- ms per frame: 320 px: 5 / 3" in md and "640 finds more" in md
    assert json.loads((tmp_path / "card.json").read_text()) == card


def test_card_renders_the_leave_one_source_out_runs_and_the_recipe_study(tmp_path: Path) -> None:
    loso = {"what": "each source left out",
            "runs": {"coco": {"bags": {"scores": {"detector": {"garbage": 0.15}, "product": {"garbage": 0.16},
                                                  "detector_heaps": {"garbage": 0.6},
                                                  "product_heaps": {"garbage": 0.58}},
                                       "epochs": 12, "train_seconds": 100.0},
                              "road": {"scores": {"detector": {"garbage": 0.2}, "product": {"garbage": 0.2}},
                                       "epochs": 12, "train_seconds": 90.0}}},  # scored before heaps were
            "recipe_study": {"what": "one change at a time",
                             "rows": [{"left_out": "bags", "recipe": "+ more CN, 12 epochs", "ap50": 0.21,
                                       "epochs": 12, "train_seconds": 5000, "measured": "stop 28"}],
                             "reading": "more data helps"}}
    write_card(tmp_path, {"name": "m", "leave_one_source_out": loso})
    md = (tmp_path / "card.md").read_text()
    assert "| coco | bags | garbage | 0.15 | 0.16 | 0.6 | 0.58 | 12 | 100.0 |" in md
    assert "| coco | road | garbage | 0.2 | 0.2 | – | – | 12 | 90.0 |" in md
    assert "| bags | + more CN, 12 epochs | 0.21 | 12 | 5000 | stop 28 |" in md
    assert md.index("one change at a time") < md.index("more data helps")


def test_card_renders_the_scores_on_sources_no_model_was_trained_on(tmp_path: Path) -> None:
    loso = {"runs": {"coco": {"bags": {"scores": {"detector": {"garbage": 0.15}, "product": {"garbage": 0.16}}}}},
            "unseen_sources": {"what": "a new source, scored whole",
                               "rows": [{"source": "misc", "model": "default 0.4.0", "trained_on": "all",
                                         "images": 495, "boxes": 1024, "ap50_detector": 0.187,
                                         "ap50_product": 0.186, "measured": "stop 29"}],
                               "reading": "as low as leaving a source out"}}
    write_card(tmp_path, {"name": "m", "leave_one_source_out": loso})
    md = (tmp_path / "card.md").read_text()
    assert "| misc | default 0.4.0 | all | 495 | 1024 | 0.187 | 0.186 | stop 29 |" in md
    assert md.index("a new source, scored whole") < md.index("as low as leaving a source out")
