"""Source kinds: a camera's ``source`` picks its kind by scheme, or names it with ``type``; a file is read once
(batch) or stands in for a camera with a clock that keeps running across loops."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pipelines.source_kinds import (
    FileSource,
    FileSourceConfig,
    HttpSourceConfig,
    RtspSourceConfig,
    StreamSource,
    open_source,
    source_config,
)
from tests.helpers.video import write_video


@pytest.mark.parametrize(("text", "kind"), [
    ("rtsp://10.0.0.5/stream1", RtspSourceConfig), ("rtsps://nvr/ch1", RtspSourceConfig),
    ("http://cam/mjpeg", HttpSourceConfig), ("https://cam/live.m3u8", HttpSourceConfig),
    ("clips/street.mp4", FileSourceConfig), ("file:///data/street.mp4", FileSourceConfig),
])
def test_a_source_string_picks_its_kind(text: str, kind: type) -> None:
    cfg = source_config(text, live=True, read_timeout_s=3.0)
    assert isinstance(cfg, kind)
    assert isinstance(open_source(cfg), FileSource if kind is FileSourceConfig else StreamSource)
    if isinstance(cfg, RtspSourceConfig | HttpSourceConfig):
        assert cfg.read_timeout_s == 3.0
    else:
        assert cfg.loop and cfg.path == Path(text.removeprefix("file://"))


def test_a_mapping_names_its_kind_and_unknown_schemes_are_refused() -> None:
    assert source_config({"type": "rtsp", "url": "rtsp://x/1", "open_timeout_s": 2}) == RtspSourceConfig(
        url="rtsp://x/1", open_timeout_s=2)
    with pytest.raises(ValueError, match="unknown source scheme 'gb28181://'"):
        source_config("gb28181://34020000001320000001")
    with pytest.raises(ValueError):
        source_config({"type": "rtsp", "url": "http://not-rtsp"})


def test_a_file_is_read_once_or_looped_with_a_running_clock(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", [0, 40, 80, 120])
    once = open_source(source_config(str(video)))
    assert [round(f.ts, 2) for f in once.frames("all", threading.Event())] == [0.0, 0.04, 0.08, 0.12]
    looped = open_source(source_config(str(video), live=True))
    stop = threading.Event()
    seen = []
    for f in looped.frames("all", stop):
        seen.append(round(f.ts, 2))
        if len(seen) == 8:
            stop.set()
            break
    assert seen == [0.0, 0.04, 0.08, 0.12, 0.16, 0.2, 0.24, 0.28]  # the second loop continues the clock
