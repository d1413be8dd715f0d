"""The service layer's commands: ``serve``, ``speak``, ``datasets from-reviews`` and ``evaluate reviews``.

Registered into the ``streetwatch`` command line by :mod:`service.cli`.

Each command imports what it runs when it runs (why: :mod:`service.cli`).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from datasets.commands import Groups, Subcommands
    from pipelines.notifiers.voice import VoiceNotifierConfig

log = logging.getLogger("streetwatch")


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the camera stream service."""
    from pipelines.config import ConfigError
    from service.app import create_app
    from service.server import Server
    from service.settings import load_service_config

    try:
        cfg, bad_cameras = load_service_config(args.config)
        for err in bad_cameras:
            log.error("camera not started: %s", err)
        if args.port is not None:
            cfg.server.port = args.port
        if args.host is not None:
            cfg.server.host = args.host
        if args.ray is not None:
            cfg.cluster.ray = args.ray
        app = create_app(cfg, config_path=args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    log.info("serving %d cameras on http://%s:%d (API docs at /docs)", len(cfg.cameras), cfg.server.host,
             cfg.server.port)
    Server(app, cfg.server.host, cfg.server.port).run()
    return 0


def speaker_config(to: str, codec: str) -> VoiceNotifierConfig:
    """The loudspeaker named by a ``--to`` URL: ``rtp://HOST:PORT``, ``http(s)://...`` or ``file:///DIR``."""
    from pipelines.notifiers.voice import VoiceNotifierConfig

    target = urlparse(to)
    if target.scheme == "rtp" and target.hostname and target.port:
        return VoiceNotifierConfig(name="cli", transport="rtp", host=target.hostname, port=target.port,
                                   codec="pcma" if codec == "pcma" else "pcmu")
    if target.scheme in ("http", "https"):
        return VoiceNotifierConfig(name="cli", transport="http", url=to)
    if target.scheme == "file":
        return VoiceNotifierConfig(name="cli", transport="file", folder=Path(target.path))
    raise SystemExit(f"--to takes rtp://HOST:PORT, http(s)://... or file:///DIR, got '{to}'")


def cmd_speak(args: argparse.Namespace) -> int:
    """Play a test message on a speaker (commissioning)."""
    from pipelines.notifiers.voice import build_speaker
    from pipelines.sinks.voice import EspeakTts, Message, SpeechError, load_audio

    speaker = build_speaker(speaker_config(args.to, args.codec))
    try:
        pcm, rate = load_audio(args.audio) if args.audio else EspeakTts(args.cache, args.voice).render(args.text)
        speaker.play(Message(args.text, pcm, rate, args.volume))
    except (SpeechError, OSError) as exc:
        log.error("%s", exc)
        return 2
    log.info("played %.1f s of audio on %s", len(pcm) / rate, args.to)
    return 0


def _store_location(args: argparse.Namespace, command: str) -> tuple[str | Path, Path | None, Path | None]:
    """The case store, evidence folder and model a command names: ``--config`` SERVICE.yaml (its storage and
    model; with ``--camera``, that camera's own model where it has one), or ``--db`` (and ``--evidence``; no
    model)."""
    from service.settings import load_service_config

    if args.config is not None:
        cfg, _ = load_service_config(args.config)
        camera = getattr(args, "camera", None)
        own = next((c.model for c in cfg.cameras if c.id == camera and c.model is not None), None)
        return (args.db or cfg.storage.db, getattr(args, "evidence", None) or cfg.storage.evidence,
                own or cfg.model.path)
    if args.db:
        return args.db, getattr(args, "evidence", None), None
    raise SystemExit(f"{command}: give --config SERVICE.yaml, or --db")


def _review_model(args: argparse.Namespace, service_model: Path | None) -> tuple[str | None, str]:
    """The weights whose cases ``evaluate reviews`` reads (a SHA-256 or a prefix of it; None: every model's)
    and how to say so: ``--model`` (a model file or folder, a SHA-256, or ``all``), else the service config's
    model, else every model."""
    from detector.backends.base import identify, model_file

    choice = args.model
    if choice is None:
        if service_model is None:
            return None, "every model"
        path = model_file(service_model)
        if not path.is_file():
            raise SystemExit(f"evaluate reviews: the configured model {path} is not here: name the model whose "
                             "cases to read with --model (a model file or folder, a SHA-256, or all)")
        choice = str(path)
    if choice == "all":
        return None, "every model"
    path = model_file(Path(choice))
    if path.is_file():
        ident = identify(path)
        return ident.sha256, f"the model {path} (sha256 {ident.sha256[:12]})"
    if re.fullmatch(r"[0-9a-fA-F]{8,64}", choice):
        return choice.lower(), f"the model sha256 {choice.lower()[:12]}"
    raise SystemExit(f"evaluate reviews: --model {choice}: not a model file or folder, 'all' or a SHA-256 "
                     "(8 or more hex digits)")


def cmd_review_thresholds(args: argparse.Namespace) -> int:
    """Per-violation thresholds for a precision from the operators' verdicts on the cases of one model."""
    from pipelines.evaluation.thresholds import review_thresholds, table
    from pipelines.reviews import of_model
    from pipelines.sinks.store import CaseStore

    if not 0 < args.precision <= 1:
        raise SystemExit(f"--precision must be in (0, 1], got {args.precision}")
    db, _, service_model = _store_location(args, "evaluate reviews")
    sha, which = _review_model(args, service_model)
    store = CaseStore(db)
    try:
        reviewed = [c for c in store.reviewed() if args.camera is None or c.camera == args.camera]
    finally:
        store.close()
    cases, by_model = of_model(reviewed, sha)
    where = f"camera {args.camera}" if args.camera else "all cameras"
    models = ", ".join(f"{name}: {n}" for name, n in by_model.most_common()) or "none"
    log.info("reviewed cases (%s) by the model that raised them: %s", where, models)
    if not cases:
        hint = "; choose one with --model SHA256, or --model all" if reviewed else ""
        raise SystemExit(f"evaluate reviews: no reviewed cases ({where}) of {which} in {db} (reviewed cases by "
                         f"model: {models}){hint}")
    if len(by_model) > 1 and sha is None:
        log.warning("the verdicts of %d models are mixed: each model scores differently (--model chooses one)",
                    len(by_model))
    elif len(cases) < len(reviewed):
        log.info("%d reviewed cases of other models (or stored before models were recorded) left out",
                 len(reviewed) - len(cases))
    reviews = [(c.violation, c.confidence, c.review == "confirmed") for c in cases]
    result = review_thresholds(reviews, args.out, args.precision, args.current, args.min_recall,
                               f"reviews of {where}, cases of {which}", args.camera)
    log.info("thresholds for precision >= %s from %d reviewed cases:\n%s", args.precision, len(reviews),
             table(result))
    sys.stdout.write(f"thresholds: {args.out / 'thresholds.json'}\nconfig: {args.out / 'thresholds.yaml'}\n")
    return 0


def cmd_from_reviews(args: argparse.Namespace) -> int:
    """Export reviewed cases as a YOLO dataset (confirmed: positives; rejected: hard negatives)."""
    from pipelines.reviews import export_reviews
    from pipelines.sinks.store import CaseStore

    db, evidence, _ = _store_location(args, "from-reviews")
    if evidence is None:
        raise SystemExit("from-reviews: give --config SERVICE.yaml, or --db and --evidence")
    store = CaseStore(db)
    try:
        res = export_reviews(store, Path(evidence), args.out, args.context)
    finally:
        store.close()
    for line in res.skipped:
        log.warning("skipped %s", line)
    sys.stdout.write(f"reviews: {res.data_yaml} ({res.positives} positives, {res.negatives} hard negatives, "
                     f"{len(res.skipped)} skipped)\n")
    return 0


def _add_serve_speak(sub: Subcommands) -> None:
    sv = sub.add_parser("serve", help="the real-time camera stream service (FastAPI)")
    sv.add_argument("--config", type=Path, required=True, help="service YAML (cameras, model, storage, auth)")
    sv.add_argument("--port", type=int, help="override server.port")
    sv.add_argument("--host", help="override server.host (default 127.0.0.1)")
    sv.add_argument("--ray", metavar="HOST:PORT", help="shard the cameras over Ray actors on this cluster "
                    "(cluster.ray); the API and case store stay in this process")
    sv.set_defaults(func=cmd_serve)
    sp = sub.add_parser("speak", help="play a test message on a loudspeaker (RTP G.711, HTTP API or file)")
    sp.add_argument("text", help="message text (Mandarin by default)")
    sp.add_argument("--to", required=True, help="rtp://HOST:PORT, http(s)://speaker/api or file:///DIR")
    sp.add_argument("--codec", choices=["pcmu", "pcma"], default="pcmu", help="G.711 law for RTP")
    sp.add_argument("--voice", default="cmn", help="espeak-ng voice")
    sp.add_argument("--volume", type=float, default=1.0)
    sp.add_argument("--audio", type=Path, help="play this WAV/MP3 instead of speaking the text")
    sp.add_argument("--cache", type=Path, default=Path("out/tts-cache"), help="TTS cache folder")
    sp.set_defaults(func=cmd_speak)


def register(sub: Subcommands, groups: Groups) -> None:
    """Add ``serve``, ``speak``, ``datasets from-reviews`` and ``evaluate reviews`` (into ``groups``) to the command
    line."""
    _add_serve_speak(sub)
    fr = groups["datasets"].add_parser("from-reviews",
                                       help="operators' confirmed/rejected cases as positives/hard negatives")
    fr.add_argument("--out", type=Path, required=True)
    fr.add_argument("--config", type=Path, help="the service YAML (its database and evidence folder)")
    fr.add_argument("--db", help="case store: SQLite file or SQLAlchemy URL (instead of --config)")
    fr.add_argument("--evidence", type=Path, help="evidence folder (instead of --config)")
    fr.add_argument("--context", type=float, default=1.0, help="context around the box, in box sizes per side")
    fr.set_defaults(func=cmd_from_reviews)
    rv = groups["evaluate"].add_parser("reviews", help="per-violation thresholds for a precision from the operators' "
                                       "verdicts on cases (a rules.min_confidence config fragment)")
    rv.add_argument("--out", type=Path, required=True)
    rv.add_argument("--config", type=Path, help="the service YAML (its case database)")
    rv.add_argument("--db", help="case store: SQLite file or SQLAlchemy URL (instead of --config)")
    rv.add_argument("--camera", help="only this camera's cases: a fragment for its own rules (and its own model's "
                    "cases, where it has one)")
    rv.add_argument("--model", help="only the cases this model raised: a model file or folder, or the SHA-256 of "
                    "its weights (8 or more hex digits); 'all': every model's (default: the --config service's "
                    "model, or the --camera's own; else all)")
    rv.add_argument("--precision", type=float, default=0.8,
                    help="the share of kept cases the operators confirmed (default 0.8)")
    rv.add_argument("--min-recall", type=float, default=0.1,
                    help="a threshold must keep this share of the confirmed cases (default 0.1)")
    rv.add_argument("--current", type=float, default=0.25, help="today's threshold, shown for comparison")
    rv.set_defaults(func=cmd_review_thresholds)
