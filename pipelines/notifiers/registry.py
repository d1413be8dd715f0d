"""Every notifier kind, told apart by ``type``: a new kind is one module plus one line in each of these."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from pipelines.notifiers.notice import Notifier
from pipelines.notifiers.voice import VoiceNotifier, VoiceNotifierConfig
from pipelines.notifiers.webhook import WebhookNotifier, WebhookNotifierConfig
from pipelines.sinks.voice import EspeakTts

NotifierConfig = Annotated[WebhookNotifierConfig | VoiceNotifierConfig, Field(discriminator="type")]
"""Any notifier's config (``type: webhook | voice``)."""


def build_notifiers(configs: list[WebhookNotifierConfig | VoiceNotifierConfig], public_url: str = "",
                    tts_cache: Path = Path("out/tts-cache"), tts_voice: str = "cmn") -> dict[str, Notifier]:
    """The notifiers of a config, by name.

    Args:
        configs: The notifiers' configs (names are unique).
        public_url: Base URL of the service, for links in case notices.
        tts_cache: Where rendered speech is cached.
        tts_voice: The espeak-ng voice of spoken warnings.
    """
    tts = EspeakTts(tts_cache, tts_voice)
    out: dict[str, Notifier] = {}
    for cfg in configs:
        if isinstance(cfg, WebhookNotifierConfig):
            out[cfg.name] = WebhookNotifier(cfg, public_url)
        else:
            out[cfg.name] = VoiceNotifier(cfg, tts)
    return out
