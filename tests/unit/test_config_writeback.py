"""API camera changes written back into the service YAML: comments, other entries and bad entries kept."""

from __future__ import annotations

from pathlib import Path

import yaml

from service.settings import write_camera_back

TEXT = """\
# city service
server: {port: 8080}  # loopback only
cameras:
  - id: a
    name: A street   # keep me
    source: rtsp://10.0.0.1/a
  - id: broken
    detect_fps: -3    # an invalid entry the service set aside: it must survive the rewrite
  - id: c
    source: rtsp://10.0.0.1/c
"""


def test_change_add_and_remove_keep_comments_and_other_entries(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"
    path.write_text(TEXT)
    write_camera_back(path, "a", {"id": "a", "name": "A street", "source": "rtsp://10.0.0.1/a",
                                  "zones": [{"id": "kerb", "polygon": [[0, 0.5], [1, 0.5], [1, 1]]}]})
    text = path.read_text()
    assert "# keep me" in text and "# city service" in text and "# loopback only" in text
    assert "detect_fps: -3" in text
    doc = yaml.safe_load(text)
    assert [c["id"] for c in doc["cameras"]] == ["a", "broken", "c"]
    assert doc["cameras"][0]["zones"][0]["id"] == "kerb"
    assert (tmp_path / "service.yaml.bak").read_text() == TEXT
    write_camera_back(path, "d", {"id": "d", "source": "rtsp://10.0.0.1/d"})
    write_camera_back(path, "c", None)
    doc = yaml.safe_load(path.read_text())
    assert [c["id"] for c in doc["cameras"]] == ["a", "broken", "d"]
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file
