"""Speech in-process: G.711 codecs, RTP packets, the speak command to a file, prerecorded audio.

The speakers that talk to real sockets and servers (RTP, HTTP, espeak-ng) are in tests/integration/test_voice_io.py."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.sinks.voice import (
    alaw_decode,
    alaw_encode,
    rtp_packets,
    ulaw_decode,
    ulaw_encode,
)
from service.cli import main
from tests.helpers.audio import TONE


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
