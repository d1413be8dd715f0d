"""A warning spoken on a loudspeaker near the cameras ("remote voice persuasion").

The words are rendered with espeak-ng (Mandarin by default, cached) or a recorded file is played, on an RTP
G.711 stream (the usual IP loudspeaker), a vendor's HTTP API, or into an audit folder of WAV files. A warning
that could not be played within ``max_age_s`` is dropped (dead-lettered): a late warning is noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pipelines.config import StrictKind
from pipelines.notifiers.notice import Delivery, Notice, NoticeKind, RetryPolicy
from pipelines.sinks.voice import (
    EspeakTts,
    FileSpeaker,
    HttpSpeaker,
    Message,
    RtpSpeaker,
    Speaker,
    SpeechError,
    load_audio,
)


class VoiceNotifierConfig(StrictKind):
    """A loudspeaker: an RTP G.711 stream, a vendor HTTP API, or an audit folder."""

    type: Literal["voice"] = "voice"
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    transport: Literal["rtp", "http", "file"]
    host: str | None = Field(default=None, description="rtp: unicast or multicast address.")
    port: int | None = Field(default=None, ge=1, le=65535, description="rtp: UDP port.")
    codec: Literal["pcmu", "pcma"] = Field(default="pcmu", description="rtp: G.711 law.")
    ttl: int = Field(default=4, ge=1, le=255, description="rtp: multicast TTL.")
    url: str | None = Field(default=None, pattern=r"^https?://", description="http: the speaker API.")
    method: str = Field(default="POST")
    headers: dict[str, str] = Field(default_factory=dict)
    body: str = Field(default='{{"text": "{text}", "volume": {volume}}}',
                      description="http: body template with {text}, {volume}, {audio_b64} (WAV).")
    folder: Path | None = Field(default=None, description="file: where audit WAVs go.")
    attempts: int = Field(default=3, ge=1, le=20)
    backoff_s: float = Field(default=1.0, gt=0, le=600)
    max_age_s: float = Field(default=60.0, gt=0, le=3600, description="A warning not played by then is dropped.")

    @model_validator(mode="after")
    def _fields_of_transport(self) -> VoiceNotifierConfig:
        need = {"rtp": ("host", "port"), "http": ("url",), "file": ("folder",)}[self.transport]
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a {self.transport} speaker needs {', '.join(missing)}")
        return self


def build_speaker(cfg: VoiceNotifierConfig) -> Speaker:
    """The speaker a config describes."""
    if cfg.transport == "rtp":
        assert cfg.host is not None and cfg.port is not None
        return RtpSpeaker(cfg.name, cfg.host, cfg.port, cfg.codec, cfg.ttl)
    if cfg.transport == "http":
        assert cfg.url is not None
        return HttpSpeaker(cfg.name, cfg.url, cfg.method, cfg.headers or None, cfg.body)
    assert cfg.folder is not None
    return FileSpeaker(cfg.name, cfg.folder)


class VoiceNotifier:
    """Speaks warning notices on one loudspeaker.

    Args:
        cfg: The speaker and its retry policy.
        tts: The text-to-speech engine (shared by every speaker; it caches what it rendered).
        speaker: The speaker itself (default: built from ``cfg``).
    """

    kinds: frozenset[NoticeKind] = frozenset({"warning"})

    def __init__(self, cfg: VoiceNotifierConfig, tts: EspeakTts, speaker: Speaker | None = None) -> None:
        self.name, self.cfg, self.tts = cfg.name, cfg, tts
        self.speaker = speaker or build_speaker(cfg)
        self.policy = RetryPolicy(cfg.attempts, cfg.backoff_s, cfg.backoff_s * 8, cfg.max_age_s)
        self.health = "ok"
        self.played = 0
        self.failed = 0
        self.last_error = ""

    def deliver(self, notice: Notice, key: str) -> Delivery:
        try:
            pcm, rate = load_audio(Path(notice.audio)) if notice.audio else self.tts.render(notice.text)
        except (SpeechError, OSError) as exc:
            self.failed += 1
            self.last_error = str(exc)[:300]
            return Delivery(False, f"not rendered: {exc}")
        try:
            self.speaker.play(Message(notice.text, pcm, rate, notice.volume))
        except Exception as exc:  # an unreachable speaker: retried by the outbox
            self.health, self.last_error = "failing", str(exc)[:300]
            self.failed += 1
            return Delivery(False, f"{type(exc).__name__}: {exc}")
        self.health, self.played = "ok", self.played + 1
        return Delivery(True)

    def status(self) -> dict[str, object]:
        return {"name": self.name, "type": "voice", "health": self.health, "played": self.played,
                "failed": self.failed, "last_error": self.last_error}

    def close(self) -> None:
        """Nothing held between deliveries."""
