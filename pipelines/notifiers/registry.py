"""Every notifier kind, told apart by ``type``: a new kind is one module plus one line in each of these."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from pydantic import Field

from pipelines.notifiers.notice import Notifier
from pipelines.notifiers.sms import SmsNotifier, SmsNotifierConfig
from pipelines.notifiers.voice import VoiceNotifier, VoiceNotifierConfig
from pipelines.notifiers.webhook import WebhookNotifier, WebhookNotifierConfig
from pipelines.sinks.voice import EspeakTts

AnyNotifierConfig = WebhookNotifierConfig | VoiceNotifierConfig | SmsNotifierConfig
NotifierConfig = Annotated[AnyNotifierConfig, Field(discriminator="type")]
"""Any notifier's config (``type: webhook | voice | sms``)."""


def build_notifiers(configs: list[AnyNotifierConfig], public_url: str = "", tts_cache: Path = Path("out/tts-cache"),
                    tts_voice: str = "cmn", sms_dlr_url: Callable[[int, str], str] | None = None
                    ) -> dict[str, Notifier]:
    """The notifiers of a config, by name.

    Args:
        configs: The notifiers' configs (names are unique).
        public_url: Base URL of the service, for links in case notices.
        tts_cache: Where rendered speech is cached.
        tts_voice: The espeak-ng voice of spoken warnings.
        sms_dlr_url: Where SMS gateways report deliveries (see :class:`~pipelines.notifiers.sms.SmsNotifier`).
    """
    tts = EspeakTts(tts_cache, tts_voice)
    out: dict[str, Notifier] = {}
    for cfg in configs:
        if isinstance(cfg, WebhookNotifierConfig):
            out[cfg.name] = WebhookNotifier(cfg, public_url)
        elif isinstance(cfg, SmsNotifierConfig):
            out[cfg.name] = SmsNotifier(cfg, sms_dlr_url)
        else:
            out[cfg.name] = VoiceNotifier(cfg, tts)
    return out
