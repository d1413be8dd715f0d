"""Service configuration (``streetwatch serve --config SERVICE.yaml``).

The same strict YAML loading as the camera files (errors name file, line and
field). Cameras use the batch camera schema, with a ``source`` URL. API tokens
are never written in the file in clear: each comes from an environment
variable or is given as its SHA-256; there is no default token, and the
service refuses to start without one.

Example:
    server: {host: 127.0.0.1, port: 8080}
    auth:
      tokens:
        - {name: admin, role: admin, env: STREETWATCH_ADMIN_TOKEN}
    dispatch:
      webhooks:
        - {name: city-12319, url: "http://127.0.0.1:9000/cases"}
    cameras:
      - id: demo
        source: out/demo/input/clips/street_000.mp4
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from detector.backends.base import InputSize
from models import DEFAULT_MODEL
from pipelines.config import CameraConfig, ConfigError, ReminderConfig, RulesConfig, Strict, parse_config_lenient
from pipelines.notifiers.registry import AnyNotifierConfig, NotifierConfig
from pipelines.notifiers.sms import SmsNotifierConfig
from pipelines.notifiers.voice import VoiceNotifierConfig
from pipelines.notifiers.webhook import WebhookNotifierConfig

Role = Literal["viewer", "operator", "admin"]
ROLE_RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}


class ServerConfig(Strict):
    """Where the API listens."""

    host: str = Field(default="127.0.0.1", description="Bind address; loopback by default.")
    port: int = Field(default=8080, ge=1, le=65535)
    cors_origins: list[str] = Field(default_factory=list, description="Allowed CORS origins; none by default.")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="Largest accepted request body.")
    max_import_bytes: int = Field(default=32_000_000, ge=1024, description="Largest registry file accepted by "
                                  "POST /api/shop-imports (a district's ~10,000 shops are a few MB).")


class ModelConfig(Strict):
    """The shared detector."""

    path: Path = Field(default=DEFAULT_MODEL)
    conf: float = Field(default=0.25, ge=0, le=1)
    threads: int = Field(default=0, ge=0, le=256, description="ONNX Runtime threads; 0 lets it decide.")
    imgsz: InputSize | None = Field(default=None, description="Detector input side, a multiple of 32; none: the "
                                    "model's own. Smaller is faster, larger finds smaller objects (the model card "
                                    "gives AP per size).")
    batch: int = Field(default=4, ge=1, le=64, description="Most frames of different cameras per detector call.")
    spinning: bool = Field(default=False, description="Let ONNX Runtime's threads spin between calls: each call "
                           "is faster, but the spinning takes the CPU the cameras' readers need (32 cameras with two "
                           "streams are held without it, not with it: bench/README.md).")


class StorageConfig(Strict):
    """Where cases and evidence live."""

    db: str = Field(default="out/service/cases.db",
                    description="SQLite file (WAL), or a SQLAlchemy URL such as postgresql+psycopg://user@host/db.")
    evidence: Path = Field(default=Path("out/service/evidence"))


class TokenConfig(Strict):
    """One API token: from an environment variable, or known by its SHA-256 only."""

    name: str = Field(min_length=1, max_length=64)
    role: Role
    env: str | None = Field(default=None, description="Environment variable holding the token.")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="SHA-256 (hex) of the token.")

    @model_validator(mode="after")
    def _one_source(self) -> TokenConfig:
        if (self.env is None) == (self.sha256 is None):
            raise ValueError("give exactly one of 'env' or 'sha256'")
        return self


class AuthConfig(Strict):
    """Bearer tokens with roles (viewer < operator < admin)."""

    tokens: list[TokenConfig] = Field(default_factory=list)


class DispatchConfig(Strict):
    """Dispatch of cases to the city case platform."""

    webhooks: list[WebhookNotifierConfig] = Field(default_factory=list,
                                                  description="Webhook notifiers (their `type` may be left out).")
    public_url: str = Field(default="", description="Base URL put in front of evidence links in payloads.")


class IngestConfig(Strict):
    """Camera reading: reconnects and stall detection."""

    open_timeout_s: float = Field(default=10.0, gt=0, le=300)
    read_timeout_s: float = Field(default=10.0, gt=0, le=300)
    backoff_s: float = Field(default=1.0, gt=0, le=60, description="First reconnect delay; doubles up to the max.")
    max_backoff_s: float = Field(default=60.0, gt=0, le=3600)
    stall_s: float = Field(default=5.0, gt=0, le=600, description="No frame for this long: the camera is stalled.")
    queue: int = Field(default=2, ge=1, le=100, description="Frames waiting per camera; the oldest is dropped.")
    decode_threads: int = Field(default=1, ge=0, le=64, description="Decoder threads per camera stream (0: FFmpeg "
                                "decides, about one per core, with frame threads). One thread decodes the most "
                                "frames per core where many cameras share the machine, and hands each frame out "
                                "as soon as its packet arrives; raise it for a few large streams that one core "
                                "cannot decode in real time (bench/README.md, decoder threads).")
    record_process: bool = Field(default=True, description="Read cameras' main (record) streams in a process of "
                                 "their own (service/recorder.py); false: a thread per stream in this one.")


class ClusterConfig(Strict):
    """Cameras sharded over Ray actors (``serve --ray``); the API, case store and evidence stay here."""

    ray: str | None = Field(default=None, description="HOST:PORT of the Ray head; none: cameras run in-process.")
    shards: int = Field(default=2, ge=1, le=1024, description="Ray actors; each decodes and detects its cameras.")
    cpus_per_shard: float = Field(default=1.0, gt=0, le=256, description="CPUs each actor asks Ray for.")
    poll_s: float = Field(default=0.2, gt=0, le=10, description="How often cases and health are fetched.")


class VoiceConfig(Strict):
    """Speakers and the text-to-speech voice."""

    speakers: list[VoiceNotifierConfig] = Field(
        default_factory=list, description="Voice notifiers; an entry may also give its transport as `type: rtp | "
        "http | file`, as earlier files did.")
    tts_voice: str = Field(default="cmn", description="espeak-ng voice (cmn: Mandarin).")
    cache: Path = Field(default=Path("out/service/tts-cache"))

    @field_validator("speakers", mode="before")
    @classmethod
    def _transport_as_type(cls, v: Any) -> Any:
        """Read ``{type: rtp, ...}`` (a speaker of earlier files) as ``{type: voice, transport: rtp, ...}``."""
        if not isinstance(v, list):
            return v
        return [{**s, "type": "voice", "transport": s["type"]} if isinstance(s, dict) and s.get("type") in
                ("rtp", "http", "file") else s for s in v]


class PrivacyConfig(Strict):
    """Evidence that leaves the bureau: masked copies (see pipelines/privacy.py and the README's privacy part)."""

    mask_shared: bool = Field(default=True, description="Viewer tokens (and so the evidence links of webhook "
                              "payloads) get copies with faces and other vehicles' plates masked; operators add "
                              "`?original=true` for the original. False: everyone gets the original.")
    faces: bool = Field(default=True, description="Mask people's heads.")
    plates: bool = Field(default=True, description="Mask the plates of vehicles that are not the case's subject.")
    sizes: list[InputSize] = Field(default_factory=lambda: [320, 640, 960], min_length=1, max_length=4,
                                   description="Detector input sizes for masking, merged.")
    clip_fps: float = Field(default=2.0, gt=0, le=30, description="Frames a second of a clip's masked copy (the "
                            "original keeps the camera's rate; every frame of the copy is masked, so the rate "
                            "sets what masking a clip costs).")


class ServiceConfig(Strict):
    """The whole service file."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    voice: VoiceConfig = Field(default_factory=VoiceConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    notifiers: list[NotifierConfig] = Field(
        default_factory=list, description="Where cases and warnings go: webhooks (the city case platform), "
        "voice (loudspeakers), ... Cameras and zones choose theirs with `notify`; zones' warnings name speakers. "
        "`dispatch.webhooks` and `voice.speakers` are read as notifiers too.")
    cameras: list[CameraConfig] = Field(default_factory=list)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    muck_register: Path | None = Field(default=None, description="Licensed muck trucks (CSV or .xlsx): the plates "
                                       "of truck cases (cameras with `plates: true`) are checked against it.")
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    reminders: ReminderConfig = Field(default_factory=ReminderConfig, description="Default policy of texts to the "
                                      "shop that answers for a pavement (shops are kept in the case database: "
                                      "/api/shops).")

    def all_notifiers(self) -> list[AnyNotifierConfig]:
        """Every notifier: ``notifiers`` plus the webhooks of ``dispatch`` and the speakers of ``voice``."""
        return [*self.dispatch.webhooks, *self.voice.speakers, *self.notifiers]

    def case_notifiers(self) -> tuple[str, ...]:
        """The notifiers every case goes to unless its camera or zone says otherwise: the webhooks."""
        return tuple(n.name for n in self.all_notifiers() if isinstance(n, WebhookNotifierConfig))

    @model_validator(mode="after")
    def _unique(self) -> ServiceConfig:
        ids = [c.id for c in self.cameras]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate camera ids {dup}")
        notifiers = [n.name for n in self.all_notifiers()]
        dup = sorted({n for n in notifiers if notifiers.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate notifier names {dup}")
        for c in self.cameras:
            if not c.source:
                raise ValueError(f"camera {c.id} needs a source (rtsp://, http(s)://, or a file)")
            self.check_targets(c)
        return self

    def check_targets(self, c: CameraConfig) -> None:
        """Raise ``ValueError`` when a camera or its zones name notifiers or speakers not configured."""
        speakers = {n.name for n in self.all_notifiers() if isinstance(n, VoiceNotifierConfig)}
        texts = {n.name for n in self.all_notifiers() if isinstance(n, SmsNotifierConfig)}
        for_cases = {n.name for n in self.all_notifiers()} - speakers - texts
        for policy, where in [(self.reminders, "reminders"), (c.reminders, f"camera {c.id} reminders"),
                              *[(z.reminders, f"camera {c.id} zone {z.id} reminders") for z in c.zones]]:
            unknown = sorted(set(policy.channels) - texts) if policy is not None else []
            if unknown:
                raise ValueError(f"{where}: no SMS notifier named {unknown}")
        unknown = sorted(set(c.notify or ()) - for_cases)
        if unknown:
            raise ValueError(f"camera {c.id}: no notifier of cases named {unknown}")
        for z in c.zones:
            unknown = sorted(set(z.notify or ()) - for_cases)
            if unknown:
                raise ValueError(f"camera {c.id} zone {z.id}: no notifier of cases named {unknown}")
            unknown = sorted(set(z.warnings.speakers) - speakers) if z.warnings else []
            if unknown:
                raise ValueError(f"camera {c.id} zone {z.id}: unknown speakers {unknown}")


def load_service_config(path: Path) -> tuple[ServiceConfig, list[str]]:
    """Load a service YAML file; returns the config and the errors of camera entries set aside.

    A bad camera entry never stops the other cameras; a bad file (YAML, server, auth, storage...) does.
    Relative paths resolve against the working directory.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from exc
    cfg, bad = parse_config_lenient(text, str(path), ServiceConfig)
    return cfg, [b.error for b in bad]


def resolve_tokens(cfg: AuthConfig, environ: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Map SHA-256 of each usable token to ``(name, role)``.

    Raises:
        ConfigError: No token is usable (a service without auth never starts).
    """
    env = os.environ if environ is None else environ
    out: dict[str, tuple[str, str]] = {}
    missing = []
    for t in cfg.tokens:
        if t.env is not None:
            value = env.get(t.env, "")
            if len(value) < 16:
                missing.append(f"{t.name} (set {t.env} to a secret of at least 16 characters)")
                continue
            out[hashlib.sha256(value.encode()).hexdigest()] = (t.name, t.role)
        elif t.sha256 is not None:
            out[t.sha256] = (t.name, t.role)
    if not out:
        hint = "; ".join(missing) or "add auth.tokens to the config"
        raise ConfigError(f"no API token is configured: {hint}")
    return out


def write_camera_back(path: Path, camera_id: str, camera: dict[str, Any] | None) -> None:
    """Write one camera's change made through the API back into the service YAML file.

    The file is edited round-trip (ruamel.yaml): comments, key order and every other entry stay
    as they were, including entries that were set aside as invalid. ``camera`` replaces the entry
    with the same id (or is appended); ``None`` removes it. The previous file is kept as
    ``<file>.bak`` and the new one replaces it atomically, so a crash never leaves half a file.

    Raises:
        OSError: The file cannot be read or written.
        ConfigError: The file is no longer a YAML mapping.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    yaml_rt = YAML()
    yaml_rt.preserve_quotes = True
    yaml_rt.width = 120
    doc = yaml_rt.load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, CommentedMap):
        raise ConfigError(f"{path}: not a YAML mapping; camera {camera_id} not written back")
    cams = doc.get("cameras")
    if not isinstance(cams, CommentedSeq):
        cams = CommentedSeq()
        doc["cameras"] = cams
    index = next((i for i, c in enumerate(cams) if isinstance(c, dict) and c.get("id") == camera_id), None)
    if camera is None:
        if index is not None:
            del cams[index]
    elif index is None:
        cams.append(camera)
    else:
        old = cams[index]
        for key in [k for k in old if k not in camera]:
            del old[key]
        for key, value in camera.items():
            if old.get(key) != value:  # unchanged keys keep their comments and flow style
                old[key] = value
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        yaml_rt.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    if path.exists():
        path.with_name(path.name + ".bak").write_bytes(path.read_bytes())
    os.replace(tmp, path)
