"""Voice warnings in the live service: rendering and playing never block the frame loop.

The camera pipeline hands a warning to :meth:`VoiceService.warn`, which only
queues it; a worker thread renders the speech (espeak-ng, cached) or loads the
pre-recorded file, and each named speaker's own :class:`SpeakerWorker` plays it
with retries and keeps its health.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from detector.warnings import WarningAction
from pipelines.config import CameraConfig
from pipelines.sinks.voice import (
    EspeakTts,
    FileSpeaker,
    HttpSpeaker,
    Message,
    RtpSpeaker,
    Speaker,
    SpeakerWorker,
    load_audio,
)
from service.settings import SpeakerConfig, VoiceConfig

log = logging.getLogger(__name__)


def build_speaker(cfg: SpeakerConfig) -> Speaker:
    """The speaker a config describes."""
    if cfg.type == "rtp":
        assert cfg.host is not None and cfg.port is not None
        return RtpSpeaker(cfg.name, cfg.host, cfg.port, cfg.codec, cfg.ttl)
    if cfg.type == "http":
        assert cfg.url is not None
        return HttpSpeaker(cfg.name, cfg.url, cfg.method, cfg.headers or None, cfg.body)
    assert cfg.folder is not None
    return FileSpeaker(cfg.name, cfg.folder)


@dataclass(frozen=True)
class _Job:
    text: str
    audio: Path | None
    speakers: tuple[str, ...]
    volume: float
    info: dict[str, object]


class VoiceService:
    """Speaker workers plus one rendering thread."""

    def __init__(self, cfg: VoiceConfig, publish: Callable[[str, dict[str, object]], None]) -> None:
        self.workers = {s.name: SpeakerWorker(build_speaker(s), s.attempts, s.backoff_s) for s in cfg.speakers}
        self.tts = EspeakTts(cfg.cache, cfg.tts_voice)
        self.publish = publish
        self.jobs: queue.Queue[_Job | None] = queue.Queue(64)
        self.warnings_played = 0
        self.thread = threading.Thread(target=self._run, name="voice", daemon=True)
        self.thread.start()

    def warn(self, camera: CameraConfig, action: WarningAction, case_id: str) -> None:
        """Queue a warning of a camera's zone (returns at once)."""
        zone = next((z for z in camera.zones if z.id == action.zone), None)
        if zone is None or zone.warnings is None:
            return
        w = zone.warnings
        audio = w.audio.get(action.violation)  # type: ignore[call-overload]
        info: dict[str, object] = {"camera": camera.id, "zone": action.zone, "violation": action.violation,
                                   "case_id": case_id, "repeat": action.repeat, "text": action.text}
        try:
            self.jobs.put_nowait(_Job(action.text, audio, tuple(w.speakers), w.volume, info))
        except queue.Full:
            log.error("voice queue full: warning for case %s dropped", case_id)

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                pcm, rate = load_audio(job.audio) if job.audio else self.tts.render(job.text)
            except Exception as exc:  # speech must never stop the service
                log.error("warning could not be rendered: %s", exc)
                continue
            msg = Message(job.text, pcm, rate, job.volume)
            sent = [name for name in job.speakers if name in self.workers and self.workers[name].submit(msg)]
            self.warnings_played += 1
            self.publish("warning", {**job.info, "speakers": sent})

    def status(self) -> list[dict[str, object]]:
        """Health and counters of each speaker."""
        return [{"name": n, "health": w.health, "played": w.played, "failed": w.failed, "last_error": w.last_error,
                 "queue": w.queue.qsize()} for n, w in self.workers.items()]

    def close(self) -> None:
        """Stop rendering and let the speakers finish."""
        self.jobs.put(None)
        self.thread.join(10)
        for w in self.workers.values():
            w.close(10)
