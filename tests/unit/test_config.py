"""Camera config: valid files load; every mistake is one line naming file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.config import CameraConfig, ConfigError, camera_rules, load_config, parse_config

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
     r"cams.yaml:6: cameras.0.zones.0.polygon: List should have at least 3 items"),
    (GOOD.replace("[[0, 0.5], [1, 0.5], [1, 1], [0, 1]]", "[[0, 0], [1, 1], [1, 0], [0, 1]]"),
     r"cams.yaml:6: .*polygon intersects itself"),
    (GOOD.replace("[[0, 0.5], [1, 0.5], [1, 1], [0, 1]]", "[[0, 0.5], [1.5, 0.5], [1, 1], [0, 1]]"),
     r"cams.yaml:6: cameras.0.zones.0.polygon.1.0: Input should be less than or equal to 1"),
    (GOOD.replace("[street_stall, garbage]", "[street_stall, dragons]"),
     r"cams.yaml:7: cameras.0.zones.0.violations.1: Input should be"),
    (GOOD.replace("gap_tolerance_s: 10", "gap_tolerance_s: -1"), r"cams.yaml:13: rules.gap_tolerance_s: .*0"),
    (GOOD.replace("gap_tolerance_s: 10", "gap_tolerance_s: soon"), r"cams.yaml:13: rules.gap_tolerance_s: .*number"),
    (GOOD.replace("gps: [30.27, 120.16]", "gps: [130.27, 120.16]"), r"cams.yaml:3: cameras.0.location.gps: gps"),
    (GOOD.replace("dwell_s: {street_stall: 90}", "dwell_s: {street_stall: -5}"), r"cams.yaml:8: .*dwell_s"),
    (GOOD.replace("[street_stall, garbage]", "[street_stall, unlicensed_muck_truck]"),
     r"cams.yaml:\d+: cameras.0: .*zone .* watches unlicensed_muck_truck: the camera needs `plates: true`"),
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


@pytest.mark.parametrize(("text", "where"), [
    ("cameras:\n  - id: a\n    detect_fps: true\n", "c.yaml:3: cameras.0.detect_fps: True is not a number"),
    ("cameras:\n  - id: a\n    location: {gps: [30, '120']}\n", "c.yaml:3: cameras.0.location.gps: '120' is not"),
    ("rules:\n  min_confidence: {garbage: yes}\n", "c.yaml:2: rules.min_confidence: True is not a number"),
])
def test_a_number_must_be_a_number(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "c.yaml")
    assert str(err.value).startswith(where)


def _scalar_fields() -> list[tuple[str, str, str]]:
    """Every scalar field of a camera, its zone and the rules, with a value of the wrong type (and, for
    bounded numbers, one below the bound).

    Returns ``(dotted path, YAML line, expected error prefix)``.
    """
    import typing

    from pipelines.config import CameraConfig, RulesConfig, ZoneConfig

    cases = []
    for prefix, model in (("cameras.0", CameraConfig), ("cameras.0.zones.0", ZoneConfig), ("rules", RulesConfig)):
        for name, field in model.model_fields.items():
            ann = field.annotation
            origin = typing.get_origin(ann)
            if ann in (int, float):
                bad = "{oops: 1}"       # a mapping where a number belongs
            elif ann is str or (origin is typing.Literal):
                bad = "[1, 2]"          # a list where a word belongs
            elif ann is bool:
                bad = "'perhaps'"
            elif origin in (list, dict):
                bad = "7"               # a number where a list or mapping belongs
            else:
                continue                # nested models: covered through their own fields
            if name == "zones":
                continue                # the base text's own zone list: the zone's fields are covered below
            cases.append((f"{prefix}.{name}", bad, f"{prefix}.{name}"))
            if ann in (int, float) and any(hasattr(m, "ge") or hasattr(m, "gt") for m in field.metadata):
                cases.append((f"{prefix}.{name}", "-5", f"{prefix}.{name}"))  # below its lower bound
    return cases


FIELD_BASE = """\
cameras:
  - id: cam-1
    zones:
      - id: pavement
        polygon: [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]
rules:
  gap_tolerance_s: 10
