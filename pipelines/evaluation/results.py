"""The shapes of evaluation results: what ``metrics.json`` holds, typed for the code that reads and writes it.

They are ``TypedDict`` s, so a result is still the JSON it is written as (the regression gate and the model
card read the files), while mypy checks every key the code touches.
"""

from __future__ import annotations

from typing import TypedDict


class ClassScores(TypedDict, total=False):
    """One class on labelled images: COCO AP, and precision and recall at the confidence threshold.

    A class the model does not have is ``absent`` (with its ``instances`` and a ``note``) instead of a zero.
    """

    ap50: float
    ap50_95: float
    precision: float
    recall: float
    instances: int
    images: int
    absent: bool
    note: str


class ImageMetrics(TypedDict):
    """Per-class scores and their means over the classes present in the labels."""

    classes: dict[str, ClassScores]
    map50: float | None
    map50_95: float | None


class ImageResult(ImageMetrics):
    """``evaluate images``: the scores and what was scored."""

    model: str
    data: str
    split: str
    images: int
    conf: float
    imgsz: int
    view: str
    label_piles: bool
    remap: dict[str, str]


class FrameResult(ImageMetrics):
    """``evaluate clips``: the scores on the clips' labelled frames."""

    frames: int
    conf: float


class EventScores(TypedDict):
    """One violation's events on labelled clips (None where undefined: no event predicted or labelled)."""

    precision: float | None
    recall: float | None
    f1: float | None
    tp: int
    fp: int
    fn: int
    delay_median_s: float | None
    delay_p90_s: float | None
    onset_error_median_s: float | None


class ClipSegment(TypedDict):
    """A labelled segment of a clip."""

    label: str
    segment: list[float]


class PredictedSegment(ClipSegment):
    """A predicted event of a clip, with its alert (the case's confirmation)."""

    alert: float


class EventMatch(TypedDict):
    """A predicted event matched to a labelled one."""

    pred: int
    gt: int
    iou: float


class ClipDetail(TypedDict):
    """One clip: its labels, the events predicted, and how they matched (or why it could not be analysed)."""

    error: str | None
    duration: float
    tags: list[str]
    labelled: list[ClipSegment]
    predicted: list[PredictedSegment]
    matches: list[EventMatch]
    false_positives: list[int]
    false_negatives: list[int]


class ClipSettings(TypedDict):
    """How clips were scored."""

    iou: float
    dwell_override_s: float | None
    config: str | None
    imgsz: int | None
    frame_view: str
    matching: str


class ClipResult(TypedDict):
    """``evaluate clips``: event scores per violation (and per tag), false alarms, frame AP, per-clip detail."""

    labels: str
    videos: str
    model: str
    settings: ClipSettings
    events: dict[str, EventScores]
    false_alarms_per_hour: float | None
    by_tag: dict[str, dict[str, EventScores]]
    frames: FrameResult | None
    clips: dict[str, ClipDetail]
