"""The service config: one bad camera entry never stops the others; a bad file stops the service."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.config import ConfigError
from service.settings import load_service_config

GOOD = """\
auth:
  tokens: [{name: admin, role: admin, env: ADMIN_T}]
voice:
  speakers: [{name: pole, type: rtp, host: 127.0.0.1, port: 5004}]
cameras:
  - id: ok
    source: rtsp://127.0.0.1/ok
  - id: bad-fps
    source: rtsp://127.0.0.1/a
    detect_fps: 0
  - id: bad-speaker
    source: rtsp://127.0.0.1/b
    zones:
      - id: z
        polygon: [[0, 0], [1, 0], [1, 1]]
        warnings: {speakers: [nowhere]}
"""


def test_bad_cameras_are_set_aside_with_their_line(tmp_path: Path) -> None:
    p = tmp_path / "service.yaml"
    p.write_text(GOOD)
    cfg, errors = load_service_config(p)
    assert [c.id for c in cfg.cameras] == ["ok"]
    assert len(errors) == 2
    assert re.search(r"service\.yaml:10: cameras\.1\.detect_fps: Input should be greater than 0", errors[0])
    assert re.search(r"service\.yaml:11: cameras\.2: camera bad-speaker zone z: unknown speakers \['nowhere'\]",
                     errors[1])


def test_a_bad_file_still_stops_the_service(tmp_path: Path) -> None:
    p = tmp_path / "service.yaml"
    p.write_text(GOOD.replace("auth:", "auth:\n  extra: 1"))
    with pytest.raises(ConfigError, match=r"service\.yaml:2: auth\.extra: Extra inputs"):
        load_service_config(p)
