"""Speakers against real peers on 127.0.0.1: RTP to a receiver socket (paced, and espeak-ng's Mandarin
unpaced), and an HTTP speaker whose server fails first; then the file speaker's audit copy."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector.events import EventState, ViolationEvent
from pipelines.notifiers.notice import Notice
from pipelines.notifiers.outbox import deliver_due
from pipelines.notifiers.voice import VoiceNotifier, VoiceNotifierConfig
from pipelines.sinks.store import CaseStore
from pipelines.sinks.voice import (
    EspeakTts,
    FileSpeaker,
    Message,
    RtpSpeaker,
    alaw_decode,
    read_wav,
    resample,
    ulaw_decode,
    write_wav,
)
from tests.helpers.audio import TONE


class SpeakerClock:
    """The speaker's clock: it moves only when the speaker sleeps, plus ``tick`` seconds of work per reading, so
    pacing is checked without measuring wall-clock time."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick
        self.readings: list[float] = []
        self.wakeups: list[float] = []

    def monotonic(self) -> float:
        self.now += self.tick
        self.readings.append(self.now)
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds
        self.wakeups.append(self.now)


@pytest.mark.parametrize(("codec", "pt"), [("pcmu", 0), ("pcma", 8)])
def test_rtp_speaker_to_a_real_receiver(codec: str, pt: int) -> None:
    clock = SpeakerClock(tick=0.003)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    received: list[bytes] = []

    def receive() -> None:
        try:
            while len(received) < 50:
                received.append(rx.recv(2048))
        except TimeoutError:
            pass

    t = threading.Thread(target=receive)
    t.start()
    RtpSpeaker("test", "127.0.0.1", rx.getsockname()[1], codec, clock=clock.monotonic,  # type: ignore[arg-type]
               sleep=clock.sleep).play(Message("tone", TONE, 8000))
    t.join(10)
    rx.close()
    assert len(received) == 50  # 1 s in 20 ms packets
    headers = [struct.unpack("!BBHII", p[:12]) for p in received]
    assert {h[1] & 0x7F for h in headers} == {pt} and len({h[4] for h in headers}) == 1
    assert [(h[2] - headers[0][2]) & 0xFFFF for h in headers] == list(range(50))
    assert [(h[3] - headers[0][3]) & 0xFFFFFFFF for h in headers] == [160 * i for i in range(50)]
    # Paced in real time: before each packet after the first the speaker sleeps until that packet is due,
    # 20 ms after the one before, however long its own work took (no drift), so 1 s of audio takes 1 s to send.
    assert len(clock.wakeups) == 49
    assert np.allclose(np.diff(clock.wakeups), 0.02)
    assert clock.wakeups[-1] - clock.readings[0] == pytest.approx(0.98)
    payload = b"".join(p[12:] for p in received)
    pcm = ulaw_decode(payload) if codec == "pcmu" else alaw_decode(payload)
    assert len(pcm) == 8000 and np.corrcoef(pcm, TONE)[0, 1] > 0.999


def test_espeak_mandarin_is_cached_and_played_over_rtp(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("espeak-ng is required in CI (scripts/install-test-services.sh)")
        pytest.skip("espeak-ng not installed (scripts/install-test-services.sh)")
    tts = EspeakTts(tmp_path / "cache")
    pcm, rate = tts.render("您好，此处禁止占道经营，请立即收摊离开，谢谢配合。")
    assert rate == 16000 and 2.0 < len(pcm) / rate < 12.0
    assert len(list((tmp_path / "cache").glob("*.wav"))) == 1
    again, _ = tts.render("您好，此处禁止占道经营，请立即收摊离开，谢谢配合。")
    assert np.array_equal(again, pcm)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)  # the unpaced burst must not overflow it
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(3)
    got: list[bytes] = []

    def receive() -> None:
        try:
            while True:
                got.append(rx.recv(2048))
        except TimeoutError:
            pass

    t = threading.Thread(target=receive)
    t.start()
    RtpSpeaker("t", "127.0.0.1", rx.getsockname()[1], pace=False).play(Message("x", pcm, rate))
    t.join(10)
    rx.close()
    decoded = ulaw_decode(b"".join(p[12:] for p in got))
    reference = resample(pcm, rate, 8000)
    assert abs(len(decoded) - len(reference)) < 160
    n = min(len(decoded), len(reference))
    assert np.corrcoef(decoded[:n], reference[:n])[0, 1] > 0.98  # the WAV arrived, not noise


def _case(store: CaseStore) -> str:
    return store.record(ViolationEvent(EventState.START, "cam:z:street_stall:1", "cam", "z", "street_stall",
                                       start_s=1.0, ts=5.0, confidence=0.8, box=(10, 20, 30, 40), best_ts=5.0,
                                       track_ids=(1,)), "clip")


def _warning(case_id: str, audio: Path) -> dict[str, Any]:
    return Notice(kind="warning", case_id=case_id, violation="street_stall", camera="cam", zone="z",
                  text="请勿焚烧垃圾", audio=str(audio), volume=0.8).model_dump(mode="json", exclude={"kind"})


def test_http_speaker_that_fails_first_is_retried_from_the_outbox_and_file_audit(tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            calls.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(503 if len(calls) < 3 else 200)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    store = CaseStore(tmp_path / "cases.db")
    case_id = _case(store)
    recorded = tmp_path / "recorded.wav"  # a recorded warning: no speech engine needed
    write_wav(recorded, TONE, 8000)
    tts = EspeakTts(tmp_path / "tts")
    url = f"http://127.0.0.1:{srv.server_address[1]}/play"
    vendor = VoiceNotifier(VoiceNotifierConfig(name="vendor", transport="http", url=url, attempts=4,
                                               backoff_s=0.01), tts)
    assert store.enqueue_notice(case_id, "vendor", "warning", "w1", _warning(case_id, recorded))
    assert not store.enqueue_notice(case_id, "vendor", "warning", "w1", _warning(case_id, recorded))  # queued once
    clock = time.time()
    for _ in range(3):  # two 503s, then played; each retry is due after the speaker's backoff
        clock += 1.0
        assert deliver_due(store, vendor, now=clock) == 1
    assert len(calls) == 3 and calls[-1] == {"text": "请勿焚烧垃圾", "volume": 0.8}
    assert vendor.played == 1 and vendor.health == "ok"
    assert [(r["kind"], r["state"], r["attempts"]) for r in store.outbox(case_id=case_id)] == [("warning",
                                                                                                "delivered", 3)]
    assert store.get(case_id).state == "registered"  # a warning played is not the case's dispatch
    gone = VoiceNotifier(VoiceNotifierConfig(name="gone", transport="http", url="http://127.0.0.1:9/none",
                                             attempts=2, backoff_s=0.01), tts)
    store.enqueue_notice(case_id, "gone", "warning", "w2", _warning(case_id, recorded))
    clock += 1.0
    deliver_due(store, gone, now=clock)
    deliver_due(store, gone, now=clock + 1.0)
    dead = store.outbox(case_id=case_id, state="dead")
    assert [r["target"] for r in dead] == ["gone"] and dead[0]["last_error"] and gone.health == "failing"
    store.close()
    srv.shutdown()
    audit = FileSpeaker("audit", tmp_path / "audit")
    audit.play(Message("x", TONE, 8000, volume=0.5))
    pcm, rate = read_wav(audit.played[0])
    assert rate == 8000 and abs(int(pcm.max()) - 6000) < 10
