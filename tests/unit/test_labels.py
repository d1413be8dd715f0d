"""Event label loaders: ActivityNet JSON and CVAT for video XML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datasets.labels import LabelError, load_event_labels, load_yolo_frames

CVAT = """<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
<meta><task><size>250</size><source>cam3.mp4</source></task></meta>
<track id="0" label="garbage">
  <box frame="25" outside="0" xtl="1" ytl="2" xbr="30" ybr="40"/>
  <box frame="100" outside="0" xtl="1" ytl="2" xbr="30" ybr="40"/>
  <box frame="101" outside="1" xtl="1" ytl="2" xbr="30" ybr="40"/>
</track>
<track id="1" label="vendor"><box frame="200" outside="0" xtl="1" ytl="2" xbr="3" ybr="4"/></track>
</annotations>"""


def test_cvat_tracks_become_events(tmp_path: Path) -> None:
    p = tmp_path / "a.xml"
    p.write_text(CVAT)
    (clip,) = load_event_labels(p, {"vendor": "street_stall"})
    assert clip.name == "cam3.mp4" and clip.duration == 10.0
    assert [(s.label, s.start, s.end) for s in clip.segments] == [("garbage", 1.0, 4.04), ("street_stall", 8.0, 8.04)]
    assert clip.frames[25] == [("garbage", (1.0, 2.0, 30.0, 40.0))] and 101 not in clip.frames
    with pytest.raises(LabelError, match="label 'vendor' is not a violation"):
        load_event_labels(p)


def test_activitynet_errors_name_the_entry(tmp_path: Path) -> None:
    p = tmp_path / "l.json"
    p.write_text(json.dumps({"database": {"c.mp4": {"annotations": [{"segment": [5, 2], "label": "garbage"}]}}}))
    with pytest.raises(LabelError, match=r"c\.mp4 annotation 0: segment ends before it starts"):
        load_event_labels(p)
    p.write_text("{not json")
    with pytest.raises(LabelError, match="cannot read labels"):
        load_event_labels(p)
    p.write_text(json.dumps({"database": {"c.mp4": {"annotations": [{"segment": [1, 2], "label": "garbage",
                                                                       "box": [1, 2, 3, 4]}], "tags": ["night"]}}}))
    (clip,) = load_event_labels(p)
    assert clip.tags == ["night"] and clip.segments[0].box == (1.0, 2.0, 3.0, 4.0)


def test_context_tracks_give_frame_boxes_only_and_yolo_frames(tmp_path: Path) -> None:
    p = tmp_path / "t.xml"
    p.write_text("<annotations><track id='0' label='truck'><box frame='3' outside='0' xtl='0' ytl='0' xbr='10' "
                 "ybr='10'/></track></annotations>")
    (clip,) = load_event_labels(p)
    assert clip.segments == [] and clip.frames == {3: [("truck", (0.0, 0.0, 10.0, 10.0))]}
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "000010.txt").write_text("3 0.5 0.5 0.5 0.5\n")
    assert load_yolo_frames(folder, 100, 50) == {10: [("garbage", (25.0, 12.5, 75.0, 37.5))]}
    (folder / "000011.txt").write_text("42 0.5 0.5 0.5 0.5\n")
    with pytest.raises(LabelError, match="canonical class id"):
        load_yolo_frames(folder, 100, 50)
