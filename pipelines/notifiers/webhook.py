"""A case to the city case platform: an HTTP POST of the documented dispatch payload.

The body is :class:`~pipelines.notifiers.payload.DispatchPayload` (its JSON schema is
``docs/dispatch-payload.schema.json``) with evidence links under ``public_url``; every retry carries the
same ``Idempotency-Key`` (``<case_id>:<notifier>``), so the platform registers a case once.
"""

from __future__ import annotations

from typing import Literal

import httpx
from pydantic import Field

from pipelines.config import StrictKind
from pipelines.notifiers.notice import Delivery, Notice, NoticeKind, RetryPolicy
from pipelines.notifiers.payload import DispatchPayload


class WebhookNotifierConfig(StrictKind):
    """A city-platform endpoint that receives each new case."""

    type: Literal["webhook"] = "webhook"
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_s: float = Field(default=2.0, gt=0, le=3600, description="First retry delay; doubles each time.")
    max_backoff_s: float = Field(default=600.0, gt=0)


class WebhookNotifier:
    """Posts case notices to one webhook.

    Args:
        cfg: The endpoint and its retry policy.
        public_url: Base URL of the service, put in front of the evidence links.
    """

    kinds: frozenset[NoticeKind] = frozenset({"case"})

    def __init__(self, cfg: WebhookNotifierConfig, public_url: str = "") -> None:
        self.name, self.cfg = cfg.name, cfg
        self.public_url = public_url.rstrip("/")
        self.policy = RetryPolicy(cfg.max_attempts, cfg.backoff_s, cfg.max_backoff_s)
        self.client = httpx.Client(follow_redirects=False)
        self.delivered = 0
        self.failed = 0

    def payload(self, notice: Notice) -> dict[str, object]:
        """The JSON body for a case notice (validated against the documented schema)."""
        body = notice.model_dump(include=set(DispatchPayload.model_fields) - {"evidence"})
        body["evidence"] = {k: f"{self.public_url}/api/cases/{notice.case_id}/evidence/{k}"
                            for k in ("snapshot", "clip")}
        return DispatchPayload.model_validate(body).model_dump(mode="json")

    def deliver(self, notice: Notice, key: str) -> Delivery:
        try:
            body = self.payload(notice)
        except ValueError as exc:
            return Delivery(False, f"invalid payload: {exc}", final=True)
        headers = {**self.cfg.headers, "Idempotency-Key": key, "Content-Type": "application/json"}
        try:
            resp = self.client.post(self.cfg.url, json=body, headers=headers, timeout=self.cfg.timeout_s)
            ok, error = 200 <= resp.status_code < 300, f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"
        if ok:
            self.delivered += 1
        else:
            self.failed += 1
        return Delivery(ok, "" if ok else error)

    def status(self) -> dict[str, object]:
        return {"name": self.name, "type": "webhook", "delivered": self.delivered, "failed": self.failed}

    def close(self) -> None:
        self.client.close()
