"""The SMS notifier's requests (Kannel's sendsms, a provider's JSON API) and answers, on a mock transport;
the real gateway is exercised in tests/service/test_shop_reminders_service.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from pipelines.notifiers.notice import Notice
from pipelines.notifiers.sms import SmsNotifier, SmsNotifierConfig
from service.settings import ServiceConfig

TEXT = '水果店："请清理"门前垃圾'
NOTICE = Notice(kind="sms", case_id="c1", violation="garbage", camera="cam", zone="z", text=TEXT, to="13812345678",
                shop="fruit", reminder_id=7)


def notifier(cfg: dict[str, Any], answer: Callable[[httpx.Request], httpx.Response],
             dlr: Callable[[int, str], str] | None = None) -> tuple[SmsNotifier, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    client = httpx.Client(transport=httpx.MockTransport(handle))
    return SmsNotifier(SmsNotifierConfig.model_validate({"name": "sms", **cfg}), dlr,
                       {"PW": "secret-pw", "KEY": "k-1"}, client), seen


KANNEL = {"gateway": "kannel", "url": "http://127.0.0.1:13013/cgi-bin/sendsms", "username": "sw", "password_env": "PW",
          "sender": "10690001"}


def test_kannel_gets_utf8_as_ucs2_and_a_delivery_report_url() -> None:
    n, seen = notifier(KANNEL, lambda r: httpx.Response(202, text="0: Accepted for delivery"),
                       lambda rid, name: f"http://svc/api/sms/dlr?reminder={rid}&notifier={name}&token=t")
    assert n.deliver(NOTICE, "k").ok and n.status()["sent"] == 1
    q = dict(seen[0].url.params)
    assert q["to"] == "13812345678" and q["text"] == TEXT and q["from"] == "10690001"
    assert (q["username"], q["password"], q["charset"], q["coding"]) == ("sw", "secret-pw", "UTF-8", "2")
    assert q["dlr-mask"] == "31"
    assert q["dlr-url"] == "http://svc/api/sms/dlr?reminder=7&notifier=sms&token=t&type=%d"


def test_gateway_errors_never_show_the_number_or_the_password() -> None:
    n, _ = notifier(KANNEL, lambda r: httpx.Response(400, text="13812345678 refused (password secret-pw)"))
    result = n.deliver(NOTICE, "k")
    assert "13812345678" not in result.error and "secret-pw" not in result.error
    assert "138****5678" in result.error and n.status()["last_error"] == result.error


@pytest.mark.parametrize(("status", "final"), [(403, True), (400, True), (429, False), (503, False)])
def test_kannel_refusals_are_final_and_outages_are_retried(status: int, final: bool) -> None:
    n, _ = notifier(KANNEL, lambda r: httpx.Response(status, text="Authorization failed for sendsms"))
    result = n.deliver(NOTICE, "k")
    assert not result.ok and result.final is final and str(status) in result.error


def test_a_text_without_a_number_or_too_long_is_refused_unsent() -> None:
    n, seen = notifier(KANNEL, lambda r: httpx.Response(202))
    assert n.deliver(NOTICE.model_copy(update={"to": ""}), "k").final
    assert n.deliver(NOTICE.model_copy(update={"text": "长" * 400}), "k").final
    assert seen == []


def test_a_provider_api_gets_its_json_template_filled() -> None:
    cfg = {"gateway": "http", "url": "https://sms.example/send", "secret_env": "KEY",
           "headers": {"X-Key": "{secret}"}, "body": {"to": ["{to}"], "msg": "{text}", "meta": {"case": "{case}"}},
           "ok_json": {"Code": "OK"}}
    n, seen = notifier(cfg, lambda r: httpx.Response(200, json={"Code": "OK"}))
    assert n.deliver(NOTICE, "sms:7:sms").ok
    assert seen[0].headers["X-Key"] == "k-1" and seen[0].headers["Idempotency-Key"] == "sms:7:sms"
    assert json.loads(seen[0].content) == {"to": ["13812345678"], "msg": TEXT, "meta": {"case": "c1"}}
    refused, _ = notifier(cfg, lambda r: httpx.Response(200, json={"Code": "isv.BUSINESS_LIMIT_CONTROL"}))
    result = refused.deliver(NOTICE, "k")
    assert not result.ok and not result.final and "BUSINESS_LIMIT" in result.error


def test_configs_are_checked() -> None:
    with pytest.raises(ValidationError, match="needs username"):
        SmsNotifierConfig.model_validate({"name": "k", "gateway": "kannel", "url": "http://x/sendsms"})
    with pytest.raises(ValidationError, match="may use"):
        SmsNotifierConfig.model_validate({"name": "h", "gateway": "http", "url": "http://x", "body": {"t": "{txt}"}})
    base = {"auth": {"tokens": [{"name": "a", "role": "admin", "sha256": "0" * 64}]},
            "notifiers": [{"type": "sms", "name": "sms-1", "gateway": "http", "url": "http://127.0.0.1:9/send"}],
            "cameras": [{"id": "c", "source": "x.mp4"}]}
    ServiceConfig.model_validate({**base, "reminders": {"channels": ["sms-1"]}})
    with pytest.raises(ValidationError, match=r"reminders: no SMS notifier named \['sms-9'\]"):
        ServiceConfig.model_validate({**base, "reminders": {"channels": ["sms-9"]}})
    with pytest.raises(ValidationError, match="no notifier of cases named"):
        ServiceConfig.model_validate({**base, "cameras": [{"id": "c", "source": "x.mp4", "notify": ["sms-1"]}]})
