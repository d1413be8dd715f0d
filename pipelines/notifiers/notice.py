"""The one payload every notifier receives, a delivery's outcome, and the :class:`Notifier` protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

NoticeKind = Literal["case", "warning", "sms"]


class Notice(BaseModel):
    """A case (to dispatch), a warning (to speak) or a text to a shop, as stored in the outbox and handed to a
    notifier.

    Case fields are those of the case at registration; a warning adds what to say (``text``, or a recorded
    ``audio`` file) and how loud; a text to a shop adds the number (``to``), the shop and its reminder.
    """

    model_config = ConfigDict(extra="forbid")

    kind: NoticeKind
    case_id: str
    violation: str
    camera: str
    camera_name: str = ""
    zone: str
    address: str = ""
    gps: tuple[float, float] | None = None
    source: str = ""
    start_s: float = 0.0
    confirmed_s: float = 0.0
    confidence: float = Field(default=0.0, ge=0, le=1)
    registered_at: str = ""
    description: str = ""
    load_state: Literal["covered", "uncovered", "empty", "unknown"] | None = None
    alternatives: list[str] = Field(default_factory=list)
    vehicle: dict[str, Any] | None = Field(default=None, description="case: a truck's plate and licence.")
    model: str = Field(default="", description="case: the detector model that raised it (name and version).")
    text: str = Field(default="", description="warning: the words to speak; sms: the text.")
    audio: str | None = Field(default=None, description="warning: a recorded file played instead of the text.")
    volume: float = Field(default=1.0, ge=0, le=1)
    repeat: int = Field(default=0, ge=0, description="warning: 0 the first, 1.. the repeats.")
    to: str = Field(default="", description="sms: the shop's phone number.")
    shop: str = Field(default="", description="sms: the shop's id.")
    reminder_id: int | None = Field(default=None, description="sms: the reminder (delivery reports name it).")


@dataclass(frozen=True)
class Delivery:
    """What a delivery attempt came to: delivered, or failed (retried later unless ``final``)."""

    ok: bool
    error: str = ""
    final: bool = False  # a failure that no retry can fix (an invalid payload, a notice too old to matter)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a notifier's outbox rows are retried."""

    max_attempts: int = 8
    backoff_s: float = 2.0  # first retry delay; doubles each time
    max_backoff_s: float = 600.0
    max_age_s: float | None = None  # older notices are dead-lettered unsent (a warning minutes late is noise)

    def delay(self, attempts: int) -> float:
        """Seconds before the next attempt after ``attempts`` failed ones."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (attempts - 1)))


class Notifier(Protocol):
    """Delivers notices to one target (an endpoint, a loudspeaker, an SMS gateway, ...)."""

    name: str
    kinds: frozenset[NoticeKind]  # the notices it takes
    policy: RetryPolicy

    def deliver(self, notice: Notice, key: str) -> Delivery:
        """Deliver one notice; ``key`` is stable across retries (an idempotency key). Never raises."""
        ...

    def status(self) -> dict[str, object]:
        """Health and counters (for the API and metrics)."""
        ...

    def close(self) -> None:
        """Release connections and threads."""
        ...
