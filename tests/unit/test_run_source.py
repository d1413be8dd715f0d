"""The batch frame loop: frames decoded ahead in a thread, samples detected a few at a time, the detector fed
frames made small straight from the decoder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from detector.rules import RuleSettings
from pipelines.config import CameraConfig
from pipelines.runner import build_pipeline, run_source
from pipelines.sinks.store import CaseStore
from pipelines.sources import Frame, SourceError, read_frames
from pipelines.stages import Sample
from tests.helpers.video import CountingBackend, still_street_video, write_h264


def red_square_clip(path: Path) -> Path:
    frames = []
    for _ in range(10):
        img = np.full((720, 1280, 3), 110, np.uint8)
        img[400:480, 800:960] = (40, 40, 220)
        frames.append(img)
    return write_h264(path, frames, 5)


def test_the_detector_gets_the_frame_made_small_and_boxes_come_back_in_frame_pixels(tmp_path: Path) -> None:
    frame = next(iter(read_frames(red_square_clip(tmp_path / "big.mp4"))))
    sample = Sample(frame)
    small, side = sample.detector_input(320, same_scale=False)
    assert small.shape == (180, 320, 3) and side == 320
    assert frame._image is None  # the full-size picture was never made
    (found,) = CountingBackend().detect([small])
    box = sample.to_frame(found, 320).xyxy[0]
    assert box == pytest.approx([800, 400, 960, 480], abs=5)
    # The same through a converted frame (OpenCV resizing): the same input, within rounding.
    converted = Frame(frame.image, frame.ts)
    assert np.abs(Sample(converted).detector_input(320, False)[0].astype(int) - small).mean() < 3


def _pipeline(tmp_path: Path, backend: CountingBackend) -> tuple:
    cam = CameraConfig(id="c", detect_fps=2)
    store = CaseStore(tmp_path / "cases.db")
    return build_pipeline(cam, RuleSettings(dwell_s={"garbage": 2.0}), backend.names, store, "src"), store


def test_read_ahead_and_batches_find_the_same_cases_as_one_at_a_time(tmp_path: Path) -> None:
    clip = still_street_video(tmp_path / "s.mp4", 8, square_from=2.0)
    found = []
    for batch, ahead in ((1, 0), (4, 8)):
        backend = CountingBackend()
        pipe, store = _pipeline(tmp_path / f"{batch}", backend)
        stats = run_source(read_frames(clip), pipe, backend, batch=batch, read_ahead=ahead)
        found.append(([(c.violation, c.start_s, c.confirmed_s) for c in store.cases()], stats.frames_inferred,
                      backend.calls))
        store.close()
    assert found[0] == found[1] and found[0][0]  # a garbage case, the same samples, the same calls


def test_a_decoder_failure_behind_the_read_ahead_is_raised_and_the_case_still_ends(tmp_path: Path) -> None:
    clip = still_street_video(tmp_path / "s.mp4", 6, square_from=0.0)

    def failing() -> Iterator[Frame]:
        for fr in read_frames(clip):
            if fr.ts > 4.0:
                raise SourceError("s.mp4: read failed (injected)")
            yield fr

    backend = CountingBackend()
    pipe, store = _pipeline(tmp_path, backend)
    with pytest.raises(SourceError, match="injected"):
        run_source(failing(), pipe, backend, batch=4, read_ahead=4)
    (case,) = store.cases()  # confirmed before the failure, ended by the pipeline's finish
    assert case.violation == "garbage" and not case.active


def test_a_clip_read_far_ahead_still_covers_the_case_in_real_time(tmp_path: Path) -> None:
    # Key frames every second, decoded key frames only, 8 of them read ahead and 4 detected at a time: the
    # packets reach the evidence ring 12 s ahead of the rules, as long as its whole-packet window.
    rng = np.random.default_rng(0)
    base = rng.normal(110, 8, (180, 320, 3)).clip(0, 255).astype(np.uint8)
    frames = []
    for i in range(300):  # 30 s at 10 fps, the red square from 10 s on
        img = base.copy()
        if i >= 100:
            img[100:130, 200:240] = (40, 40, 220)
        frames.append(img)
    clip = write_h264(tmp_path / "k.mp4", frames, 10, {"g": "10", "keyint_min": "10", "sc_threshold": "0"})
    from pipelines.sinks.evidence import EvidenceRecorder

    backend = CountingBackend()
    cam = CameraConfig(id="c", detect_fps=1, decode="keyframes")
    store = CaseStore(tmp_path / "cases.db")
    rec = EvidenceRecorder(tmp_path / "ev", long_s=30, pre_s=3, post_s=3)
    pipe = build_pipeline(cam, RuleSettings(dwell_s={"garbage": 3.0}), backend.names, store, "k", rec, tmp_path)
    run_source(read_frames(clip, "keyframes", on_packet=lambda pa, pk: pipe.packet("detect", pa, pk)), pipe,
               backend, batch=4, read_ahead=8)
    (case,) = store.cases()
    assert case.start_s == pytest.approx(10.0) and case.confirmed_s == pytest.approx(13.0)
    import av

    with av.open(str(tmp_path / "ev" / f"{case.id}.mp4")) as c:
        times = [float(f.time or 0) for f in c.decode(video=0)]
    # From 3 s before the first sighting to 3 s after the confirmation, every frame (10 fps), not key frames.
    assert times[0] == 0.0 and 9.0 <= times[-1] <= 9.6 and len(times) >= 90
    store.close()


def test_one_cameras_unreadable_frame_does_not_cost_the_others_their_batch(tmp_path: Path) -> None:
    from pipelines.runner import detect_and_process

    backend = CountingBackend()
    good, store = _pipeline(tmp_path / "g", backend)
    bad, store_b = _pipeline(tmp_path / "b", backend)
    frame = Frame(np.full((180, 320, 3), 110, np.uint8), 0.0)
    sample = good.admit(frame)
    broken = bad.admit(Frame(np.full((180, 320, 3), 110, np.uint8), 0.0))
    assert sample is not None and broken is not None

    def fail(*_: object) -> None:
        raise ValueError("unreadable frame")

    bad.detector_input = fail  # type: ignore[method-assign]
    failed: list[str] = []
    sent = detect_and_process(backend, [(bad, broken), (good, sample)], lambda p, e: failed.append(str(e)))
    assert sent == 1 and failed == ["unreadable frame"] and good.stats.frames_inferred == 1
    store.close()
    store_b.close()
