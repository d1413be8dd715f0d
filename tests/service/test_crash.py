"""kill -9 of `streetwatch serve` while it writes cases: nothing reported is lost, nothing is dispatched twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import yaml

from tests.helpers.data import DATA
from tests.helpers.net import free_port, wait_for
from tests.helpers.service import TOKENS, Receiver, service_up


def start(config: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, **TOKENS}
    return subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--config", str(config), "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_kill_9_then_restart_keeps_every_reported_case_and_dispatches_once(tmp_path: Path) -> None:
    hook = Receiver()
    hook.start()
    port = free_port()
    config = tmp_path / "service.yaml"
    config.write_text(yaml.safe_dump({
        "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"}]},
        "storage": {"db": str(tmp_path / "cases.db"), "evidence": str(tmp_path / "evidence")},
        "dispatch": {"webhooks": [{"name": "city", "url": f"http://127.0.0.1:{hook.port}/cases", "backoff_s": 0.2}]},
        "cameras": [{"id": f"cam{i}", "source": str(DATA / "clips" / name),
                     "zones": [{"id": "all", "polygon": [[0.44, 0.0], [1.0, 0.0], [1.0, 1.0], [0.74, 1.0]]}]}
                    for i, name in enumerate(["reg_violations_a.mp4", "reg_violations_b.mp4"])],
        "rules": {"dwell_s": {"street_stall": 1, "garbage": 1, "barbecue": 1}, "gap_tolerance_s": 3},
    }))
    headers = {"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}
    base = f"http://127.0.0.1:{port}"
    reported: set[str] = set()

    def listen() -> None:
        try:
            with httpx.Client(base_url=base, headers=headers, timeout=None) as c, c.stream("GET", "/api/events") as s:
                for line in s.iter_lines():
                    if line.startswith("data: ") and '"case_id"' in line:
                        reported.add(json.loads(line[6:])["case_id"])
        except httpx.HTTPError:
            pass  # the server was killed

    proc = start(config, port)
    try:
        wait_for(lambda: service_up(base), 60, "service up")
        threading.Thread(target=listen, daemon=True).start()
        wait_for(lambda: len(reported) >= 3, 60, "three cases reported over SSE")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_with = set(reported)
        proc = start(config, port)
        wait_for(lambda: service_up(base), 60, "service up again")
        with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
            items = c.get("/api/cases", params={"limit": 500}).json()["items"]
            ids = {x["id"] for x in items}
            assert killed_with <= ids, f"lost after kill -9: {killed_with - ids}"
            # The killed run's tracking is gone: its cases are not left "active" forever.
            first_run = [x for x in items if x["id"] in killed_with]
            assert not any(x["active"] for x in first_run)
            notes = [h["note"] for x in first_run for h in c.get(f"/api/cases/{x['id']}").json()["history"]]
            assert any(n.startswith("tracking restarted") for n in notes)  # killed while violations were open
            wait_for(lambda: not c.get("/api/outbox", params={"state": "pending"}).json(), 60, "outbox drained")
            delivered = c.get("/api/outbox", params={"state": "delivered"}).json()
        by_key: dict[str, set[str]] = {}
        for r in hook.requests:
            by_key.setdefault(r["key"], set()).add(r["body"]["case_id"])
        assert all(len(cases) == 1 for cases in by_key.values())
        assert {r["idempotency_key"] for r in delivered} <= set(by_key)
        assert len({r["body"]["case_id"] for r in hook.requests}) == len(by_key)  # one key per case
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        hook.stop()

