"""The pipeline layer's commands: ``analyze``, ``plates`` and ``evaluate images|clips|loads|thresholds``.

Registered into the ``streetwatch`` command line by :mod:`service.cli`.

Each command imports what it runs when it runs (why: :mod:`service.cli`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasets.formats import parse_renames
from detector.backends.base import model_file
from models import DEFAULT_MODEL

if TYPE_CHECKING:
    from datasets.commands import Groups, Subcommands
    from detector.scene import SceneSettings

log = logging.getLogger("streetwatch")

VIEW_HELP = ("what is scored: 'product' (default) the detector through the scene stage, as cases see it: "
             "trucks as truck and uncovered_truck boxes by their load evidence, one class per object, garbage as "
             "piles (touching items) with their items as parts at a lower score; 'detector' its raw boxes")
IMGSZ_HELP = ("detector input side in pixels (default: the model's; a smaller one is faster, a larger one "
              "finds smaller objects: the model card gives AP at 320, 480 and 640)")
GATE_HELP = "exit 3 when any score drops by more than --fail-under against this metrics.json"


def cmd_analyze(args: argparse.Namespace) -> int:
    """Run batch analysis."""
    from pipelines.analyze import AnalyzeOptions, analyze

    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    started = None
    if args.start_time:
        try:
            started = datetime.fromisoformat(args.start_time)
        except ValueError as exc:
            raise SystemExit(f"--start-time: {exc} (write 2026-12-01T10:30)") from exc
    opts = AnalyzeOptions(inputs=args.inputs, out=args.out, model=model_file(args.model), config=args.config,
                          annotate=args.annotate, workers=args.workers, dwell=args.dwell, decode=args.decode,
                          conf=args.conf, imgsz=args.imgsz, progress=not args.quiet, ray=args.ray,
                          ray_cpus=args.ray_cpus, started=started, mask=not args.no_mask)
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


def _gate(metrics: Mapping[str, Any], args: argparse.Namespace) -> int:
    from pipelines.evaluation.score import gate

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
    from pipelines.evaluation.score import evaluate_images

    m = evaluate_images(args.data, args.out, args.model, parse_renames(args.names), args.imgsz, args.conf,
                        args.split, args.view, args.label_piles)
    log.info("mAP50 %s on %d images: %s", m["map50"], m["images"],
             {k: v.get("ap50", "absent") for k, v in m["classes"].items()})
    sys.stdout.write(f"metrics: {args.out / 'metrics.json'}\nreport: {args.out / 'report.html'}\n")
    return _gate(m, args)


def cmd_evaluate_clips(args: argparse.Namespace) -> int:
    """Score the whole product on labelled clips."""
    from pipelines.evaluation.score import evaluate_clips

    m = evaluate_clips(args.labels, args.videos, args.out, args.model, args.config, args.dwell, args.iou,
                       parse_renames(args.names), args.frame_labels, args.conf, args.imgsz, args.view)
    log.info("events: %s; false alarms per hour %s",
             {k: v["f1"] for k, v in m["events"].items() if v["f1"] is not None}, m["false_alarms_per_hour"])
    sys.stdout.write(f"metrics: {args.out / 'metrics.json'}\nreport: {args.out / 'report.html'}\n")
    return _gate(m, args)


def cmd_evaluate_compare(args: argparse.Namespace) -> int:
    """A candidate model beside a baseline on one labelled split, with the interval of their difference."""
    from pipelines.evaluation.compare import compare_images, table
    from pipelines.evaluation.compare_suite import SuiteError, load_suite, run_suite, suite_table

    if (args.data is None) == (args.suite is None):
        raise SystemExit("evaluate compare: give --data (one split) or --suite (a decision rule), not both")
    if args.suite is not None:
        try:
            suite = load_suite(args.suite)
        except SuiteError as exc:
            raise SystemExit(f"evaluate compare: {exc}") from exc
        res = run_suite(suite, args.model, args.against, args.out)
        sys.stdout.write(f"{suite_table(res)}\nsuite: {args.out / 'suite.json'}\n")
        return 0 if res["passed"] else 3
    if args.rounds < 1:
        raise SystemExit("--rounds: at least 1")
    result = compare_images(args.data, args.out, args.model, args.against, parse_renames(args.names), args.imgsz,
                            args.split, args.view, args.label_piles, args.rounds, args.seed)
    sys.stdout.write(f"{table(result)}\ncompare: {args.out / 'compare.json'}\n")
    return 0


def threshold_camera(args: argparse.Namespace) -> tuple[Path, SceneSettings | None]:
    """The model and scene settings thresholds are chosen with: ``--model``, else (with ``--config`` and
    ``--camera``) the camera's own model, else the default; the camera's ``scene:`` with ``--config``."""
    from pipelines.config import ConfigError, load_config

    if args.config is None:
        return args.model or DEFAULT_MODEL, None
    if not args.camera:
        raise SystemExit("--config needs --camera: the camera whose frames these are")
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from exc
    cam = next((c for c in cfg.cameras if c.id == args.camera), None)
    if cam is None:
        raise SystemExit(f"{args.config}: no camera {args.camera} (cameras: {', '.join(c.id for c in cfg.cameras)})")
    return args.model or cam.model or DEFAULT_MODEL, cam.scene.settings()


def cmd_evaluate_thresholds(args: argparse.Namespace) -> int:
    """Choose per-class confidence thresholds on labelled frames for a precision."""
    from pipelines.evaluation.thresholds import evaluate_thresholds, table

    if not 0 < args.precision <= 1:
        raise SystemExit(f"--precision must be in (0, 1], got {args.precision}")
    model, scene = threshold_camera(args)
    result = evaluate_thresholds(args.data, args.out, model, parse_renames(args.names), args.imgsz,
                                 args.precision, args.current, args.split, args.check_split, args.view, args.iou,
                                 args.min_recall, args.label_piles, args.camera, scene)
    log.info("thresholds for precision >= %s on %d images:\n%s", args.precision, result["images"], table(result))
    sys.stdout.write(f"thresholds: {args.out / 'thresholds.json'}\nconfig: {args.out / 'thresholds.yaml'}\n")
    return 0


def cmd_evaluate_loads(args: argparse.Namespace) -> int:
    """Score the product's load-state evidence on labelled trucks."""
    from pipelines.evaluation.loads import score_loads

    if (args.labels is None) == (args.data is None):
        raise SystemExit("give either --labels CSV (with --sources) or --data data.yaml")
    result = score_loads(args.model, args.out, args.conf, args.imgsz, labels=args.labels, sources=args.sources,
                         data=args.data, split=args.split)
    for load, m in result["by_load"].items():
        log.info("%s: %s", load, m)
    sys.stdout.write(f"metrics: {args.out / 'metrics.json'}\n")
    return 0


