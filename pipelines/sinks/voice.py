"""Voice warnings: text-to-speech, G.711 over RTP, HTTP speaker APIs and audit files.

* :class:`TtsEngine` is the small interface a better engine plugs into;
  :class:`EspeakTts` renders with espeak-ng (Mandarin voice ``cmn``) and caches
  WAVs by a hash of text, voice and rate.
* Audio is mono 16-bit PCM resampled to the speaker's rate (8 kHz for G.711).
* :class:`RtpSpeaker` streams G.711 μ-law (PT 0) or A-law (PT 8) in 20 ms packets
  (160 samples) with correct RTP headers and real-time pacing, to a unicast or
  multicast address — the usual IP loudspeaker stream. :class:`HttpSpeaker`
  calls a vendor API (method, URL, headers, body template with the text or the
  audio). :class:`FileSpeaker` writes an audit WAV.

A speaker is driven by its voice notifier (:mod:`pipelines.notifiers.voice`), from the outbox with retries, on
the notifier's own thread in the service: a warning never blocks the frame loop.
"""

from __future__ import annotations

import abc
import base64
import hashlib
import io
import logging
import random
import shutil
import socket
import struct
import subprocess
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Pcm = npt.NDArray[np.int16]
Codec = Literal["pcmu", "pcma"]


class SpeechError(RuntimeError):
    """Speech could not be rendered or played."""


# ---------------------------------------------------------------- audio


def read_wav(path: Path) -> tuple[Pcm, int]:
    """Read a WAV file as mono 16-bit PCM and its sample rate."""
    with wave.open(str(path), "rb") as w:
        rate, ch, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    if width != 2:
        raise SpeechError(f"{path}: only 16-bit PCM WAV is supported")
    pcm = np.frombuffer(raw, "<i2").reshape(-1, ch).mean(axis=1).astype(np.int16)
    return pcm, rate


