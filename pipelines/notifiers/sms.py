"""A text to the shop that answers for a pavement ("门前三包"), through an SMS gateway.

Two gateways:

- ``kannel``: the open-source gateway's HTTP ``sendsms`` interface (GET). Chinese text goes as UTF-8 with
  ``coding=2`` (UCS-2 on the air; either alone garbles it). Kannel answers ``202 0: Accepted for delivery``
  (or ``3: Queued for later delivery``); ``4xx`` (bad password, a number it refuses) is final. With the
  service's ``public_url`` set, each text asks for delivery reports (``dlr-mask=31``) to
  ``/api/sms/dlr``, which records them on the reminder (8: the operator's SMSC took it, 1: delivered,
  2: failed, 16: rejected). Kannel's ``sendsms-user`` must allow long texts (``max-messages`` and
  ``concatenation = true``): without it Kannel cuts a Chinese text to 70 characters without saying so.
- ``http``: a provider's HTTP API: URL, headers and a JSON body whose strings may hold ``{to}``, ``{text}``,
  ``{case}``, ``{shop}`` and ``{secret}`` (the provider's key, read from an environment variable, never
  written in the file); success is a 2xx answer, and optionally fields of its JSON body.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, Literal

import httpx
from pydantic import Field, model_validator

from pipelines.config import StrictKind
from pipelines.notifiers.notice import Delivery, Notice, NoticeKind, RetryPolicy
from pipelines.shops import mask_phone

#: Kannel's delivery-report types (the ``%d`` of its ``dlr-url``) and what they mean for a reminder.
DLR_STATES: dict[int, str] = {1: "delivered", 2: "failed", 4: "buffered", 8: "accepted", 16: "rejected"}
#: Numbers in a gateway's error text (logged and stored: masked like any phone number there).
_PHONE_LIKE = re.compile(r"\+?\d{8,}")
#: Longest text a long SMS of 5 parts carries in Chinese (67 UCS-2 characters per part).
MAX_CHARS = 335


class SmsNotifierConfig(StrictKind):
    """An SMS gateway that texts shops their reminders."""

    type: Literal["sms"] = "sms"
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    gateway: Literal["kannel", "http"]
    url: str = Field(pattern=r"^https?://", description="kannel: the sendsms URL (http://host:13013/cgi-bin/"
                     "sendsms); http: the provider's API.")
    username: str = Field(default="", description="kannel: the sendsms-user.")
    password_env: str | None = Field(default=None, description="kannel: environment variable with its password.")
    sender: str = Field(default="", max_length=20, description="kannel: the sender number (from); empty: the "
                        "gateway's default-sender.")
    method: Literal["POST", "PUT"] = Field(default="POST", description="http: the request method.")
    headers: dict[str, str] = Field(default_factory=dict, description="http: headers; values may use {secret}.")
    body: dict[str, Any] = Field(default_factory=lambda: {"to": "{to}", "text": "{text}"},
                                 description="http: the JSON body; strings may use {to} {text} {case} {shop} "
                                 "{secret}.")
    secret_env: str | None = Field(default=None, description="http: environment variable with the provider's key.")
    ok_json: dict[str, str] = Field(default_factory=dict, description="http: fields the answer's JSON must have "
                                    "for a success (e.g. {Code: OK}); none: any 2xx.")
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    max_attempts: int = Field(default=6, ge=1, le=100)
    backoff_s: float = Field(default=5.0, gt=0, le=3600, description="First retry delay; doubles each time.")
    max_age_s: float = Field(default=1800.0, gt=0, le=86_400, description="A text not sent by then is dropped (a "
                             "reminder after its deadline is pointless).")
    max_chars: int = Field(default=MAX_CHARS, ge=10, le=1000, description="Longer texts are refused, not cut.")

    @model_validator(mode="after")
    def _gateway_fields(self) -> SmsNotifierConfig:
        if self.gateway == "kannel" and not self.username:
            raise ValueError("a kannel gateway needs username (its sendsms-user)")
        probe = dict.fromkeys(("to", "text", "case", "shop", "secret"), "")
        try:
            _fill(self.body, probe)
            for v in self.headers.values():
                v.format_map(probe)
        except (KeyError, ValueError, IndexError) as exc:
            raise ValueError(f"body and headers may use {{to}} {{text}} {{case}} {{shop}} {{secret}} only "
                             f"(braces as {{{{ }}}}): {exc}") from exc
        return self


class SmsNotifier:
    """Sends ``sms`` notices (a reminder's text to one phone) through one gateway.

    Args:
        cfg: The gateway and its retry policy.
        dlr_url: Where Kannel reports the deliveries of a reminder: a URL from the reminder's id and this
            notifier's name (Kannel's ``&type=%d``, the report type, is added); None: no reports asked for.
        environ: Where passwords and keys are read (default: the process environment).
        client: The HTTP client (default: a new one).
    """

    kinds: frozenset[NoticeKind] = frozenset({"sms"})

    def __init__(self, cfg: SmsNotifierConfig, dlr_url: Callable[[int, str], str] | None = None,
                 environ: dict[str, str] | None = None, client: httpx.Client | None = None) -> None:
        self.name, self.cfg, self.dlr_url = cfg.name, cfg, dlr_url
        env = os.environ if environ is None else environ
        self.password = env.get(cfg.password_env, "") if cfg.password_env else ""
        self.secret = env.get(cfg.secret_env, "") if cfg.secret_env else ""
        self.policy = RetryPolicy(cfg.max_attempts, cfg.backoff_s, cfg.backoff_s * 16, cfg.max_age_s)
        self.client = client or httpx.Client(follow_redirects=False, timeout=cfg.timeout_s)
        self.sent = 0
        self.failed = 0
        self.last_error = ""

    def deliver(self, notice: Notice, key: str) -> Delivery:
        if not notice.to or not notice.text:
            return Delivery(False, "an sms notice needs a number and a text", final=True)
        if len(notice.text) > self.cfg.max_chars:
            return Delivery(False, f"text of {len(notice.text)} characters is longer than max_chars "
                            f"{self.cfg.max_chars}", final=True)
        try:
            resp = self._kannel(notice) if self.cfg.gateway == "kannel" else self._http(notice, key)
        except httpx.HTTPError as exc:
            return self._failed(f"{type(exc).__name__}: {exc}")
        if self.cfg.gateway == "http" and 200 <= resp.status_code < 300 and not self._ok_body(resp):
            return self._failed(f"HTTP {resp.status_code}: {resp.text[:200]}")
        if 200 <= resp.status_code < 300:
            self.sent += 1
            return Delivery(True)
        final = 400 <= resp.status_code < 500 and resp.status_code not in (408, 429)
        return self._failed(f"HTTP {resp.status_code}: {resp.text.strip()[:200]}", final)

    def _failed(self, error: str, final: bool = False) -> Delivery:
        error = _PHONE_LIKE.sub(lambda m: mask_phone(m.group()), error).replace(self.password or "\0", "***")
        self.failed += 1
        self.last_error = error
        return Delivery(False, error, final)

    def _kannel(self, notice: Notice) -> httpx.Response:
        params = {"username": self.cfg.username, "password": self.password, "to": notice.to, "text": notice.text,
                  "charset": "UTF-8", "coding": "2"}
        if self.cfg.sender:
            params["from"] = self.cfg.sender
        if self.dlr_url is not None and notice.reminder_id is not None:
            params["dlr-mask"] = "31"
            params["dlr-url"] = self.dlr_url(notice.reminder_id, self.name) + "&type=%d"
        return self.client.get(self.cfg.url, params=params)

    def _http(self, notice: Notice, key: str) -> httpx.Response:
        values = {"to": notice.to, "text": notice.text, "case": notice.case_id, "shop": notice.shop,
                  "secret": self.secret}
        headers = {k: v.format_map(values) for k, v in self.cfg.headers.items()}
        headers["Idempotency-Key"] = key
        return self.client.request(self.cfg.method, self.cfg.url, json=_fill(self.cfg.body, values), headers=headers)

    def _ok_body(self, resp: httpx.Response) -> bool:
        if not self.cfg.ok_json:
            return True
        try:
            body = resp.json()
        except ValueError:
            return False
        return isinstance(body, dict) and all(str(body.get(k)) == v for k, v in self.cfg.ok_json.items())

    def status(self) -> dict[str, object]:
        return {"name": self.name, "type": "sms", "gateway": self.cfg.gateway, "sent": self.sent,
                "failed": self.failed, "last_error": self.last_error}

    def close(self) -> None:
        self.client.close()


def _fill(template: Any, values: dict[str, str]) -> Any:
    """A JSON template with ``{name}`` placeholders in its strings filled in (JSON stays valid)."""
    if isinstance(template, str):
        return template.format_map(values)
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    return template
