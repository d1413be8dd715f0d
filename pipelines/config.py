"""Camera configuration: YAML validated by strict pydantic models.

Unknown keys are rejected, every field has bounds and a description, and
polygons use one format only: lists of ``[x, y]`` pairs normalised to 0..1 of
the frame. Errors name the file, the line and the field:

    cameras.yaml:12: cameras.0.zones.0.polygon: polygon needs at least 3 points

Example:
    cameras:
      - id: gate-east
        source: rtsp://10.0.0.5/stream1
        location: {address: "No. 8 Jianshe Rd", gps: [30.27, 120.16]}
        zones:
          - id: sidewalk
            polygon: [[0, 0.55], [1, 0.55], [1, 1], [0, 1]]
            violations: [street_stall, garbage]
            dwell_s: {street_stall: 90}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from detector.events import OPTIONAL_VIOLATIONS
from detector.reminders import DEFAULT_TEMPLATE, ReminderSettings
from detector.rules import DEFAULT_DWELL_S, MOVING, AllowArea, RuleSettings, StallContext, ZoneSpec
from detector.scene import SceneSettings
from detector.warnings import DEFAULT_MESSAGES, QuietHours, WarningSettings
from detector.zones import PolygonZone
from pipelines.sources import DecodeMode

Point = npt.NDArray[np.float64]
Violation = Literal["street_stall", "uncovered_truck", "garbage", "barbecue", "overflowing_bin",
                    "unlicensed_muck_truck"]
ContextLabel = Literal["person", "bicycle", "motorcycle", "car", "bus", "umbrella", "chair", "bench", "dining_table"]
#: Context labels that can be stall furniture (a person next to a person is no stall).
StallObject = Literal["bicycle", "motorcycle", "car", "bus", "umbrella", "chair", "bench", "dining_table"]
DEFAULT_STALL_OBJECTS: tuple[StallObject, ...] = ("umbrella", "dining_table")


def _all_violations() -> list[Violation]:
    """What a zone watches unless it says otherwise (the optional ones, e.g. unlicensed_muck_truck, are listed)."""
    return [v for v in get_args(Violation) if v not in OPTIONAL_VIOLATIONS]


def _default_dwell() -> dict[Violation, float]:
    return {v: DEFAULT_DWELL_S[v] for v in get_args(Violation)}


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names file, line and field."""


Unit = Annotated[float, Field(ge=0.0, le=1.0)]  # a normalised image coordinate


def _not_a_number(annotation: Any, value: Any) -> tuple[bool, Any]:
    """Find a bool or string given where ``annotation`` wants a number, or anything but true/false where it
    wants a flag (also inside lists, tuples and dicts)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation in (int, float):
        return isinstance(value, bool | str), value
    if annotation is bool:
        return not isinstance(value, bool), value
    if origin in (Union, UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None or not options:
            return False, None
        found = [_not_a_number(a, value) for a in options]
        return all(f[0] for f in found), found[0][1]
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        items = [(args[1], v) for v in value.values()]
    elif origin is list and isinstance(value, list | tuple) and args:
        items = [(args[0], v) for v in value]
    elif origin is tuple and isinstance(value, list | tuple) and args:
        kinds = [args[0]] * len(value) if (len(args) == 2 and args[1] is Ellipsis) else list(args)
        items = list(zip(kinds, value, strict=False))
    else:
        return False, None
    for ann, v in items:
        bad, what = _not_a_number(ann, v)
        if bad:
            return True, what
    return False, None


class Strict(BaseModel):
    """Base of all config models: unknown keys are errors, and a number must be a number.

    Pydantic would quietly read ``true`` as 1, ``"2"`` as 2.0 and ``0`` as false; in a camera file (or an
    API body) that is a typo to report, not a value to guess.
    """

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None:
            bad, what = _not_a_number(field.annotation, value)
            if bad:
                raise ValueError(f"{what!r} is not {'true or false' if field.annotation is bool else 'a number'}")
        return value


class StrictKind(BaseModel):
    """Base of the configs of one kind of a discriminated union (``type: ...``): as :class:`Strict`, checked
    before validation, because the ``type`` field may not carry a field validator."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name)
                if field is not None:
                    bad, what = _not_a_number(field.annotation, value)
                    if bad:
                        kind = "true or false" if field.annotation is bool else "a number"
                        raise ValueError(f"{name}: {what!r} is not {kind}")
        return data