def write_wav(path: Path, pcm: Pcm, rate: int) -> None:
    """Write mono 16-bit PCM as a WAV file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def resample(pcm: Pcm, rate: int, target: int) -> Pcm:
    """Resample by linear interpolation (speech to telephone rates)."""
    if rate == target or len(pcm) == 0:
        return pcm
    n = round(len(pcm) * target / rate)
    x = np.linspace(0, len(pcm) - 1, n)
    return np.interp(x, np.arange(len(pcm)), pcm.astype(np.float64)).round().astype(np.int16)


def scale(pcm: Pcm, volume: float) -> Pcm:
    """Apply a volume factor (0..2) with clipping."""
    return np.clip(pcm.astype(np.float64) * volume, -32768, 32767).astype(np.int16)


_BIAS = 0x84


_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def ulaw_encode(pcm: Pcm) -> bytes:
    """G.711 μ-law encoding of 16-bit PCM (the reference algorithm on 14-bit samples)."""
    x = pcm.astype(np.int32) >> 2
    negative = x < 0
    mag = np.minimum(np.where(negative, -x, x), 8159) + 0x21
    seg = np.searchsorted(_SEG_UEND, mag)  # first segment whose end is >= mag
    uval = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> (seg + 1)) & 0x0F))  # out of range: the top code
    return (np.where(negative, uval ^ 0x7F, uval ^ 0xFF) & 0xFF).astype(np.uint8).tobytes()


def ulaw_decode(data: bytes) -> Pcm:
    """G.711 μ-law decoding to 16-bit PCM."""
    u = ~np.frombuffer(data, np.uint8).astype(np.int32) & 0xFF
    sign, exponent, mantissa = u & 0x80, (u >> 4) & 0x07, u & 0x0F
    mag = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -mag, mag).astype(np.int16)


def alaw_encode(pcm: Pcm) -> bytes:
    """G.711 A-law encoding of 16-bit PCM."""
    x = pcm.astype(np.int32) >> 3  # 13-bit
    sign = np.where(x >= 0, 0x80, 0)
    mag = np.where(x >= 0, x, -x - 1)
    mag = np.minimum(mag, 0xFFF)
    exponent = np.where(mag < 32, 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4)
    mantissa = np.where(exponent == 0, mag >> 1, mag >> exponent) & 0x0F
    code = sign | (exponent << 4) | mantissa
    return bytes(((code ^ 0x55) & 0xFF).astype(np.uint8).tobytes())


def alaw_decode(data: bytes) -> Pcm:
    """G.711 A-law decoding to 16-bit PCM."""
    a = np.frombuffer(data, np.uint8).astype(np.int32) ^ 0x55
    sign, exponent, mantissa = a & 0x80, (a >> 4) & 0x07, a & 0x0F
    mag = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(sign != 0, mag, -mag).astype(np.int16)


def rtp_packets(payload: bytes, pt: int, ssrc: int, seq0: int = 0, ts0: int = 0, samples: int = 160
                ) -> list[bytes]:
    """Split G.711 bytes (one byte per sample) into RTP packets of ``samples`` samples (20 ms at 8 kHz)."""
    packets = []
    for i, off in enumerate(range(0, len(payload), samples)):
        chunk = payload[off : off + samples]
        marker = 0x80 if i == 0 else 0
        header = struct.pack("!BBHII", 0x80, marker | pt, (seq0 + i) & 0xFFFF, (ts0 + off) & 0xFFFFFFFF, ssrc)
        packets.append(header + chunk)
    return packets


# ---------------------------------------------------------------- speech


class TtsEngine(abc.ABC):
    """Turns text into mono 16-bit PCM."""

    @abc.abstractmethod
    def render(self, text: str) -> tuple[Pcm, int]:
        """Return PCM samples and their rate."""


class EspeakTts(TtsEngine):
    """espeak-ng (Debian package ``espeak-ng``) rendered to 8 or 16 kHz WAV, cached by a hash of text and voice."""

    def __init__(self, cache: Path, voice: str = "cmn", speed: int = 150, rate: Literal[8000, 16000] = 16000) -> None:
        self.cache, self.voice, self.speed, self.rate = cache, voice, speed, rate
        self.binary = shutil.which("espeak-ng")
        self._lock = threading.Lock()  # speakers' delivery threads share one engine: render each text once

    def render(self, text: str) -> tuple[Pcm, int]:
        """Render text to speech (from the cache when it was rendered before); safe from several threads."""
        key = hashlib.sha256(f"espeak-ng|{self.voice}|{self.speed}|{self.rate}|{text}".encode()).hexdigest()[:24]
        path = self.cache / f"{key}.wav"
        with self._lock:
            if not path.exists():
                self._render(text, path)
        return read_wav(path)

    def _render(self, text: str, path: Path) -> None:
        if self.binary is None:
            raise SpeechError("espeak-ng is not installed (apt-get install espeak-ng)")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.wav")
        proc = subprocess.run([self.binary, "-v", self.voice, "-s", str(self.speed), "-w", str(tmp), text],
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0 or not tmp.exists():
            raise SpeechError(f"espeak-ng failed: {proc.stderr.strip()[:200]}")
        pcm, rate = read_wav(tmp)
        write_wav(tmp, resample(pcm, rate, self.rate), self.rate)
        tmp.replace(path)


def load_audio(path: Path) -> tuple[Pcm, int]:
    """A pre-recorded message: WAV directly, MP3 (and others) through PyAV."""
    if path.suffix.lower() == ".wav":
        return read_wav(path)
    import av

    chunks = []
    with av.open(str(path)) as c:
        resampler = av.AudioResampler(format="s16", layout="mono")
        rate = c.streams.audio[0].rate
        for frame in c.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        raise SpeechError(f"{path}: no audio")
    return np.concatenate(chunks).astype(np.int16), int(rate)


# ---------------------------------------------------------------- speakers


@dataclass(frozen=True)
class Message:
    """One warning to play."""

    text: str
    pcm: Pcm
    rate: int
    volume: float = 1.0


class Speaker(abc.ABC):
    """A loudspeaker (or an audit sink) that plays messages."""

    name: str

    @abc.abstractmethod
    def play(self, msg: Message) -> None:
        """Play a message; raises on failure (the worker retries)."""


class RtpSpeaker(Speaker):
    """G.711 over RTP/UDP to ``host:port`` (unicast or multicast), paced in real time.

    ``clock`` and ``sleep`` pace the packets (the monotonic clock by default; a test passes its own).
    """

    def __init__(self, name: str, host: str, port: int, codec: Codec = "pcmu", ttl: int = 4,
                 pace: bool = True, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name, self.host, self.port, self.codec, self.pace = name, host, port, codec, pace
        self.ttl, self.clock, self.sleep = ttl, clock, sleep

    def play(self, msg: Message) -> None:
        """Send the message as 20 ms RTP packets."""
        pcm = scale(resample(msg.pcm, msg.rate, 8000), msg.volume)
        payload = ulaw_encode(pcm) if self.codec == "pcmu" else alaw_encode(pcm)
        pt = 0 if self.codec == "pcmu" else 8
        packets = rtp_packets(payload, pt, ssrc=random.getrandbits(32), seq0=random.getrandbits(16),
                              ts0=random.getrandbits(32))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.ttl)
            start = self.clock()
            for i, pkt in enumerate(packets):
                if self.pace:
                    delay = start + i * 0.02 - self.clock()
                    if delay > 0:
                        self.sleep(delay)  # real-time pacing of the audio stream itself
                s.sendto(pkt, (self.host, self.port))


class HttpSpeaker(Speaker):
    """A vendor speaker API: ``{text}``, ``{audio_b64}`` (WAV) and ``{volume}`` fill the body template."""

    def __init__(self, name: str, url: str, method: str = "POST", headers: dict[str, str] | None = None,
                 body: str = '{{"text": "{text}", "volume": {volume}}}', timeout_s: float = 10.0) -> None:
        self.name, self.url, self.method = name, url, method
        self.headers = headers or {"Content-Type": "application/json"}
        self.body, self.timeout_s = body, timeout_s

    def play(self, msg: Message) -> None:
        """Call the API; any non-2xx answer is a failure."""
        import httpx

        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(msg.rate)
            w.writeframes(msg.pcm.astype("<i2").tobytes())
        body = self.body.format(text=msg.text.replace('"', '\\"'), volume=msg.volume,
                                audio_b64=base64.b64encode(buf.getvalue()).decode())
        r = httpx.request(self.method, self.url, content=body.encode(), headers=self.headers, timeout=self.timeout_s)
        if not 200 <= r.status_code < 300:
            raise SpeechError(f"{self.url}: HTTP {r.status_code}")


class FileSpeaker(Speaker):
    """Writes each message as a WAV into a folder (audit trail, and batch simulation)."""

    def __init__(self, name: str, folder: Path) -> None:
        self.name, self.folder = name, folder
        self.played: list[Path] = []

    def play(self, msg: Message) -> None:
        """Write ``<time>_<hash>.wav``."""
        key = hashlib.sha256(msg.text.encode()).hexdigest()[:8]
        path = self.folder / f"{time.strftime('%Y%m%dT%H%M%S')}_{len(self.played):04d}_{key}.wav"
        write_wav(path, scale(msg.pcm, msg.volume), msg.rate)
        self.played.append(path)
