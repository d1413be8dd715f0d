"""The JSON payload sent to the city case platform (documented as a JSON schema).

``docs/dispatch-payload.schema.json`` is generated from :class:`DispatchPayload`
(``python -m pipelines.notifiers.payload > docs/dispatch-payload.schema.json``) and a test keeps
the two equal.
"""

from __future__ import annotations

import json
import sys
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Evidence(BaseModel):
    """Where the platform downloads the evidence (needs a viewer token; faces and the plates of vehicles other
    than the case's come masked, see the README's privacy section)."""

    snapshot: str = Field(description="URL of the JPEG snapshot with the violation boxed (masked copy).")
    clip: str = Field(description="URL of the H.264 MP4 clip (masked copy).")


class Vehicle(BaseModel):
    """A truck case's vehicle (cameras reading plates)."""

    plate: str | None = Field(description="The plate voted over the case's frames so far; null when none was read.")
    plate_confidence: float | None = None
    readings: int = Field(default=0, description="Frames the plate was read on.")
    licence: Literal["licensed", "unlicensed", "expired", "not_yet_valid", "outside_hours"] | None = Field(
        default=None, description="What the muck-transport register says (with a register configured).")
    unlicensed: bool | None = Field(default=None, description="Not licensed to carry muck now.")
    company: str | None = Field(default=None, description="The licensed transport company.")
    permit: str | None = Field(default=None, description="Its permit number.")


class DispatchPayload(BaseModel):
    """One case delivered to a webhook (HTTP POST, ``Idempotency-Key: <case_id>:<webhook>``)."""

    model_config = ConfigDict(extra="forbid", title="streetwatch case dispatch")

    case_id: str = Field(description="Stable case id; the same on every retry.")
    violation: str = Field(description="street_stall, uncovered_truck, garbage, barbecue, overflowing_bin or "
                           "unlicensed_muck_truck.")
    camera: str = Field(description="Camera id.")
    camera_name: str = Field(default="", description="Camera name.")
    zone: str = Field(description="Zone id within the camera view.")
    address: str = Field(description="Street address of the camera.")
    gps: tuple[float, float] | None = Field(description="Latitude, longitude (WGS-84), when configured.")
    source: str = Field(description="Stream URL or file the case was seen in.")
    start_s: float = Field(description="When the violation was first seen, seconds on the camera's clock.")
    confirmed_s: float = Field(description="When it was confirmed (the alert), seconds on the camera's clock.")
    confidence: float = Field(ge=0, le=1, description="Best detection confidence.")
    registered_at: str = Field(description="ISO 8601 UTC time the case was registered.")
    description: str = Field(default="", description="Human-readable summary.")
    load_state: Literal["covered", "uncovered", "empty", "unknown"] | None = Field(
        default=None, description="Trucks: the load state decided over the truck's frames.")
    alternatives: list[str] = Field(default_factory=list, description="Other classes the same object was also "
                                    "taken for, most likely first (one object is one case).")
    vehicle: Vehicle | None = Field(default=None, description="Truck cases of cameras reading plates: the plate "
                                    "and the register's word on it, as known at dispatch.")
    model: str = Field(default="", description="The detector model that raised the case, name and version (e.g. "
                       "'default 0.4.0'); empty when not recorded.")
    evidence: Evidence


def main() -> None:
    """Print the JSON schema."""
    sys.stdout.write(json.dumps(DispatchPayload.model_json_schema(), indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
