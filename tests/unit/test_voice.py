"""Speech and speakers: G.711 codecs, RTP to a real receiver socket, an HTTP speaker that fails first."""

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

from pipelines.cli import main
from pipelines.sinks.voice import (
    EspeakTts,
    FileSpeaker,
    HttpSpeaker,
    Message,
    RtpSpeaker,
    SpeakerWorker,
    alaw_decode,
    alaw_encode,
    read_wav,
    resample,
    rtp_packets,
    ulaw_decode,
    ulaw_encode,
)
from tests.service.conftest import wait_for

TONE = (np.sin(np.linspace(0, 2 * np.pi * 440, 8000)) * 12000).astype(np.int16)  # 1 s of 440 Hz at 8 kHz


@pytest.mark.parametrize(("enc", "dec"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_g711_round_trip(enc: Any, dec: Any) -> None:
    data = enc(TONE)
    assert len(data) == len(TONE)
    back = dec(data)
    assert np.corrcoef(back, TONE)[0, 1] > 0.999
    assert np.abs(back.astype(int) - TONE).max() < 600  # logarithmic quantisation step at 12000


def test_ulaw_known_codes() -> None:
    # codes as the G.711 reference (audioop) gives them
    assert ulaw_encode(np.array([0, -1, 32767, -32768], np.int16)) == bytes([0xFF, 0x7E, 0x80, 0x00])


def test_rtp_headers() -> None:
    pkts = rtp_packets(b"\x01" * 400, pt=0, ssrc=0xDEADBEEF, seq0=65535, ts0=1000)
    assert [len(p) for p in pkts] == [172, 172, 92]
    v, m_pt, seq, ts, ssrc = struct.unpack("!BBHII", pkts[1][:12])
    assert (v, m_pt, seq, ts, ssrc) == (0x80, 0, 0, 1160, 0xDEADBEEF)
    assert pkts[0][1] == 0x80  # marker on the first packet of a talk spurt


@pytest.mark.parametrize(("codec", "pt"), [("pcmu", 0), ("pcma", 8)])
def test_rtp_speaker_to_a_real_receiver(codec: str, pt: int) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    received: list[tuple[float, bytes]] = []

    def receive() -> None:
        try:
            while len(received) < 50:
                received.append((time.monotonic(), rx.recv(2048)))
        except TimeoutError:
            pass

    t = threading.Thread(target=receive)
    t.start()
    RtpSpeaker("test", "127.0.0.1", rx.getsockname()[1], codec).play(Message("tone", TONE, 8000))  # type: ignore[arg-type]
    t.join(10)
    rx.close()
    assert len(received) == 50  # 1 s in 20 ms packets
    headers = [struct.unpack("!BBHII", p[:12]) for _, p in received]
    assert {h[1] & 0x7F for h in headers} == {pt} and len({h[4] for h in headers}) == 1
    assert [(h[2] - headers[0][2]) & 0xFFFF for h in headers] == list(range(50))
    assert [(h[3] - headers[0][3]) & 0xFFFFFFFF for h in headers] == [160 * i for i in range(50)]
    gaps = np.diff([ts for ts, _ in received])
    assert 0.015 < float(np.median(gaps)) < 0.025  # paced in real time
    payload = b"".join(p[12:] for _, p in received)
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


def test_http_speaker_that_fails_first_is_retried_and_file_audit(tmp_path: Path) -> None:
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
    worker = SpeakerWorker(HttpSpeaker("vendor", f"http://127.0.0.1:{srv.server_address[1]}/play"), attempts=4,
                           backoff_s=0.01)
    assert worker.submit(Message("请勿焚烧垃圾", TONE, 8000, volume=0.8))
    wait_for(lambda: worker.played == 1, 20, "played")
    assert len(calls) == 3 and calls[-1] == {"text": "请勿焚烧垃圾", "volume": 0.8} and worker.health == "ok"
    dead = SpeakerWorker(HttpSpeaker("gone", "http://127.0.0.1:9/none", timeout_s=1), attempts=2, backoff_s=0.01)
    dead.submit(Message("x", TONE, 8000))
    wait_for(lambda: dead.failed == 1, 20, "failure")
    assert dead.health == "failed" and dead.last_error
    srv.shutdown()
    audit = FileSpeaker("audit", tmp_path / "audit")
    audit.play(Message("x", TONE, 8000, volume=0.5))
    pcm, rate = read_wav(audit.played[0])
    assert rate == 8000 and abs(int(pcm.max()) - 6000) < 10


def test_speak_cli_to_file_with_prerecorded_audio(tmp_path: Path) -> None:
    from pipelines.sinks.voice import write_wav

    write_wav(tmp_path / "msg.wav", TONE, 8000)
    assert main(["speak", "test", "--audio", str(tmp_path / "msg.wav"), "--to", f"file://{tmp_path / 'out'}"]) == 0
    assert len(list((tmp_path / "out").glob("*.wav"))) == 1
    assert main(["speak", "x", "--audio", str(tmp_path / "none.wav"), "--to", f"file://{tmp_path}"]) == 2


def test_prerecorded_mp3_is_decoded(tmp_path: Path) -> None:
    import av

    from pipelines.sinks.voice import load_audio

    tone16k = (np.sin(np.linspace(0, 2 * np.pi * 440, 16000)) * 12000).astype(np.int16)
    with av.open(str(tmp_path / "m.mp3"), "w") as c:
        s = c.add_stream("libmp3lame", rate=16000)
        s.layout = "mono"
        fr = av.AudioFrame.from_ndarray(tone16k.reshape(1, -1), format="s16", layout="mono")
        fr.sample_rate = 16000
        for p in [*s.encode(fr), *s.encode()]:
            c.mux(p)
    pcm, rate = load_audio(tmp_path / "m.mp3")
    assert rate == 16000 and abs(len(pcm) - 16000) < 1200
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    assert abs(np.argmax(spectrum) * rate / len(pcm) - 440) < 5  # the tone survived the codec