def _add_analyze(sub: Subcommands) -> None:
    a = sub.add_parser("analyze", help="analyse recorded video or images into violation cases")
    a.add_argument("inputs", nargs="+", help="video/image files, folders or globs")
    a.add_argument("--out", type=Path, required=True, help="output folder")
    a.add_argument("--config", type=Path, help="camera YAML (zones, rules); default: whole frame, all violations")
    a.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="detector (.onnx; .pt with the train extra)")
    a.add_argument("--annotate", action="store_true", help="also write an annotated video per source")
    a.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    a.add_argument("--dwell", type=float, help="override every violation's dwell time (seconds)")
    a.add_argument("--decode", choices=["all", "keyframes", "auto"], help="override the cameras' decode mode")
    a.add_argument("--conf", type=float, default=0.25, help="minimum detection confidence")
    a.add_argument("--imgsz", type=int, help=IMGSZ_HELP)
    a.add_argument("--ray", metavar="HOST:PORT", help="run one task per input on this Ray cluster (its head's "
                   "address); cases and evidence come back into --out")
    a.add_argument("--ray-cpus", type=float, default=1.0, help="CPUs per Ray task (detector threads)")
    a.add_argument("--start-time", metavar="ISO", help="local time the recordings start at (2026-12-01T10:30): "
                   "times in texts to shops, quiet hours and daily limits; default: now")
    a.add_argument("--no-mask", action="store_true", help="report.html shows the original evidence (faces and other "
                   "vehicles' plates unmasked); by default it shows masked copies (*.shared.jpg/mp4)")
    a.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    a.set_defaults(func=cmd_analyze)