"""


@pytest.mark.parametrize(("path", "bad", "where"), _scalar_fields())
def test_every_field_with_a_wrong_type_is_one_line_naming_file_line_and_field(path: str, bad: str,
                                                                              where: str) -> None:
    prefix, _, name = path.rpartition(".")
    lines = FIELD_BASE.splitlines()
    at = {"cameras.0": 2, "cameras.0.zones.0": 4, "rules": 6}[prefix]
    indent = {"cameras.0": "    ", "cameras.0.zones.0": "        ", "rules": "  "}[prefix]
    lines = [ln for ln in lines if not ln.strip().startswith(f"{name}:")]  # replace, do not duplicate
    lines.insert(at, f"{indent}{name}: {bad}")
    text = "\n".join(lines) + "\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "cams.yaml")
    msg = str(err.value)
    assert msg.startswith("cams.yaml:") and "\n" not in msg
    assert f": {where}" in msg, msg


def test_context_labels_of_the_config_are_the_detectors() -> None:
    from typing import get_args

    from detector.rules import StallContext
    from detector.types import CONTEXT_LABELS
    from pipelines.config import ContextLabel, StallContextConfig, StallObject

    assert get_args(ContextLabel) == CONTEXT_LABELS
    assert set(get_args(StallObject)) == set(CONTEXT_LABELS) - {"person"}
    with pytest.raises(ValueError, match="objects"):  # people next to people are no stall
        StallContextConfig(objects=["person"])  # type: ignore[list-item]
    assert StallContextConfig().spec() == StallContext()
    assert StallContextConfig(enabled=False).spec() is None


def test_unlicensed_muck_trucks_are_watched_only_where_a_zone_lists_them() -> None:
    cfg = parse_config("cameras:\n  - id: a\n    plates: true\n    zones:\n      - id: road\n"
                       "        polygon: [[0, 0], [1, 0], [1, 1]]\n      - id: gate\n"
                       "        polygon: [[0, 0], [1, 0], [1, 1]]\n"
                       "        violations: [uncovered_truck, unlicensed_muck_truck]\n", "c.yaml")
    road, gate = cfg.cameras[0].zones
    assert "unlicensed_muck_truck" in gate.violations
    assert "unlicensed_muck_truck" not in road.violations and "uncovered_truck" in road.violations
    assert cfg.cameras[0].watches_licences()
    allow = parse_config("cameras:\n  - id: a\n    plates: true\n    zones:\n      - id: gate\n"
                         "        polygon: [[0, 0], [1, 0], [1, 1]]\n        violations: [unlicensed_muck_truck]\n"
                         "        allowlist:\n          - polygon: [[0, 0], [0.5, 0], [0.5, 0.5]]\n", "c.yaml")
    assert "unlicensed_muck_truck" in allow.cameras[0].zones[0].allowlist[0].violations  # a licensed site's gate


def test_thresholds_the_detector_never_lets_act_are_named() -> None:
    """A rules.min_confidence below the detector's conf (say from `evaluate thresholds`) acts as conf: say so."""
    cfg = parse_config("rules:\n  min_confidence: {garbage: 0.18, street_stall: 0.4}\n"
                       "cameras:\n  - id: cam1\n    rules:\n      min_confidence: {barbecue: 0.1}\n  - id: cam2\n")
    messages = cfg.unreachable_thresholds(0.25)
    assert len(messages) == 2
    assert messages[0].startswith("rules.min_confidence.garbage is 0.18, below the detector's conf 0.25")
    assert messages[1].startswith("camera cam1: rules.min_confidence.barbecue is 0.1")
    assert "conf 0.1 for it to act" in messages[1]
    assert cfg.unreachable_thresholds(0.1) == []


def test_a_cameras_rules_override_the_global_ones_key_by_key() -> None:
    """A camera's `rules:` block sets only what it names: a per-site threshold does not reset the site's dwell."""
    cfg = parse_config("rules:\n  dwell_s: {garbage: 60}\n  gap_tolerance_s: 10\n"
                       "  min_confidence: {street_stall: 0.4, garbage: 0.25}\n"
                       "cameras:\n  - id: cam1\n    rules:\n      min_confidence: {garbage: 0.3}\n"
                       "      gap_tolerance_s: 20\n  - id: cam2\n")
    cam1, cam2 = cfg.cameras
    own = cfg.rules_for(cam1)
    assert own.dwell_s["garbage"] == 60 and own.cooldown_s == cfg.rules.cooldown_s  # the global ones
    assert own.min_confidence == {"street_stall": 0.4, "garbage": 0.3}  # merged per violation
    assert own.gap_tolerance_s == 20  # the camera's, though it is the default value
    assert cfg.rules_for(cam2) == cfg.rules
    # Every round trip of a camera (the API, the Ray shards as JSON, the YAML written back) keeps what it set.
    for dumped in (cam1.model_dump(mode="json", exclude_defaults=True), json.loads(cam1.model_dump_json())):
        again = CameraConfig.model_validate(dumped)
        assert dumped["rules"] == {"min_confidence": {"garbage": 0.3}, "gap_tolerance_s": 20.0}
        assert camera_rules(cfg.rules, again.rules) == own
