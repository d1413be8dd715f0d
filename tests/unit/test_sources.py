"""Sources: real timestamps, key-frame decoding and clear errors on bad files."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipelines.sources import SourceError, expand_inputs, probe, read_frames
from tests.helpers.video import write_video


def test_timestamps_come_from_pts_not_frame_index(tmp_path: Path) -> None:
    pts = [0, 120, 360, 400, 1000, 1040, 3000]  # irregular: a camera that stalls
    frames = list(read_frames(write_video(tmp_path / "vfr.mkv", pts)))
    assert [round(f.ts, 3) for f in frames] == [p / 1000 for p in pts]


def test_keyframe_mode_decodes_only_key_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "gop.mp4", [i * 40 for i in range(50)], gop=10)
    all_frames = list(read_frames(path, "all"))
    keys = list(read_frames(path, "keyframes"))
    assert len(all_frames) == 50
    assert len(keys) == 5 and all(f.keyframe for f in keys)
    assert [round(f.ts, 2) for f in keys] == [0.0, 0.4, 0.8, 1.2, 1.6]
    info = probe(path)
    assert (info.width, info.height) == (160, 96) and info.duration_s == pytest.approx(2.0, abs=0.1)


def test_images_are_single_frames(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    cv2.imwrite(str(p), np.zeros((20, 30, 3), np.uint8))
    (f,) = list(read_frames(p))
    assert f.ts == 0.0 and f.image.shape == (20, 30, 3)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("empty.mp4", b"", "empty file (0 bytes)"),
    ("text.mp4", b"this is not a video at all\n" * 50, "not a readable video"),
    ("bad.jpg", b"\xff\xd8 not really a jpeg", "not a readable image"),
])
def test_bad_files_raise_one_line_errors(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(SourceError, match=re.escape(message)) as info:
        list(read_frames(p))
    assert str(p) in str(info.value) and "\n" not in str(info.value)


def test_truncated_mp4_is_an_error(tmp_path: Path) -> None:
    src = write_video(tmp_path / "full.mp4", [i * 40 for i in range(30)])
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    with pytest.raises(SourceError):
        list(read_frames(cut))


def test_corrupt_middle_of_a_stream_skips_damage_and_continues(tmp_path: Path) -> None:
    src = write_video(tmp_path / "full.ts", [i * 40 for i in range(100)], size=(320, 192))
    data = bytearray(src.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 4000] = bytes(4000)  # zero a chunk of packets in the middle
    bad = tmp_path / "bad.ts"
    bad.write_bytes(bytes(data))
    frames = list(read_frames(bad))
    assert 50 <= len(frames) <= 100
    ts = [f.ts for f in frames]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)


def test_expand_inputs_reports_each_bad_input(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    good = write_video(tmp_path / "dir" / "a.mp4", [0, 40])
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "emptydir").mkdir()
    files, errors = expand_inputs([str(tmp_path / "dir"), str(tmp_path / "notes.txt"), str(tmp_path / "missing.mp4"),
                                   str(tmp_path / "emptydir"), str(tmp_path / "dir" / "*.mp4"),
                                   str(tmp_path / "*.mkv")])
    assert files == [good]
    msgs = sorted(e["error"] for e in errors)
    assert len(msgs) == 4
    assert any("unsupported file type '.txt'" in m for m in msgs)
    assert "no such file or folder" in msgs
    assert "folder has no video or image files" in msgs
    assert "pattern matches no video or image files" in msgs


def test_opencv_fallback_keeps_timestamps(tmp_path: Path) -> None:
    from pipelines.sources import _read_frames_opencv

    path = write_video(tmp_path / "cv.mp4", [i * 40 for i in range(50)], gop=10)
    frames = list(_read_frames_opencv(path, "all"))
    assert len(frames) == 50 and frames[10].ts == pytest.approx(0.4, abs=0.02)
    sparse = list(_read_frames_opencv(path, "keyframes"))
    assert [round(f.ts, 1) for f in sparse] == [0.0, 1.0]


def test_frames_are_converted_to_bgr_only_when_looked_at(tmp_path: Path) -> None:
    from pipelines.sinks.evidence import EvidenceRecorder

    frames = list(read_frames(write_video(tmp_path / "lazy.mp4", [i * 40 for i in range(25)])))
    f = frames[3]
    assert f.shape == (96, 160) and f._image is None  # size known, nothing converted yet
    moved = f.at(7.5)
    assert moved.ts == 7.5 and moved._image is None and moved.index == f.index
    img = moved.image
    assert img.shape == (96, 160, 3) and img.dtype == np.uint8 and moved.image is img  # converted once
    assert np.array_equal(img, f.image)  # the same pixels as the original frame
    # Evidence asks for pixels only for the frames it keeps (4 per second of this 25 fps clip).
    asked = []
    rec = EvidenceRecorder(tmp_path / "ev", fast_fps=4, slow_fps=1)
    for fr in frames:
        rec.observe(fr.ts, lambda fr=fr: asked.append(fr.index) or fr.image)
    assert asked == [0, 7, 14, 21]  # every 0.25 s or more, on a 40-ms grid