def _add_evaluate_images(esub: Subcommands) -> None:
    ei = esub.add_parser("images", help="per-class P, R, AP50, AP50-95 (COCO) on a YOLO dataset")
    ei.add_argument("--data", type=Path, required=True, help="data.yaml of a YOLO dataset")
    ei.add_argument("--out", type=Path, required=True)
    ei.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ei.add_argument("--names", nargs="*", default=[], metavar="OLD=NEW", help="rename dataset classes")
    ei.add_argument("--imgsz", type=int, help=IMGSZ_HELP)
    ei.add_argument("--conf", type=float, default=0.25, help="threshold of precision, recall and confusion")
    ei.add_argument("--split", default="val")
    ei.add_argument("--view", choices=["product", "detector"], default="product", help=VIEW_HELP)
    ei.add_argument("--label-piles", action="store_true",
                    help="merge touching labelled garbage boxes into one heap box before scoring (for labels that "
                         "mark heaps, or to read a model on both conventions)")
    ei.add_argument("--baseline", type=Path, help=GATE_HELP)
    ei.add_argument("--fail-under", type=float, default=0.02)
    ei.set_defaults(func=cmd_evaluate_images)


def _add_evaluate_compare(esub: Subcommands) -> None:
    ec = esub.add_parser("compare", help="a candidate model beside a baseline on one labelled split: AP50 of each, "
                         "their difference and its 95 %% interval over paired resamples of the images")
    ec.add_argument("--data", type=Path, help="data.yaml of a YOLO dataset")
    ec.add_argument("--suite", type=Path, help="a decision rule instead: measures with their limits (YAML, see "
                    "models/compare_suite.yaml); exit 3 when the candidate breaks one")
    ec.add_argument("--out", type=Path, required=True)
    ec.add_argument("--model", type=Path, required=True, help="the candidate")
    ec.add_argument("--against", type=Path, default=DEFAULT_MODEL, help="the baseline (default: the default model)")
    ec.add_argument("--names", nargs="*", default=[], metavar="OLD=NEW", help="rename dataset classes")
    ec.add_argument("--imgsz", type=int, help=IMGSZ_HELP)
    ec.add_argument("--split", default="val")
    ec.add_argument("--view", choices=["product", "detector"], default="product", help=VIEW_HELP)
    ec.add_argument("--label-piles", action="store_true", help="merge touching labelled garbage boxes into heaps")
    ec.add_argument("--rounds", type=int, default=200, help="paired resamples of the images")
    ec.add_argument("--seed", type=int, default=0)
    ec.set_defaults(func=cmd_evaluate_compare)


def _add_evaluate_thresholds(esub: Subcommands) -> None:
    et = esub.add_parser("thresholds", help="per-class confidence thresholds for a precision, chosen on labelled "
                         "frames of a site's cameras (a rules.min_confidence config fragment)")
    et.add_argument("--data", type=Path, required=True, help="data.yaml of a YOLO dataset (the site's frames)")
    et.add_argument("--out", type=Path, required=True)
    et.add_argument("--model", type=Path, help="default: the camera's own model (--config), else the shipped one")
    et.add_argument("--precision", type=float, default=0.8,
                    help="the precision every class keeps: the share of its boxes that are right (default 0.8)")
    et.add_argument("--split", default="val", help="the split thresholds are chosen on")
    et.add_argument("--check-split", help="a second split the chosen thresholds are scored on (not chosen on it)")
    et.add_argument("--min-recall", type=float, default=0.1, help="a threshold must also find this share of the "
                    "labelled objects (default 0.1); a class that cannot is left at the default")
    et.add_argument("--iou", type=float, default=0.5, help="overlap a box needs with a labelled one to be right "
                    "(0.5: COCO's; 0.2 also counts a pile boxed loosely or in part, a right alarm for an operator)")
    et.add_argument("--current", type=float, default=0.25, help="today's threshold, shown for comparison")
    et.add_argument("--names", nargs="*", default=[], metavar="OLD=NEW", help="rename dataset classes")
    et.add_argument("--imgsz", type=int, help=IMGSZ_HELP)
    et.add_argument("--view", choices=["alarms", "product", "detector"], default="alarms",
                    help="what is scored: 'alarms' (default) the boxes the rules act on, each pile of touching garbage "
                    "one box at its best item's score; 'product' piles with their items as parts (as evaluate "
                    "images); 'detector' the raw boxes")
    et.add_argument("--label-piles", action="store_true", help="merge touching labelled garbage boxes into one heap "
                    "box first (labels that box each bag, read against alarms about the heap)")
    et.add_argument("--camera", help="the frames are this camera's: the fragment goes under its entry of cameras: "
                    "(its own rules change only the thresholds set)")
    et.add_argument("--config", type=Path, help="the camera file (as analyze --config) with --camera's entry: its "
                    "scene settings and its own model are used")
    et.set_defaults(func=cmd_evaluate_thresholds)