def _check_polygon(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) < 3:
        raise ValueError("polygon needs at least 3 points")
    for x, y in points:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"point [{x}, {y}] is outside the frame: coordinates are normalised 0..1")
    pts = np.asarray(points, np.float64)
    n = len(pts)
    for i in range(n):
        for j in range(i + 1, n):
            if abs(i - j) <= 1 or (i == 0 and j == n - 1):
                continue
            if _segments_cross(pts[i], pts[(i + 1) % n], pts[j], pts[(j + 1) % n]):
                raise ValueError(f"polygon intersects itself (edges {i} and {j})")
    area = 0.5 * float(np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1]))
    if abs(area) < 1e-6:
        raise ValueError("polygon has no area")
    return points


def _check_windows(v: list[str]) -> list[str]:
    for w in v:
        QuietHours.parse(w)
    return v


def _segments_cross(a: Point, b: Point, c: Point, d: Point) -> bool:
    def orient(p: Point, q: Point, r: Point) -> float:
        return float((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))

    o1, o2, o3, o4 = orient(a, b, c), orient(a, b, d), orient(c, d, a), orient(c, d, b)
    return (o1 * o2 < 0) and (o3 * o4 < 0)


class Location(Strict):
    """Where the camera is, for dispatch to the city platform."""

    address: str = Field(default="", description="Street address shown in cases.")
    gps: tuple[float, float] | None = Field(default=None, description="Latitude, longitude (WGS-84).")

    @field_validator("gps")
    @classmethod
    def _gps_range(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (-90 <= v[0] <= 90 and -180 <= v[1] <= 180):
            raise ValueError("gps must be [latitude -90..90, longitude -180..180]")
        return v


class AllowConfig(Strict):
    """An allowlisted area: a licensed stall, a fixed bin."""

    polygon: list[tuple[Unit, Unit]] = Field(min_length=3, description="Normalised [x, y] points.")
    violations: list[Violation] = Field(default_factory=lambda: list(get_args(Violation)),
                                        description="Violations permitted in this area.")
    note: str = Field(default="", description="Why it is allowed (licence number...).")

    _poly = field_validator("polygon")(_check_polygon)


class WarningConfig(Strict):
    """Voice warnings in a zone ("remote voice persuasion") and the re-check that follows them."""

    violations: list[Violation] = Field(default_factory=_all_violations, description="Violations warned about.")
    messages: dict[Violation, str] = Field(default_factory=dict,
                                           description="Message text per violation (Mandarin defaults).")
    audio: dict[Violation, Path] = Field(default_factory=dict,
                                         description="Pre-recorded WAV/MP3 per violation, played instead of TTS.")
    speakers: list[str] = Field(default_factory=list, description="Names of the speakers to play on.")
    quiet_hours: list[str] = Field(default_factory=list, description="Daily windows without warnings: 22:00-07:00.")
    cooldown_s: float = Field(default=300.0, ge=0, le=86_400, description="Least time between warnings in the zone.")
    max_repeats: int = Field(default=2, ge=1, le=20, description="Warnings per violation at most.")
    recheck_s: float = Field(default=60.0, gt=0, le=3600, description="Re-check the place this long after a warning.")
    volume: float = Field(default=1.0, ge=0, le=2)

    _windows = field_validator("quiet_hours")(_check_windows)

    def settings(self) -> WarningSettings:
        """The policy in the form the warning loop uses."""
        messages = {**DEFAULT_MESSAGES, **{str(k): t for k, t in self.messages.items()}}
        return WarningSettings(violations=frozenset(self.violations), messages=messages,
                               speakers=tuple(self.speakers),
                               quiet_hours=tuple(QuietHours.parse(w) for w in self.quiet_hours),
                               cooldown_s=self.cooldown_s, max_repeats=self.max_repeats, recheck_s=self.recheck_s,
                               volume=self.volume)


class ReminderConfig(Strict):
    """Texts to the shop that answers for a pavement ("门前三包") and the re-check that follows them.

    Set globally (``reminders:`` at the top of the file), per camera or per zone; the nearest one counts.
    """

    enabled: bool = Field(default=True, description="Remind shops of violations in their frontage here.")
    channels: list[str] = Field(default_factory=list, description="SMS notifiers to send through (service); "
                                "default: every SMS notifier. Batch analysis only records the names.")
    template: str = Field(default=DEFAULT_TEMPLATE, min_length=1, max_length=500,
                          description="Mandarin text with {shop} {violation} {place} {time} {deadline} {case}.")
    deadline_s: float = Field(default=600.0, gt=0, le=86_400, description="Re-check the place this long after "
                              "the text; still there: reminder_no_effect, and the usual path follows.")
    quiet_hours: list[str] = Field(default_factory=lambda: ["21:00-08:00"],
                                   description="Daily windows without texts (the violation takes the usual path).")
    max_per_day: int = Field(default=2, ge=1, le=100, description="Texts per shop and day at most.")

    _windows = field_validator("quiet_hours")(_check_windows)

    @field_validator("template")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            v.format_map(_AnyKey())
        except (ValueError, IndexError) as exc:
            raise ValueError(f"template: {exc} (write variables as {{shop}}, braces as {{{{ }}}})") from exc
        return v

    def settings(self) -> ReminderSettings | None:
        """The policy in the form the reminder loop uses (None when disabled)."""
        if not self.enabled:
            return None
        return ReminderSettings(channels=tuple(self.channels), template=self.template, deadline_s=self.deadline_s,
                                quiet_hours=tuple(QuietHours.parse(w) for w in self.quiet_hours),
                                max_per_day=self.max_per_day)


class _AnyKey(dict[str, str]):
    """Every name is known (a template's variables are checked for syntax only)."""

    def __missing__(self, name: str) -> str:
        return ""


class StallContextConfig(Strict):
    """The second path to a street stall: people staying next to stall furniture in a no-vending zone."""

    enabled: bool = Field(default=True, description="Look for stalls made of people and furniture here.")
    objects: list[StallObject] = Field(default_factory=lambda: list(DEFAULT_STALL_OBJECTS), min_length=1,
                                        description="Context labels that make a stall with people next to them "
                                        "(add chair or bench where no seating is expected, bicycle or motorcycle "
                                        "for tricycle carts).")
    min_people: int = Field(default=1, ge=1, le=20, description="People needed next to one such object.")
    reach: float = Field(default=0.5, ge=0, le=5, description="Largest gap between a person and the object, in "
                         "person heights.")
    min_confidence: float = Field(default=0.4, ge=0, le=1, description="People and objects count from this "
                                  "detection score on.")

    def spec(self) -> StallContext | None:
        """The rules' form (None when disabled)."""
        if not self.enabled:
            return None
        return StallContext(objects=frozenset(self.objects), min_people=self.min_people, reach=self.reach,
                            min_confidence=self.min_confidence)


class SceneConfig(Strict):
    """The scene stage between detector and tracker (``detector/scene.py``)."""

    piles: bool = Field(default=True, description="Touching garbage boxes are one pile (one case per heap).")
    bin_confidence: float = Field(default=0.5, ge=0, le=1, description="An overflowing-bin box this sure is a bin "
                                  "by itself; below it, it is one only where a garbage_bin box is there.")

    def settings(self) -> SceneSettings:
        """The scene stage's form."""
        return SceneSettings(piles=self.piles, bin_confidence=self.bin_confidence)


class ZoneConfig(Strict):
    """A watched area of a camera's view."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    polygon: list[tuple[Unit, Unit]] = Field(min_length=3, description="Normalised [x, y] points, 0..1 of the frame.")
    violations: list[Violation] = Field(default_factory=_all_violations,
                                        description="Violations watched in this zone.")
    dwell_s: dict[Violation, float] = Field(default_factory=dict,
                                            description="Per-violation dwell time overrides, seconds.")
    allowlist: list[AllowConfig] = Field(default_factory=list)
    smoke_means_barbecue: bool = Field(default=False,
                                       description="Smoke alone starts a barbecue case here (kerbside eateries).")
    warnings: WarningConfig | None = Field(default=None, description="Voice warnings in this zone.")
    stall_context: StallContextConfig = Field(default_factory=StallContextConfig,
                                              description="Stalls made of people and furniture (second path).")
    notify: list[str] | None = Field(
        default=None, description="Notifiers this zone's cases go to (names of the service's notifiers); "
        "default: the camera's.")
    reminders: ReminderConfig | None = Field(default=None, description="Texts to the responsible shop "
                                             "(default: the camera's policy).")
    detect_fps: float | None = Field(
        default=None, gt=0, le=60, description="This zone's own detection rate (default: the camera's): e.g. 2 for "
        "a carriageway watched for passing trucks, 0.5 for a pavement watched for garbage. With the camera's roi "
        "at crop or zoom, a frame sampled for some zones only is cut down to them.")

    _poly = field_validator("polygon")(_check_polygon)

    @field_validator("dwell_s")
    @classmethod
    def _dwell_bounds(cls, v: dict[str, float]) -> dict[str, float]:
        for k, s in v.items():
            if not 0 <= s <= 86_400:
                raise ValueError(f"dwell_s.{k} must be within 0..86400 seconds")
        return v


class RulesConfig(Strict):
    """Defaults of the violation rules (zones may override dwell times)."""

    dwell_s: dict[Violation, float] = Field(default_factory=_default_dwell)
    truck_min_samples: int = Field(default=3, ge=1, le=1000)
    gap_tolerance_s: float = Field(default=20.0, ge=0, le=3600)
    cooldown_s: float = Field(default=600.0, ge=0, le=86_400)
    min_confidence: dict[Violation, float] = Field(default_factory=dict)
    update_interval_s: float = Field(default=30.0, gt=0, le=3600)

    def settings(self, dwell_override: float | None = None) -> RuleSettings:
        """Return rule settings; ``dwell_override`` replaces every dwell time."""
        dwell: dict[str, float] = {**DEFAULT_DWELL_S, **{str(k): v for k, v in self.dwell_s.items()}}
        if dwell_override is not None:
            dwell = {k: dwell_override for k in dwell}
        return RuleSettings(dwell_s=dwell, truck_min_samples=self.truck_min_samples,
                            gap_tolerance_s=self.gap_tolerance_s, cooldown_s=self.cooldown_s,
                            min_confidence={str(k): v for k, v in self.min_confidence.items()},
                            update_interval_s=self.update_interval_s)


class CameraConfig(Strict):
    """One camera: its source, place and watched zones."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = ""
    source: str = Field(default="", description="File path, rtsp://, http(s):// URL; empty in batch analysis.")
    record: str = Field(default="", description="The camera's main stream (rtsp://, http(s)://), recorded for "
                        "evidence by stream copy and never decoded; `source` is then its substream, which the "
                        "detector sees. Empty: evidence is cut from `source`'s own packets.")
    location: Location = Field(default_factory=Location)
    detect_fps: float = Field(default=2.0, gt=0, le=60, description="Frames per second sent to the detector.")
    decode: Literal["all", "keyframes", "auto"] = Field(
        default="auto", description="Decode every frame, key frames only, or auto: key frames only where the "
        "camera watches stationary violations only (no trucks: they need motion) and its key frames keep its "
        "detection interval (a whole number of key-frame intervals within 5 % of it, measured on the stream's "
        "first key frames); otherwise every frame.")
    zones: list[ZoneConfig] = Field(default_factory=list,
                                    description="Watched zones; none means the whole frame, every violation.")
    motion_gate: bool = Field(default=False, description="Skip the detector on sampled frames that did not "
                              "change since the last detection (its detections are reused).")
    motion_refresh_s: float = Field(default=10.0, gt=0, le=3600,
                                    description="With motion_gate, run the detector at least this often.")
    roi: Literal["frame", "crop", "zoom"] = Field(
        default="frame", description="Region of interest: 'frame' sends the detector the whole frame; 'crop' and "
        "'zoom' only the zones' bounding box (plus a margin). 'crop' keeps the frame's scale (fewer input pixels: "
        "faster, same detections inside); 'zoom' enlarges it to the model's input size (more pixels on the zones: "
        "small objects found more often).")
    rules: RulesConfig | None = Field(default=None, description="Overrides of the global rules: each key it sets "
                                      "replaces the global one, per violation for dwell_s and min_confidence; the "
                                      "rest stays global.")
    notify: list[str] | None = Field(
        default=None, description="Notifiers this camera's cases go to (names of the service's notifiers); "
        "default: every webhook.")
    scene: SceneConfig = Field(default_factory=SceneConfig, description="How detections become objects.")
    model: Path | None = Field(default=None, description="This camera's own detector: a model folder or weights "
                               "file (a model fine-tuned on this site's frames; relative to a camera file, or to "
                               "the service's working directory). Default: the run's model. Same threshold and "
                               "input size as the run's model.")
    reminders: ReminderConfig | None = Field(default=None, description="Texts to the responsible shop (default: "
                                             "the file's policy).")
    plates: bool = Field(default=False, description="Read the plate of each truck case (OCR: a few hundred "
                         "milliseconds per truck event) and check it against the muck-transport register; zones "
                         "listing unlicensed_muck_truck also read the plates of loaded trucks passing.")

    @field_validator("model")
    @classmethod
    def _onnx_model(cls, model: Path | None) -> Path | None:
        """A camera's model runs on ONNX Runtime: a model folder or an ``.onnx`` file (a ``.pt`` is exported with
        ``streetwatch export`` first; PyTorch checkpoints are never unpickled for a camera)."""
        if model is None:
            return None
        if "\x00" in str(model) or not str(model).strip():
            raise ValueError("not a path")
        if model.suffix and model.suffix != ".onnx":
            raise ValueError(f"{model}: a camera's model is a model folder or an .onnx file (export a .pt with "
                             "`streetwatch export`)")
        return model

    @field_serializer("rules")
    def _own_rules(self, rules: RulesConfig | None) -> dict[str, Any] | None:
        """Only the keys the camera sets: the others stay the global rules' (:func:`camera_rules`) through every
        round trip of a camera (the API, the Ray shards, the YAML written back)."""
        return None if rules is None else rules.model_dump(mode="json", exclude_unset=True)

    @model_validator(mode="after")
    def _unique_zones(self) -> CameraConfig:
        ids = [z.id for z in self.zones]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate zone ids {sorted(dup)}")
        if not self.plates and (z := next((z for z in self.zones if "unlicensed_muck_truck" in z.violations), None)):
            raise ValueError(f"zone {z.id} watches unlicensed_muck_truck: the camera needs `plates: true`")
        return self

    def watched(self) -> frozenset[str]:
        """Every violation some zone of this camera watches (no zones: the default ones)."""
        if not self.zones:
            return frozenset(_all_violations())
        return frozenset(v for z in self.zones for v in z.violations)

    def decode_plan(self) -> tuple[DecodeMode, float, str]:
        """How to decode: ``(mode, auto_interval_s, reason)``. ``auto`` becomes ``all`` at once for a camera
        watching trucks; otherwise key frames may do once they come every ``auto_interval_s`` (the shortest
        detection interval of the camera and its zones) or more often."""
        if self.decode != "auto":
            return self.decode, 0.0, f"decode: {self.decode} (configured)"
        moving = sorted(self.watched() & MOVING)
        if moving:
            return "all", 0.0, f"watches {', '.join(moving)}: trucks need motion, every frame decoded"
        fastest = max([self.detect_fps] + [z.detect_fps for z in self.zones if z.detect_fps])
        return "auto", 1.0 / fastest, "deciding from the stream's key-frame interval"

    def watches_licences(self) -> bool:
        """Whether a zone of this camera watches unlicensed muck trucks (the plate stage then reads trucks)."""
        return self.plates and "unlicensed_muck_truck" in self.watched()

    def zone_specs(self, dwell_override: float | None = None) -> list[ZoneSpec]:
        """Return the zones as rule specs (the whole frame when none are configured)."""
        if not self.zones:
            return [ZoneSpec(id="frame", zone=PolygonZone(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)),
                             stall_context=StallContextConfig().spec())]
        out = []
        for z in self.zones:
            dwell = {str(k): v if dwell_override is None else dwell_override for k, v in z.dwell_s.items()}
            allow = tuple(AllowArea(PolygonZone(np.asarray(a.polygon, np.float32)), frozenset(a.violations))
                          for a in z.allowlist)
            out.append(ZoneSpec(id=z.id, zone=PolygonZone(np.asarray(z.polygon, np.float32)),
                                violations=frozenset(z.violations), dwell_s=dwell, allow=allow,
                                smoke_means_barbecue=z.smoke_means_barbecue, stall_context=z.stall_context.spec()))
        return out

    def case_targets(self, default: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
        """The notifiers of this camera's cases, and of the zones that name their own."""
        camera = tuple(self.notify) if self.notify is not None else default
        return camera, {z.id: tuple(z.notify) for z in self.zones if z.notify is not None}

    def warning_settings(self) -> dict[str, WarningSettings]:
        """Warning policies by zone id (zones without one are left out)."""
        return {z.id: z.warnings.settings() for z in self.zones if z.warnings is not None}

    def reminder_settings(self, default: ReminderConfig) -> dict[str, ReminderSettings]:
        """Reminder policies by zone id: the zone's, else the camera's, else ``default`` (disabled ones left out).

        A camera without zones has one, ``frame``.
        """
        camera = self.reminders or default
        zones = [(z.id, z.reminders or camera) for z in self.zones] if self.zones else [("frame", camera)]
        return {zid: s for zid, cfg in zones if (s := cfg.settings()) is not None}


class AppConfig(Strict):
    """A camera file: cameras plus global rule defaults, and the shops that answer for pavements."""

    cameras: list[CameraConfig] = Field(default_factory=list)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    shops: Path | None = Field(default=None, description="Shop registry (CSV or .xlsx), relative to this file: "
                               "violations in a shop's frontage are texted to the shop first.")
    reminders: ReminderConfig = Field(default_factory=ReminderConfig, description="Default reminder policy.")
    muck_register: Path | None = Field(default=None, description="Licensed muck trucks (CSV or .xlsx), relative to "
                                       "this file: a truck case's plate is checked against it.")

    @model_validator(mode="after")
    def _unique_cameras(self) -> AppConfig:
        ids = [c.id for c in self.cameras]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate camera ids {sorted(dup)}")
        return self

    def rules_for(self, camera: CameraConfig) -> RulesConfig:
        """Return the camera's rules: the global ones with the keys of its own (:func:`camera_rules`)."""
        return camera_rules(self.rules, camera.rules)

    def unreachable_thresholds(self, conf: float) -> list[str]:
        """The per-violation thresholds, global and per camera, that a detector run at ``conf`` never lets act
        (see :func:`thresholds_below`)."""
        out = thresholds_below(self.rules, conf, "rules")
        for cam in self.cameras:
            if cam.rules is not None:
                out += thresholds_below(cam.rules, conf, f"camera {cam.id}: rules")
        return out


def camera_rules(base: RulesConfig, own: RulesConfig | None) -> RulesConfig:
    """A camera's rules: ``base`` (the global rules) with each key the camera's own ``rules:`` block sets; the
    per-violation tables (``dwell_s``, ``min_confidence``) are merged violation by violation. A camera block that
    sets ``min_confidence: {garbage: 0.3}`` keeps the global dwell times and the other violations' thresholds."""
    if own is None:
        return base
    update = {name: getattr(own, name) for name in own.model_fields_set}
    for table in ("dwell_s", "min_confidence"):
        if table in update:
            update[table] = {**getattr(base, table), **update[table]}
    return base.model_copy(update=update)


def thresholds_below(rules: RulesConfig, conf: float, where: str = "rules") -> list[str]:
    """One message per ``min_confidence`` below the detector's own ``conf``: the detector drops boxes scored
    between the two before the rules see them, so such a threshold (from ``evaluate thresholds``) silently acts
    as ``conf``."""
    return [f"{where}.min_confidence.{v} is {t:g}, below the detector's conf {conf:g}: boxes scored between are "
            f"dropped before the rules; run the detector at conf {t:g} for it to act"
            for v, t in sorted(rules.min_confidence.items()) if t < conf]


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Find the 1-based line of a pydantic error location in a YAML node tree."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == str(part)), None)
            if nxt is None:  # an unknown key: point at the key itself
                key = next((k for k, _ in node.value if k.value == str(part)), None)
                return key.start_mark.line + 1 if key is not None else line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _read_yaml(text: str, source: str) -> tuple[yaml.Node | None, dict[str, Any]]:
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the top level must be a mapping")
    return node, data


def _one_line(exc: ValidationError, node: yaml.Node | None, source: str, prefix: tuple[int | str, ...] = ()
              ) -> ConfigError:
    err = exc.errors()[0]
    loc = (*prefix, *err["loc"])
    field = ".".join(str(p) for p in loc) or "(top level)"
    line = _line_of(node, loc)
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    msg = err["msg"].removeprefix("Value error, ")
    return ConfigError(f"{source}:{line or '?'}: {field}: {msg}{more}")


def parse_config(text: str, source: str = "<config>", model: type[BaseModel] = AppConfig) -> Any:
    """Parse and validate YAML text; raises :class:`ConfigError` naming file, line and field."""
    node, data = _read_yaml(text, source)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc, node, source) from exc


