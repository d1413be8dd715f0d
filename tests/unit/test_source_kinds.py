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


def test_decoder_threads_reach_the_decoder_of_every_kind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The service's ``ingest.decode_threads`` (default 1) is what each source's decoder is opened with; a mapping
    may give its own; batch files keep FFmpeg's choice (0)."""
    import pipelines.sources as sources
    from service.settings import IngestConfig

    used: list[int] = []
    stop = threading.Event()

    def fake_decode(container: object, name: str, mode: str, threads: int, live: bool, *a: object,
                    **k: object) -> object:
        used.append(threads)
        stop.set()  # a looped file would otherwise start its next replay
        return iter(())

    monkeypatch.setattr(sources, "_decode", fake_decode)
    monkeypatch.setattr(sources, "_connect", lambda url, o, r: object())
    video = write_video(tmp_path / "v.mp4", [0, 40])
    threads = IngestConfig().decode_threads
    assert threads == 1
    for source in ("rtsp://10.0.0.5/stream1", "http://cam/mjpeg", str(video),
                   {"type": "rtsp", "url": "rtsp://x/1", "decode_threads": 4}):
        stop.clear()
        list(open_source(source_config(source, live=True, decode_threads=threads)).frames("all", stop))
    list(open_source(source_config(str(video))).frames("all", threading.Event()))
    assert used == [1, 1, 1, 4, 0]
