"""The live warning loop: a warning reaches a real RTP receiver; dispatch waits for the re-check."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

import httpx

from service.settings import ServiceConfig
from tests.helpers.data import DATA
from tests.helpers.net import free_port, wait_for
from tests.helpers.service import TOKENS, Receiver, running_service


def test_warning_over_rtp_then_dispatch_after_no_effect(tmp_path: Path) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(0.5)
    packets: list[bytes] = []
    stop = threading.Event()

    def receive() -> None:
        while not stop.is_set():
            try:
                packets.append(rx.recv(2048))
            except TimeoutError:
                continue

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    hook, vendor = Receiver(), Receiver()
    hook.start()
    vendor.start()
    audit = tmp_path / "audit"
    cfg = ServiceConfig.model_validate({
        "server": {"port": free_port()},
        "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"}]},
        "storage": {"db": str(tmp_path / "cases.db"), "evidence": str(tmp_path / "evidence")},
        "dispatch": {"webhooks": [{"name": "city", "url": f"http://127.0.0.1:{hook.port}/cases"}]},
        "voice": {"cache": str(tmp_path / "tts"), "speakers": [
            {"name": "pole-1", "type": "rtp", "host": "127.0.0.1", "port": rx.getsockname()[1]},
            {"name": "audit", "type": "file", "folder": str(audit)},
            {"name": "vendor", "type": "http", "url": f"http://127.0.0.1:{vendor.port}/play"}]},
        "cameras": [{"id": "warn-cam", "source": str(DATA / "clips" / "reg_violations_b.mp4"),
                     "zones": [{"id": "pavement", "polygon": [[0.44, 0.0], [1.0, 0.0], [1.0, 1.0], [0.74, 1.0]],
                                "violations": ["street_stall"],
                                "warnings": {"violations": ["street_stall"], "speakers": ["pole-1", "audit", "vendor"],
                                             "recheck_s": 4, "max_repeats": 1,
                                             "messages": {"street_stall": "请勿占道经营"}}}]}],
        "rules": {"dwell_s": {"street_stall": 2}, "gap_tolerance_s": 3},
    })
    headers = {"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}
    try:
        with running_service(cfg) as url, httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            case = wait_for(lambda: c.get("/api/cases").json()["items"], 60, "a case")[0]
            # The case exists but is not dispatched yet: the warning comes first.
            assert c.get(f"/api/cases/{case['id']}").json()["dispatch"] == []
            wait_for(lambda: len(packets) >= 20, 60, "RTP warning audio")
            v, pt, _seq, _ts, _ssrc = struct.unpack("!BBHII", packets[0][:12])
            assert v == 0x80 and pt & 0x7F == 0
            wait_for(lambda: list(audit.glob("*.wav")), 30, "audit copy")
            # The stall stays: after the re-check the case is dispatched, noted as warned_no_effect.
            detail = wait_for(lambda: (d := c.get(f"/api/cases/{case['id']}").json())["dispatch"] and d, 60,
                              "dispatch after the re-check")
            assert "warned_no_effect" in [h["note"] for h in detail["history"]]
            wait_for(lambda: hook.requests, 30, "webhook delivery")
            spk = {s["name"]: s for s in c.get("/api/speakers").json()}
            assert spk["pole-1"]["played"] >= 1 and spk["pole-1"]["health"] == "ok"
            assert vendor.requests[0]["body"] == {"text": "请勿占道经营", "volume": 1.0}
            stats = c.get("/api/warnings").json()["warn-cam/pavement/street_stall"]
            assert stats["played"] == 1 and stats["no_effect"] == 1 and stats["share_resolved"] == 0.0
            assert ('streetwatch_warnings_played_total{camera="warn-cam",zone="pavement",violation="street_stall"} 1.0'
                    in c.get("/metrics").text)
    finally:
        stop.set()
        receiver.join(5)
        hook.stop()
        vendor.stop()
        rx.close()