@dataclass(frozen=True)
class BadCamera:
    """A camera entry that failed validation: its error, and what it would have matched."""

    error: str
    id: str
    source: str


def parse_config_lenient(text: str, source: str = "<config>", model: type[BaseModel] = AppConfig
                         ) -> tuple[Any, list[BadCamera]]:
    """Like :func:`parse_config`, but a bad camera entry is set aside instead of failing the whole file.

    Everything else (YAML, top-level keys, global sections, duplicate ids) must still be valid. Each
    camera is checked together with the rest of the file, so cross-references (speakers) count too.
    """
    node, data = _read_yaml(text, source)
    cameras = data.get("cameras") or []
    if not isinstance(cameras, list):
        raise ConfigError(f"{source}:{_line_of(node, ('cameras',)) or '?'}: cameras: must be a list")
    try:
        model.model_validate({**data, "cameras": []})
    except ValidationError as exc:
        raise _one_line(exc, node, source) from exc
    good: list[Any] = []
    bad: list[BadCamera] = []
    for i, entry in enumerate(cameras):
        try:
            model.model_validate({**data, "cameras": [entry]})
            good.append(entry)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(err["loc"])
            rest = loc[2:] if loc[:2] == ("cameras", 0) else ()
            line = _line_of(node, ("cameras", i, *rest))
            field = ".".join(str(p) for p in ("cameras", i, *rest))
            raw = entry if isinstance(entry, dict) else {}
            bad.append(BadCamera(f"{source}:{line or '?'}: {field}: {err['msg'].removeprefix('Value error, ')}",
                                 str(raw.get("id", "")), str(raw.get("source", ""))))
    try:
        cfg = model.model_validate({**data, "cameras": good})
    except ValidationError as exc:
        raise _one_line(exc, node, source) from exc
    return cfg, bad


def load_config_lenient(path: Path) -> tuple[AppConfig, list[BadCamera]]:
    """Load a camera YAML file, setting bad camera entries aside (see :func:`parse_config_lenient`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from exc
    cfg, bad = parse_config_lenient(text, str(path))
    return _relative_to(cfg, path), bad


def _relative_to(cfg: AppConfig, path: Path) -> AppConfig:
    """Paths in a camera file are relative to the file."""
    update: dict[str, Any] = {key: path.parent / value for key in ("shops", "muck_register")
                              if (value := getattr(cfg, key)) is not None and not value.is_absolute()}
    if any(c.model is not None and not c.model.is_absolute() for c in cfg.cameras):
        update["cameras"] = [c.model_copy(update={"model": path.parent / c.model})
                             if c.model is not None and not c.model.is_absolute() else c for c in cfg.cameras]
    return cfg.model_copy(update=update) if update else cfg


def load_config(path: Path) -> AppConfig:
    """Load a camera YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from exc
    cfg: AppConfig = parse_config(text, str(path))
    return _relative_to(cfg, path)
