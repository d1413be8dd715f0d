"""The Kannel harness (tests/helpers/kannel.py) against the real gateway: a UTF-8 Chinese message through
smsbox's sendsms reaches the fake SMSC intact as UCS-2, and its delivery reports reach a loopback receiver."""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.helpers.kannel import Kannel, kannel_or_skip, running_kannel
from tests.helpers.net import wait_for

TO = "13800138000"
TEXT = "您好，请清理门前垃圾。"


@dataclass
class DlrReceiver:
    """An HTTP server on 127.0.0.1 recording the query of every GET (Kannel's dlr-url callbacks)."""

    server: ThreadingHTTPServer
    queries: list[dict[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/dlr"


@pytest.fixture(scope="module")
def kannel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kannel]:
    kannel_or_skip()
    with running_kannel(tmp_path_factory.mktemp("kannel")) as k:
        yield k


@pytest.fixture()
def dlr() -> Iterator[DlrReceiver]:
    queries: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = urllib.parse.urlsplit(self.path).query
            queries.append(dict(urllib.parse.parse_qsl(query, keep_blank_values=True)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield DlrReceiver(server, queries)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_chinese_sms_reaches_the_operator_and_reports_come_back(kannel: Kannel, dlr: DlrReceiver) -> None:
    before = len(kannel.received())
    r = httpx.get(kannel.sendsms_url, params={
        "username": kannel.username, "password": kannel.password, "to": TO, "text": TEXT,
        "charset": "UTF-8", "coding": "2", "dlr-mask": "31",
        # Kannel fills in %d (the report's type) and %A (the SMSC's answer) when it calls back.
        "dlr-url": f"{dlr.url}?id=abc&type=%d&status=%A",
    }, timeout=10.0)
    assert (r.status_code, r.text) == (202, "0: Accepted for delivery")

    sms = kannel.wait_received(before + 1)[before:]
    assert len(sms) == 1, sms
    assert (sms[0].to, sms[0].sender, sms[0].kind) == (TO, kannel.default_sender, "ucs-2")
    assert sms[0].text == TEXT
    assert sms[0].payload == TEXT.encode("utf-16-be")

    # The fake link reports 8 (SMSC accepted; status "ACK/") on hand-over, then 1 (delivered; status empty).
    reports = wait_for(lambda: dlr.queries if {"1", "8"} <= {q.get("type") for q in dlr.queries} else None,
                       timeout=10.0, what="delivery reports 8 and 1")
    assert all(q["id"] == "abc" for q in reports), reports
    assert sorted(q["type"] for q in reports) == ["1", "8"], reports
    assert {q["type"]: q["status"] for q in reports} == {"8": "ACK/", "1": ""}


def test_sendsms_rejections(kannel: Kannel) -> None:
    base = {"username": kannel.username, "password": kannel.password, "to": TO, "text": "x"}
    cases = [
        ({**base, "password": "wrong"}, 403, "Authorization failed for sendsms"),
        ({k: v for k, v in base.items() if k != "to"}, 400, "Missing receiver number, rejected"),
    ]
    for params, status, body in cases:
        r = httpx.get(kannel.sendsms_url, params=params, timeout=10.0)
        assert (r.status_code, r.text) == (status, body)
