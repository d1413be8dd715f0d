"""The ``streetwatch`` command line.

Subcommands:
    analyze   batch analysis of recorded video or images into cases and a report
    serve     the real-time camera stream service (cases API, SSE, dispatch, metrics)
    speak     play a test message on a loudspeaker
    evaluate  ``images``: detector AP on a labelled dataset; ``clips``: event P/R/F1 and delay
    synth     synthetic labelled street images (YOLO) and clips (ActivityNet labels)
    datasets  dataset tools: ``import``, ``export``, ``check``, ``merge``, ``pack``
    train     train a detector with Ultralytics, offline (``train`` extra)
    export    export trained weights to ONNX with metadata and a model card

Exit codes: 0 success (for analyze: at least one input analysed), 1 usage
error, 2 nothing could be analysed, 3 a score fell below its baseline, 4 a
dataset check found problems.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import NoReturn

from models import DEFAULT_MODEL

log = logging.getLogger("streetwatch")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_TEACHER = SHARED_DATA.parent / "pretrained" / "yolov5n-coco.pt"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit with code 1."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def cmd_analyze(args: argparse.Namespace) -> int:
    """Run batch analysis."""
    from pipelines.analyze import AnalyzeOptions, analyze

    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    opts = AnalyzeOptions(inputs=args.inputs, out=args.out, model=args.model, config=args.config,
                          annotate=args.annotate, workers=args.workers, dwell=args.dwell, decode=args.decode,
                          conf=args.conf, imgsz=args.imgsz, progress=not args.quiet, ray=args.ray,
                          ray_cpus=args.ray_cpus)
    result = analyze(opts)
    for err in result.errors:
        log.error("%s: %s", err["source"], err["error"]) if not err["error"].startswith(err["source"]) \
            else log.error("%s", err["error"])
    s = result.stats
    log.info("%d cases from %d of %d inputs; %d frames decoded, %d inferred, %.1f s video in %.1f s",
             len(result.cases), s["analysed"], s["inputs"], s["frames_decoded"], s["frames_inferred"],
             s["video_s"], s["wall_s"])
    sys.stdout.write(f"report: {result.report}\ncases: {args.out / 'cases.json'}\n")
    return result.exit_code


def _remap(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        old, sep, new = p.partition("=")
        if not sep or not old or not new:
            raise SystemExit(f"--names takes old=new pairs, got '{p}'")
        out[old] = new
    return out


def _gate(metrics: dict[str, object], args: argparse.Namespace) -> int:
    from pipelines.evaluate import gate

    if args.baseline is None:
        return 0
    found = gate(metrics, args.baseline, args.fail_under)
    for f in found:
        log.error("regression: %s", f)
    if not found:
        log.info("no score dropped by more than %s against %s", args.fail_under, args.baseline)
    return 3 if found else 0


def cmd_evaluate_images(args: argparse.Namespace) -> int:
    """Score the detector on a labelled image dataset."""
    from pipelines.evaluate import evaluate_images

    m = evaluate_images(args.data, args.out, args.model, _remap(args.names), args.imgsz, args.conf, args.split,
                        args.view)
    log.info("mAP50 %s on %d images: %s", m["map50"], m["images"],
             {k: v.get("ap50", "absent") for k, v in m["classes"].items()})
    sys.stdout.write(f"metrics: {args.out / 'metrics.json'}\nreport: {args.out / 'report.html'}\n")
    return _gate(m, args)


def cmd_evaluate_clips(args: argparse.Namespace) -> int:
    """Score the whole product on labelled clips."""
    from pipelines.evaluate import evaluate_clips

    m = evaluate_clips(args.labels, args.videos, args.out, args.model, args.config, args.dwell, args.iou,
                       _remap(args.names), args.frame_labels, args.conf, args.imgsz, args.view)
    log.info("events: %s; false alarms per hour %s",
             {k: v["f1"] for k, v in m["events"].items() if v["f1"] is not None}, m["false_alarms_per_hour"])
    sys.stdout.write(f"metrics: {args.out / 'metrics.json'}\nreport: {args.out / 'report.html'}\n")
    return _gate(m, args)


def cmd_evaluate_loads(args: argparse.Namespace) -> int:
    """Score the product's load-state evidence on labelled trucks."""
    import json as _json

    from datasets.evaluate_loads import evaluate_loads, from_csv, from_yolo
    from detector.backends.base import config_for, create_backend

    if (args.labels is None) == (args.data is None):
        raise SystemExit("give either --labels CSV (with --sources) or --data data.yaml")
    backend = create_backend(config_for(args.model, conf=args.conf, imgsz=args.imgsz))
    images = from_csv(args.labels, args.sources, args.split) if args.labels else from_yolo(args.data, args.split)
    result = {"model": str(args.model), "labels": str(args.labels or args.data), "conf": args.conf,
              "imgsz": backend.imgsz, "by_load": evaluate_loads(images, backend)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(_json.dumps(result, indent=1))
    for load, m in result["by_load"].items():
        log.info("%s: %s", load, m)
    sys.stdout.write(f"metrics: {args.out / 'metrics.json'}\n")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the camera stream service."""
    import uvicorn

    from pipelines.config import ConfigError
    from service.app import create_app
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
    # Open event streams never end by themselves: give them 5 s at shutdown, then close them.
    uvicorn.run(app, host=cfg.server.host, port=cfg.server.port, log_level="info", access_log=False,
                timeout_graceful_shutdown=5)
    return 0


def cmd_speak(args: argparse.Namespace) -> int:
    """Play a test message on a speaker (commissioning)."""
    from urllib.parse import urlparse

    from pipelines.sinks.voice import EspeakTts, Message, SpeechError, load_audio
    from service.settings import SpeakerConfig
    from service.voice import build_speaker

    target = urlparse(args.to)
    if target.scheme == "rtp" and target.hostname and target.port:
        cfg = SpeakerConfig(name="cli", type="rtp", host=target.hostname, port=target.port, codec=args.codec)
    elif target.scheme in ("http", "https"):
        cfg = SpeakerConfig(name="cli", type="http", url=args.to)
    elif target.scheme == "file":
        cfg = SpeakerConfig(name="cli", type="file", folder=Path(target.path))
    else:
        raise SystemExit(f"--to takes rtp://HOST:PORT, http(s)://... or file:///DIR, got '{args.to}'")
    speaker = build_speaker(cfg)
    try:
        pcm, rate = load_audio(args.audio) if args.audio else EspeakTts(args.cache, args.voice).render(args.text)
        speaker.play(Message(args.text, pcm, rate, args.volume))
    except (SpeechError, OSError) as exc:
        log.error("%s", exc)
        return 2
    log.info("played %.1f s of audio on %s", len(pcm) / rate, args.to)
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    """Render synthetic images and/or clips."""
    from datasets.synth import write_yolo_dataset

    if args.n:
        path = write_yolo_dataset(args.out, args.n, args.seed, width=args.width, height=args.height,
                                  renderer=args.renderer)
        sys.stdout.write(f"images: {path}\n")
    if args.regression_set:
        from datasets.clips import write_regression_set

        sys.stdout.write(f"clips: {write_regression_set(args.out)}\n")
    if args.clips:
        from datasets.clips import write_clip_set

        labels = write_clip_set(args.out / "clips", args.clips, args.clip_seconds, args.fps,
                                args.clip_width, args.clip_height, args.seed)
        sys.stdout.write(f"clips: {labels}\n")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    """Write a compact training pack from the real data folders plus synthetic scenes."""
    import json as _json

    from datasets.pack import Source, build_pack, read_license
    from datasets.synth import RENDERED_LABELS, write_yolo_dataset

    sources = []
    for data_yaml in sorted(args.data.glob("*/data.yaml")):
        sources.append(Source(data_yaml.parent.name, data_yaml, read_license(data_yaml), {}))
    for folder in args.extra:
        if not (folder / "manifest.json").is_file():
            raise SystemExit(f"{folder}: not a materialized source (no manifest.json); run `datasets materialize`")
        manifest = _json.loads((folder / "manifest.json").read_text())
        sources.append(Source(folder.name, folder / "data.yaml", f"{manifest['license']} ({manifest['repo']} "
                              f"@ {manifest['commit'][:10]})", {}, frozenset(manifest["classes"])))
    if args.synth:
        synth_dir = args.out.parent / f"{args.out.name}_synth"
        write_yolo_dataset(synth_dir, args.synth, args.seed, renderer=args.renderer)
        sources.append(Source("synthetic", synth_dir / "data.yaml",
                              "generated by streetwatch synth (project's own)", {}, RENDERED_LABELS))
    if not sources:
        raise SystemExit(f"no datasets under {args.data}")
    teacher, teacher_id = None, ""
    if args.teacher:
        from models.pretrained import CHECKPOINT_SHA256, CocoTeacher, load_coco_checkpoint

        teacher = CocoTeacher(load_coco_checkpoint(args.teacher))
        teacher_id = f"yolov5n-coco {CHECKPOINT_SHA256[:16]} imgsz {teacher.imgsz} conf {teacher.conf}"
    manifest = build_pack(sources, args.out, args.max_mb, args.max_side, val_cap=args.val_cap, fmt=args.format,
                          teacher=teacher, teacher_cache=args.teacher_cache, teacher_id=teacher_id)
    count = len(manifest["files"])  # type: ignore[arg-type]
    sys.stdout.write(f"pack: {args.out} ({count} images, {args.format} quality {manifest['quality']})\n")
    return 0


def cmd_materialize(args: argparse.Namespace) -> int:
    """Rebuild the external sources of datasets/sources.yaml from their git snapshots."""
    from datasets.external import materialize_all

    for m in materialize_all(args.mirror, args.out, args.only or None):
        sys.stdout.write(f"{args.out / str(m['name'])}: {m['license']}, {m['counts']}\n")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import a labelled dataset of any supported format into a canonical YOLO dataset."""
    from datasets.formats import assign_splits, canonical, read_any, write_yolo

    records = read_any(args.format, args.src, args.images, args.video, args.out / "_frames")
    records = canonical(records, _remap(args.names), args.drop_unknown)
    assign_splits(records, args.val_fraction, args.seed)
    data_yaml, _ = write_yolo(records, args.out)
    sys.stdout.write(f"dataset: {data_yaml} ({len(records)} images)\n")
    return 0


def cmd_export_dataset(args: argparse.Namespace) -> int:
    """Export a YOLO dataset as COCO JSON (one file per split) or as a copy in YOLO format."""
    from datasets.formats import read_yolo, write_coco, write_yolo

    records = read_yolo(args.data)
    if args.format == "coco":
        for split in sorted({r.split or "train" for r in records}):
            path = write_coco([r for r in records if r.split == split], args.out / f"{split}.json",
                              relative_to=args.data.parent)
            sys.stdout.write(f"coco: {path}\n")
    else:
        data_yaml, _ = write_yolo(records, args.out)
        sys.stdout.write(f"dataset: {data_yaml}\n")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Check a dataset and write its card."""
    from datasets.check import check_dataset, write_card

    report = check_dataset(args.data, args.near_bits)
    out = args.out or args.data.parent / "card"
    _, md = write_card(report, out)
    for p in report["problems"][:20]:
        log.warning("%s: %s", p["file"], p["problem"])
    d = report["duplicates"]
    log.info("%s: %s images, %d problems, %d exact duplicate groups, %d near-duplicate pairs (%d across splits)",
             args.data, {s: c["images"] for s, c in report["counts"].items()}, len(report["problems"]),
             len(d["exact_groups"]), len(d["near_pairs"]), d["near_across_splits"])
    sys.stdout.write(f"card: {md}\n")
    return 0 if report["ok"] else 4


def cmd_merge(args: argparse.Namespace) -> int:
    """Merge YOLO datasets with provenance and a near-duplicate-aware split."""
    from datasets.check import sources_and_licenses
    from datasets.formats import read_yolo
    from datasets.merge import MergeSource, merge

    sources = [MergeSource(p.parent.name, read_yolo(p), sources_and_licenses(p)[0]["license"]) for p in args.data]
    manifest = merge(sources, args.out, _remap(args.names), args.val_fraction, args.near_bits, args.seed,
                     args.drop_unknown)
    sys.stdout.write(f"dataset: {args.out / 'data.yaml'} ({len(manifest['files'])} images, "
                     f"{manifest['groups']} groups)\n")
    return 0


def cmd_from_reviews(args: argparse.Namespace) -> int:
    """Export reviewed cases as a YOLO dataset (confirmed: positives; rejected: hard negatives)."""
    from datasets.reviews import export_reviews
    from pipelines.sinks.store import CaseStore

    if args.config is not None:
        from service.settings import load_service_config

        cfg, _ = load_service_config(args.config)
        db: str | Path = args.db or cfg.storage.db
        evidence = args.evidence or cfg.storage.evidence
    elif args.db and args.evidence:
        db, evidence = args.db, args.evidence
    else:
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


def cmd_train(args: argparse.Namespace) -> int:
    """Train with Ultralytics (the same script that runs on a lent GPU)."""
    from models.train_gpu import main as train_main

    argv = ["--pack", str(args.data), "--out", str(args.out), "--model", args.model, "--minutes",
            str(args.minutes), "--imgsz", str(args.imgsz), "--batch", str(args.batch), "--device", args.device,
            "--workers", str(args.workers), "--epochs", str(args.epochs), "--close-mosaic", str(args.close_mosaic),
            "--data", args.data_yaml, "--lr0", str(args.lr0),
            *(["--pretrained", str(args.pretrained)] if args.pretrained else [])]
    return train_main(argv)


def cmd_export(args: argparse.Namespace) -> int:
    """Export weights to ONNX and write the model card."""
    from models.export import export_onnx, measure_cpu_speed, write_card

    metrics = json.loads(args.metrics.read_text()) if args.metrics else {}
    onnx = export_onnx(args.weights, args.out, args.imgsz, metrics.get("pack_manifest_sha256"), args.version)
    speed = [measure_cpu_speed(onnx, threads=t) for t in (1, 2)]
    card = {"name": args.out.name, "file": onnx.name, "imgsz": args.imgsz, "metrics": metrics.get("val", {}),
            "training": {k: v for k, v in metrics.items() if k != "val"},
            "speed": [f"{s['median_ms']} ms median ({s['threads']} thread(s), {s['frame']})" for s in speed]}
    write_card(args.out, card)
    sys.stdout.write(f"model: {onnx}\ncard: {args.out / 'card.md'}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of every subcommand."""
    p = _Parser(prog="streetwatch", description="Street-violation detection for city management cameras.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    view_help = ("what is scored: 'product' (default) the detector through the scene stage, as cases see it: "
                 "trucks as truck and uncovered_truck boxes by their load evidence, one class per object (garbage "
                 "stays item by item: piles are grouped for cases only); 'detector' its raw boxes")
    imgsz_help = ("detector input side in pixels (default: the model's; a smaller one is faster, a larger one "
                  "finds smaller objects: the model card gives AP at 320, 480 and 640)")

    a = sub.add_parser("analyze", help="analyse recorded video or images into violation cases")
    a.add_argument("inputs", nargs="+", help="video/image files, folders or globs")
    a.add_argument("--out", type=Path, required=True, help="output folder")
    a.add_argument("--config", type=Path, help="camera YAML (zones, rules); default: whole frame, all violations")
    a.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="detector (.onnx; .pt with the train extra)")
    a.add_argument("--annotate", action="store_true", help="also write an annotated video per source")
    a.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    a.add_argument("--dwell", type=float, help="override every violation's dwell time (seconds)")
    a.add_argument("--decode", choices=["all", "keyframes"], help="override the cameras' decode mode")
    a.add_argument("--conf", type=float, default=0.25, help="minimum detection confidence")
    a.add_argument("--imgsz", type=int, help=imgsz_help)
    a.add_argument("--ray", metavar="HOST:PORT", help="run one task per input on this Ray cluster (its head's "
                   "address); cases and evidence come back into --out")
    a.add_argument("--ray-cpus", type=float, default=1.0, help="CPUs per Ray task (detector threads)")
    a.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    a.set_defaults(func=cmd_analyze)

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

    ev = sub.add_parser("evaluate", help="score the detector (images) or the whole product (labelled clips)")
    esub = ev.add_subparsers(dest="evaluate_command", required=True, parser_class=_Parser)
    gate_help = "exit 3 when any score drops by more than --fail-under against this metrics.json"
    ei = esub.add_parser("images", help="per-class P, R, AP50, AP50-95 (COCO) on a YOLO dataset")
    ei.add_argument("--data", type=Path, required=True, help="data.yaml of a YOLO dataset")
    ei.add_argument("--out", type=Path, required=True)
    ei.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ei.add_argument("--names", nargs="*", default=[], metavar="OLD=NEW", help="rename dataset classes")
    ei.add_argument("--imgsz", type=int, help=imgsz_help)
    ei.add_argument("--conf", type=float, default=0.25, help="threshold of precision, recall and confusion")
    ei.add_argument("--split", default="val")
    ei.add_argument("--view", choices=["product", "detector"], default="product", help=view_help)
    ei.add_argument("--baseline", type=Path, help=gate_help)
    ei.add_argument("--fail-under", type=float, default=0.02)
    ei.set_defaults(func=cmd_evaluate_images)
    el = esub.add_parser("loads", help="the product's load-state evidence on labelled trucks (found, P(uncovered))")
    el.add_argument("--labels", type=Path, help="truck_loads.csv (source, image, line, load)")
    el.add_argument("--sources", type=Path, default=Path("data/sources"),
                    help="materialized external sources (`datasets materialize --out`)")
    el.add_argument("--data", type=Path,
                    help="or a YOLO dataset whose truck / uncovered_truck boxes mean covered / uncovered")
    el.add_argument("--split", default="val")
    el.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    el.add_argument("--imgsz", type=int, help=imgsz_help)
    el.add_argument("--conf", type=float, default=0.25, help="detection threshold (the product's)")
    el.add_argument("--out", type=Path, required=True)
    el.set_defaults(func=cmd_evaluate_loads)

    ec = esub.add_parser("clips", help="event precision, recall, F1 and delay on labelled clips")
    ec.add_argument("--labels", type=Path, required=True, help="ActivityNet JSON or CVAT for video XML")
    ec.add_argument("--videos", type=Path, required=True, help="folder of the clips")
    ec.add_argument("--out", type=Path, required=True)
    ec.add_argument("--config", type=Path)
    ec.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ec.add_argument("--dwell", type=float, help="override every dwell time (seconds)")
    ec.add_argument("--iou", type=float, default=0.3, help="temporal IoU needed for a match")
    ec.add_argument("--names", nargs="*", default=[], metavar="OLD=NEW", help="rename label classes")
    ec.add_argument("--frame-labels", type=Path, help="YOLO per-frame labels: DIR/<clip stem>/<frame>.txt")
    ec.add_argument("--conf", type=float, default=0.25, help="threshold of frame precision and recall")
    ec.add_argument("--baseline", type=Path, help=gate_help)
    ec.add_argument("--fail-under", type=float, default=0.02)
    ec.add_argument("--imgsz", type=int, help=imgsz_help)
    ec.add_argument("--view", choices=["product", "detector"], default="product", help=view_help)
    ec.set_defaults(func=cmd_evaluate_clips)

    s = sub.add_parser("synth", help="render synthetic labelled street scenes and clips")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--n", type=int, default=0, help="number of images")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--width", type=int, default=640)
    s.add_argument("--height", type=int, default=384)
    s.add_argument("--renderer", choices=("auto", "gl", "cpu"), default="auto",
                   help="gl: OpenGL (Mesa llvmpipe or a GPU, via EGL); cpu: painter's algorithm; auto: gl if it works")
    s.add_argument("--clips", type=int, default=0, help="number of labelled clips")
    s.add_argument("--clip-seconds", type=float, default=30.0)
    s.add_argument("--fps", type=float, default=10.0)
    s.add_argument("--clip-width", type=int, default=1280)
    s.add_argument("--clip-height", type=int, default=720)
    s.add_argument("--regression-set", action="store_true",
                   help="write the committed regression clips (tests/data/clips) into --out")
    s.set_defaults(func=cmd_synth)

    d = sub.add_parser("datasets", help="dataset tools")
    dsub = d.add_subparsers(dest="datasets_command", required=True, parser_class=_Parser)
    from datasets.pack import IMAGE_FORMATS

    pk = dsub.add_parser("pack", help="compact merged training pack (real + synthetic) under a size budget")
    pk.add_argument("--out", type=Path, required=True)
    pk.add_argument("--data", type=Path, default=SHARED_DATA, help="folder of YOLO datasets (each with data.yaml)")
    pk.add_argument("--max-mb", type=float, default=60.0)
    pk.add_argument("--max-side", type=int, default=320)
    pk.add_argument("--synth", type=int, default=1400, help="synthetic images to add (0: none)")
    pk.add_argument("--seed", type=int, default=1)
    pk.add_argument("--renderer", choices=("auto", "gl", "cpu"), default="auto", help="renderer of the synthetic part")
    pk.add_argument("--format", choices=sorted(IMAGE_FORMATS), default="jpg",
                    help="image format (webp: about half the bytes for rendered scenes, so larger images fit)")
    pk.add_argument("--extra", type=Path, nargs="*", default=[],
                    help="materialized external sources (folders written by `datasets materialize`)")
    pk.add_argument("--teacher", type=Path, nargs="?", const=DEFAULT_TEACHER, default=None,
                    help="label context classes (people, vehicles, umbrellas, furniture) on every image with "
                         "the COCO checkpoint (default path: ../shared/pretrained/yolov5n-coco.pt); train extra")
    pk.add_argument("--teacher-cache", type=Path, help="JSON file of the teacher's boxes by image hash (reused)")
    pk.add_argument("--val-cap", type=int, default=0,
                    help="at most this many validation images per source (0: all); evaluate fully here")
    pk.set_defaults(func=cmd_pack)

    mt = dsub.add_parser("materialize", help="rebuild the external sources of datasets/sources.yaml from git snapshots")
    mt.add_argument("--mirror", type=Path, required=True, help="folder of git snapshots (owner+name/repo, or clones)")
    mt.add_argument("--out", type=Path, required=True)
    mt.add_argument("--only", nargs="*", default=[], help="source names (default: all)")
    mt.set_defaults(func=cmd_materialize)
    from datasets.formats import FORMATS

    im = dsub.add_parser("import", help="import COCO, VOC, CVAT, Label Studio or YOLO labels as canonical YOLO")
    im.add_argument("--format", choices=FORMATS, required=True)
    im.add_argument("--src", type=Path, required=True, help="label file (or VOC folder, or YOLO data.yaml)")
    im.add_argument("--images", type=Path, help="image folder (default: beside the label file)")
    im.add_argument("--video", type=Path, help="the video of a CVAT for video export")
    im.add_argument("--out", type=Path, required=True)
    im.add_argument("--names", nargs="*", default=[], metavar="OLD=NEW")
    im.add_argument("--drop-unknown", action="store_true", help="drop labels that map to no canonical name")
    im.add_argument("--val-fraction", type=float, default=0.2)
    im.add_argument("--seed", type=int, default=0)
    im.set_defaults(func=cmd_import)
    ex = dsub.add_parser("export", help="export a YOLO dataset as COCO JSON or a YOLO copy")
    ex.add_argument("--data", type=Path, required=True)
    ex.add_argument("--format", choices=["coco", "yolo"], required=True)
    ex.add_argument("--out", type=Path, required=True)
    ex.set_defaults(func=cmd_export_dataset)
    ck = dsub.add_parser("check", help="check labels, images, duplicates and balance; write a dataset card")
    ck.add_argument("data", type=Path, help="data.yaml")
    ck.add_argument("--out", type=Path, help="card folder (default: beside data.yaml)")
    ck.add_argument("--near-bits", type=int, default=4, help="dHash distance of near-duplicates")
    ck.set_defaults(func=cmd_check)
    mg = dsub.add_parser("merge", help="merge YOLO datasets with provenance and a duplicate-aware split")
    mg.add_argument("data", type=Path, nargs="+", help="data.yaml of each source")
    mg.add_argument("--out", type=Path, required=True)
    mg.add_argument("--names", nargs="*", default=[], metavar="OLD=NEW")
    mg.add_argument("--drop-unknown", action="store_true")
    mg.add_argument("--val-fraction", type=float, default=0.2)
    mg.add_argument("--near-bits", type=int, default=4)
    mg.add_argument("--seed", type=int, default=0)
    mg.set_defaults(func=cmd_merge)
    fr = dsub.add_parser("from-reviews", help="operators' confirmed/rejected cases as positives/hard negatives")
    fr.add_argument("--out", type=Path, required=True)
    fr.add_argument("--config", type=Path, help="the service YAML (its database and evidence folder)")
    fr.add_argument("--db", help="case store: SQLite file or SQLAlchemy URL (instead of --config)")
    fr.add_argument("--evidence", type=Path, help="evidence folder (instead of --config)")
    fr.add_argument("--context", type=float, default=1.0, help="context around the box, in box sizes per side")
    fr.set_defaults(func=cmd_from_reviews)

    t = sub.add_parser("train", help="train a detector with Ultralytics (needs the train extra)")
    t.add_argument("--data", type=Path, required=True, help="training pack folder (with data.yaml)")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--model", default="coco", help="'coco': the COCO-pretrained start (yolov5n, backbone and neck "
                   "from --pretrained); a model YAML (from scratch, e.g. yolo26n.yaml); or a local .pt to fine-tune")
    t.add_argument("--pretrained", type=Path, help="the YOLOv5n COCO checkpoint (default: "
                   "../shared/pretrained/yolov5n-coco.pt)")
    t.add_argument("--close-mosaic", type=int, default=10, help="last epochs trained without mosaic")
    t.add_argument("--data-yaml", default="data.yaml", help="data YAML inside the pack (e.g. "
                   "only_synthetic.yaml: one source)")
    t.add_argument("--lr0", type=float, default=0.0, help="SGD learning rate with a one-epoch warm-up for short "
                   "fine-tunes of trained weights (0: Ultralytics' automatic choice)")
    t.add_argument("--epochs", type=int, default=100)
    t.add_argument("--minutes", type=float, default=60.0, help="time budget (0: exactly --epochs)")
    t.add_argument("--imgsz", type=int, default=320)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--workers", type=int, default=0)
    t.add_argument("--device", default="cpu")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("export", help="export weights to ONNX and write the model card")
    e.add_argument("weights", type=Path)
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--imgsz", type=int, default=320)
    e.add_argument("--metrics", type=Path, help="metrics.json of the training run")
    e.add_argument("--version", default="0.1.0")
    e.set_defaults(func=cmd_export)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``streetwatch`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose - (1 if getattr(args, "quiet", False) else 0))
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
