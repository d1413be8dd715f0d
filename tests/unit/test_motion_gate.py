"""Motion gating: the detector is skipped on sampled frames that did not change, refreshed on a timer,
and run at once when something appears; a stationary violation is still confirmed."""

from __future__ import annotations

from pathlib import Path

from detector.rules import RuleSettings
from pipelines.config import CameraConfig
from pipelines.runner import CameraPipeline, build_pipeline, run_source
from pipelines.sinks.store import CaseStore
from pipelines.sources import read_frames
from tests.helpers.video import CountingBackend, still_street_video


def _run(tmp: Path, video: Path, gate: bool) -> tuple[CountingBackend, CameraPipeline, CaseStore]:
    cam = CameraConfig(id="c", detect_fps=2, motion_gate=gate, motion_refresh_s=5)
    store = CaseStore(tmp / f"gate{gate}.db")
    backend = CountingBackend()
    pipe = build_pipeline(cam, RuleSettings(dwell_s={"garbage": 3}, gap_tolerance_s=2), backend.names, store,
                          str(video))
    run_source(read_frames(video), pipe, backend)  # type: ignore[arg-type]
    return backend, pipe, store


def test_gating_skips_unchanged_frames_and_still_confirms_a_stationary_violation(tmp_path: Path) -> None:
    video = still_street_video(tmp_path / "still.mp4", 30, square_from=12.0)
    plain, _, plain_store = _run(tmp_path, video, gate=False)
    gated, pipe, store = _run(tmp_path, video, gate=True)
    assert plain.calls == 60  # 30 s at 2 samples per second
    # Still street: one call, then one per 5 s refresh; the square's arrival triggers a call at once.
    assert gated.calls <= 10 and pipe.stats.frames_gated == 60 - gated.calls
    assert pipe.stats.frames_inferred == gated.calls
    cases = store.cases()
    assert [c.violation for c in cases] == [c.violation for c in plain_store.cases()] == ["garbage"]
    # Confirmed as quickly as without gating: the change was seen on the first sampled frame showing it.
    assert abs(cases[0].start_s - plain_store.cases()[0].start_s) < 0.01
    assert abs(cases[0].confirmed_s - plain_store.cases()[0].confirmed_s) < 0.01


def test_gating_is_off_by_default() -> None:
    assert CameraConfig(id="c").motion_gate is False
