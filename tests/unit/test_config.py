"""Camera config: valid files load; every mistake is one line naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import ConfigError, load_config, parse_config

GOOD = """\
cameras:
  - id: cam-1
    location: {address: "No. 8 Jianshe Rd", gps: [30.27, 120.16]}
    zones:
      - id: pavement
        polygon: [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]
        violations: [street_stall, garbage]
        dwell_s: {street_stall: 90}
        allowlist:
          - polygon: [[0.1, 0.6], [0.2, 0.6], [0.2, 0.7]]
            violations: [street_stall]
rules:
  gap_tolerance_s: 10
"""


def test_good_config_loads(tmp_path: Path) -> None:
    p = tmp_path / "cams.yaml"
    p.write_text(GOOD)
    cfg = load_config(p)
    cam = cfg.cameras[0]
    (zone,) = cam.zone_specs()
    assert zone.violations == frozenset({"street_stall", "garbage"})
    assert zone.dwell_s == {"street_stall": 90}
    assert cfg.rules_for(cam).settings().gap_tolerance_s == 10
    assert cfg.rules.settings(dwell_override=3).dwell_s["garbage"] == 3
    (override,) = cam.zone_specs(dwell_override=2)
    assert override.dwell_s == {"street_stall": 2}


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD.replace("    zones:", "    zonez: []\n    zones:"), r"cams.yaml:4: cameras.0.zonez: Extra inputs"),
    (GOOD.replace("[[0, 0.5], [1, 0.5], [1, 1], [0, 1]]", "[[0, 0.5], [1, 0.5]]"),
     r"cams.yaml:6: cameras.0.zones.0.polygon: polygon needs at least 3 points"),
    (GOOD.replace("[[0, 0.5], [1, 0.5], [1, 1], [0, 1]]", "[[0, 0], [1, 1], [1, 0], [0, 1]]"),
     r"cams.yaml:6: .*polygon intersects itself"),
    (GOOD.replace("[[0, 0.5], [1, 0.5], [1, 1], [0, 1]]", "[[0, 0.5], [1.5, 0.5], [1, 1], [0, 1]]"),
     r"cams.yaml:6: .*outside the frame"),
    (GOOD.replace("[street_stall, garbage]", "[street_stall, dragons]"),
     r"cams.yaml:7: cameras.0.zones.0.violations.1: Input should be"),
    (GOOD.replace("gap_tolerance_s: 10", "gap_tolerance_s: -1"), r"cams.yaml:13: rules.gap_tolerance_s: .*0"),
    (GOOD.replace("gap_tolerance_s: 10", "gap_tolerance_s: soon"), r"cams.yaml:13: rules.gap_tolerance_s: .*number"),
    (GOOD.replace("gps: [30.27, 120.16]", "gps: [130.27, 120.16]"), r"cams.yaml:3: cameras.0.location.gps: gps"),
    (GOOD.replace("dwell_s: {street_stall: 90}", "dwell_s: {street_stall: -5}"), r"cams.yaml:8: .*dwell_s"),
    ("cameras: {id: x}\n", r"cams.yaml:1: cameras: Input should be a valid list"),
    ("cameras:\n  - id: a\n    detect_fps: 0\n", r"cams.yaml:3: cameras.0.detect_fps: Input should be greater than 0"),
    ("cameras:\n  - id: a\n  - id: a\n", r"cams.yaml:1: \(top level\): duplicate camera ids \['a'\]"),
    ("cameras: [\n", r"cams.yaml:2: invalid YAML"),
    ("- just\n- a list\n", r"cams.yaml:1: the top level must be a mapping"),
])
def test_bad_config_is_one_clear_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        parse_config(text, "cams.yaml")
    assert "\n" not in str(info.value)


def test_missing_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")
