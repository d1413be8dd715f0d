"""A service's cameras wherever they run: the :class:`CameraFleet` protocol and a camera's view.

Two fleets implement it: :class:`service.cameras.LocalCameras` (readers and one detector in this process)
and :class:`service.shards.RayCameras` (the same, on Ray actors). The runtime holds one and never asks which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from detector.events import ViolationEvent
from detector.warnings import WarningAction
from pipelines.config import CameraConfig
from pipelines.runner import SourceStats
from pipelines.shops import Shop

UNTRACKED_NOTE = "tracking restarted: no longer followed; a violation still there opens a new case"

OnHealth = Callable[[str, str, str], None]
"""Called with camera id, health state and detail on every health change."""
OnEvent = Callable[[str, ViolationEvent, str, float], None]
"""Called with camera id, event, case id and the camera clock's epoch after the case is stored."""
OnWarn = Callable[[str, WarningAction, str], None]
"""Called with camera id, warning and case id for each voice warning to play."""


@dataclass
class CameraView:
    """A camera's health and counters, the same whether it runs in this process or on a Ray actor:
    the pipeline's counters (a copy of its :class:`~pipelines.runner.SourceStats`) and the reader's."""

    camera_id: str
    health: str
    detail: str = ""
    pipeline: SourceStats = field(default_factory=SourceStats)
    frames_dropped: int = 0
    reconnects: int = 0
    queue: int = 0
    warning_actions: list[WarningAction] = field(default_factory=list)
    node: str = ""  # the Ray node running the camera ("" in-process)
    decode: str = ""  # what its reader decodes now: all or keyframes
    decode_detail: str = ""  # why (automatic decoding says what it measured)
    detect_fps: float = 0.0  # configured detection rate
    detect_fps_now: float = 0.0  # the rate now (lower while the shared detector is overloaded)
    record: str = ""  # the main (record) stream's state, "" for a camera with one stream
    record_detail: str = ""  # why (its last error)
    evidence: str = ""  # how clips are cut now: "stream copy (record)", "stream copy (detect)" or "re-encoded"
    model: str = ""  # the model detecting it (name and version, e.g. "default 0.4.0")


class CameraFleet(Protocol):
    """The cameras a service runs: readers, the detector and the pipelines, with their health."""

    def start(self) -> None:
        """Start the fleet (its detector, watchdog or remote workers) before any camera is added."""

    def add(self, cam: CameraConfig) -> None:
        """Start a camera (raises ``ValueError`` if its id runs already)."""

    def prepare(self, cam: CameraConfig) -> None:
        """Load what a camera needs before it is added (its own model): raises ``ModelLoadError`` if that
        fails, so that a change with a bad model never stops the running camera."""

    def remove(self, camera_id: str) -> None:
        """Stop a camera and end its active violations."""

    def stop(self) -> None:
        """Stop every camera (their last frames still get inferred), then the fleet."""

    def views(self) -> list[CameraView]:
        """Every camera's health and counters."""

    def view(self, camera_id: str) -> CameraView | None:
        """One camera's health and counters, or None if it does not run."""

    def frame_jpeg(self, camera_id: str, overlay: bool) -> bytes | None:
        """The camera's last processed frame as JPEG (raises ``KeyError`` for an unknown camera)."""

    def set_shops(self, shops: list[Shop]) -> None:
        """The shop registry changed: running cameras attribute violations to these shops from now on."""

    def alive(self) -> dict[str, bool]:
        """Readiness checks of the fleet's moving parts."""
