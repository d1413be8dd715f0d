"""Graceful overload: every camera's detection rate is cut by one share when the shared detector falls behind,
and grows back when it idles."""

from __future__ import annotations

import pytest

from pipelines.config import CameraConfig, ZoneConfig
from pipelines.stages import LoadGovernor, Sampler


def test_no_decision_before_a_window_then_pressure_cuts_and_idle_recovers() -> None:
    g = LoadGovernor(window_s=2.0)
    assert g.observe(0.0, 0.0, 0, 8, 0) == 1.0
    assert g.observe(1.0, 1.0, 0, 8, 0) == 1.0  # half a window: nothing decided
    assert g.observe(2.0, 1.0, 0, 8, 3) == pytest.approx(0.75)  # frames were dropped
    assert g.observe(4.0, 1.5, 6, 8, 3) == pytest.approx(0.675)  # queues three quarters full
    assert g.observe(6.0, 1.99, 2, 8, 3) == pytest.approx(0.675)  # busy all the time but keeping up: hold
    assert g.observe(8.0, 1.6, 4, 8, 3) == pytest.approx(0.675)  # room, but the queues are half full: hold
    assert g.observe(10.0, 1.0, 1, 8, 3) == pytest.approx(0.775)  # room: grows back a step per window
    for k in range(10):
        g.observe(12.0 + 2 * k, 0.2, 0, 8, 3)
    assert g.scale == 1.0


def test_drops_cut_the_rates_to_the_share_the_detector_served() -> None:
    g = LoadGovernor(window_s=2.0)
    g.observe(0.0, 0.0, 0, 64, 0, 0)
    # A burst: 3 of 64 samples dropped, the detector idle a third of the window. The rates lose 5 %, not 25 %,
    # and are whole again after one window with room.
    assert g.observe(2.0, 1.3, 0, 64, 3, 61) == pytest.approx(61 / 64)
    assert g.observe(4.0, 1.3, 0, 64, 3, 125) == 1.0
    # A detector serving a third of what is asked: one window cuts by ``decrease`` at most (a quarter).
    assert g.observe(6.0, 2.0, 60, 64, 43, 145) == pytest.approx(0.75)
    assert g.observe(8.0, 2.0, 40, 64, 50, 166) == pytest.approx(0.75 * 0.75)  # 21 served, 7 dropped
    assert g.observe(10.0, 2.0, 30, 64, 51, 196) == pytest.approx(0.75 * 0.75 * 30 / 31)  # 30 served, 1 dropped


def test_the_share_never_falls_below_its_floor() -> None:
    g = LoadGovernor(window_s=1.0, min_scale=0.1)
    for k in range(40):
        g.observe(float(k), 1.0, 8, 8, k)
    assert g.scale == pytest.approx(0.1)


def test_a_sampler_takes_its_share_of_every_rate() -> None:
    s = Sampler(CameraConfig(id="a", detect_fps=2))
    s.scale = 0.5
    taken = [t / 10 for t in range(50) if s.take(t / 10)[0]]
    assert taken == [0.0, 1.0, 2.0, 3.0, 4.0] and s.effective_fps == 1.0
    zone = ZoneConfig(id="road", polygon=[(0, 0), (1, 0), (1, 1)], detect_fps=4)
    z = Sampler(CameraConfig(id="b", detect_fps=1, zones=[zone]))
    z.scale = 0.5
    assert [t / 10 for t in range(20) if z.take(t / 10)[0]] == [0.0, 0.5, 1.0, 1.5]


def test_key_frames_arriving_a_little_early_are_all_taken() -> None:
    # A live camera detecting every 2 s on key frames every 2 s, each arriving a few milliseconds early or late:
    # every key frame is taken (without the margin every other one was, halving the rate).
    s = Sampler(CameraConfig(id="a", detect_fps=0.5))
    arrivals = [0.0, 1.98, 4.01, 5.97, 8.0, 9.99]
    assert [t for t in arrivals if s.take(t)[0]] == arrivals
    # At 25 fps the margin (5 % of the period) is shorter than a frame: the rate stays the configured one.
    full = Sampler(CameraConfig(id="b", detect_fps=2))
    assert len([k for k in range(250) if full.take(k / 25)[0]]) == 20