def _add_evaluate_loads(esub: Subcommands) -> None:
    el = esub.add_parser("loads", help="the product's load-state evidence on labelled trucks (found, P(uncovered))")
    el.add_argument("--labels", type=Path, help="truck_loads.csv (source, image, line, load)")
    el.add_argument("--sources", type=Path, default=Path("data/sources"),
                    help="materialized external sources (`datasets materialize --out`)")
    el.add_argument("--data", type=Path,
                    help="or a YOLO dataset whose truck / uncovered_truck boxes mean covered / uncovered")
    el.add_argument("--split", default="val")
    el.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    el.add_argument("--imgsz", type=int, help=IMGSZ_HELP)
    el.add_argument("--conf", type=float, default=0.25, help="detection threshold (the product's)")
    el.add_argument("--out", type=Path, required=True)
    el.set_defaults(func=cmd_evaluate_loads)


def _add_evaluate_clips(esub: Subcommands) -> None:
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
    ec.add_argument("--baseline", type=Path, help=GATE_HELP)
    ec.add_argument("--fail-under", type=float, default=0.02)
    ec.add_argument("--imgsz", type=int, help=IMGSZ_HELP)
    ec.add_argument("--view", choices=["product", "detector"], default="product", help=VIEW_HELP)
    ec.set_defaults(func=cmd_evaluate_clips)


def cmd_plates(args: argparse.Namespace) -> int:
    """Read the number plates of the vehicles in images and videos."""
    from detector.backends.base import ModelLoadError, config_for, create_backend
    from detector.plate_reader import PlateReader, PlateReaderUnavailable
    from pipelines.plates import read_plates

    try:
        reader = PlateReader(min_confidence=args.min_confidence)
        backend = create_backend(config_for(args.model, conf=args.conf, imgsz=args.imgsz))
    except (PlateReaderUnavailable, ModelLoadError) as exc:
        log.error("%s", exc)
        return 2
    results, errors = read_plates(args.inputs, args.out, backend, reader, args.all_vehicles, args.fps)
    for err in errors:
        log.error("%s: %s", err["source"], err["error"])
    plates = sum(1 for r in results for v in r["vehicles"] if v["plate"])
    log.info("%d plates read on %d vehicles in %d inputs: %s", plates, sum(len(r["vehicles"]) for r in results),
             len(results), args.out)
    return 0 if results else 2


def _add_plates(sub: Subcommands) -> None:
    p = sub.add_parser("plates", help="read the number plates of trucks (or all vehicles) in images and videos")
    p.add_argument("inputs", nargs="+", help="image/video files, folders or globs")
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="vehicle detector (.onnx)")
    p.add_argument("--conf", type=float, default=0.25, help="minimum vehicle detection confidence")
    p.add_argument("--imgsz", type=int, help=IMGSZ_HELP)
    p.add_argument("--all-vehicles", action="store_true", help="read cars, buses and motorcycles too")
    p.add_argument("--fps", type=float, default=2.0, help="video frames read per second")
    p.add_argument("--min-confidence", type=float, default=0.6, help="plate readings the OCR is less sure of "
                   "are dropped")
    p.set_defaults(func=cmd_plates)


def register(sub: Subcommands, groups: Groups) -> None:
    """Add ``analyze``, ``plates`` and the ``evaluate`` group (stored in ``groups``) to the command line."""
    _add_analyze(sub)
    _add_plates(sub)
    ev = sub.add_parser("evaluate", help="score the detector (images) or the whole product (labelled clips)")
    esub = ev.add_subparsers(dest="evaluate_command", required=True)
    groups["evaluate"] = esub
    _add_evaluate_images(esub)
    _add_evaluate_compare(esub)
    _add_evaluate_loads(esub)
    _add_evaluate_clips(esub)
    _add_evaluate_thresholds(esub)
