"""One-file, unattended GPU training of the default detector.

Runs on a lent CUDA machine that already has PyTorch (the project's wheels for
Ultralytics are carried next to it) and on any other machine as a fallback.
It fine-tunes the COCO-pretrained start (``--model coco``: Ultralytics'
``yolov5n.yaml`` whose backbone and neck come from ``--pretrained``, see
``models/pretrained.py``), or trains a model YAML from scratch (never a hub
checkpoint), on a training pack made by ``streetwatch datasets pack``, for as
many epochs as fit in the time budget, validates the best weights on every
per-source validation split, and writes everything a model card needs into
``--out``:

    best.pt, results.csv, metrics.json, train.log (and best.onnx when export works)

Ultralytics saves ``best.pt``/``last.pt`` every epoch, and this script writes
its outputs in a ``finally`` block, so a run stopped at the time limit (SIGTERM)
still leaves the best weights so far.

A training longer than one sitting (a from-COCO training of the full pack takes
over 2 h on 2 CPU cores) runs in parts: ``--work`` keeps Ultralytics' run
folder (weights, optimizer, learning-rate schedule) where a later run finds it,
``--session-epochs N`` stops after N epochs of the schedule, and ``--resume``
goes on from the last saved epoch, as if never stopped. A part killed mid-epoch
loses only that epoch.

Example:
    python -m models.train_gpu --pack pack --out out --minutes 8.5 --imgsz 416
    python -m models.train_gpu --pack pack --out out --minutes 0 --epochs 8 --work w --session-epochs 4
    python -m models.train_gpu --pack pack --out out --work w --resume
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

from models.pretrained import DEFAULT_CHECKPOINT, load_coco_checkpoint, student_start

log = logging.getLogger("train_gpu")


def _offline_environment(workdir: Path) -> None:
    """Make Ultralytics work with no network: offline flag, private config dir, a local font."""
    os.environ["YOLO_OFFLINE"] = "1"
    cfg = workdir / "yolo_config"
    (cfg / "Ultralytics").mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    try:
        import matplotlib

        font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            shutil.copy(font, cfg / "Ultralytics" / name)
    except Exception as exc:  # fonts only matter for plots
        log.warning("no local font for Ultralytics plots: %s", exc)


def _polars_fallback() -> None:
    """Provide ``polars.read_csv(...).to_dict()`` when polars is missing.

    Ultralytics reads its own ``results.csv`` with polars when saving a
    checkpoint; polars' 54 MB runtime does not fit the GPU carry budget, so a
    stdlib ``csv`` reader stands in for exactly that call.
    """
    try:
        import polars  # noqa: F401
    except ImportError:
        mod = types.ModuleType("polars")

        class _Frame:
            def __init__(self, rows: list[dict[str, str]]) -> None:
                self.rows = rows

            def to_dict(self, as_series: bool = False) -> dict[str, list[Any]]:
                keys = list(self.rows[0]) if self.rows else []
                out: dict[str, list[Any]] = {k.strip(): [] for k in keys}
                for r in self.rows:
                    for k in keys:
                        v = r[k]
                        try:
                            out[k.strip()].append(float(v))
                        except ValueError:
                            out[k.strip()].append(v)
                return out

        def read_csv(data: bytes | str, **_: Any) -> _Frame:
            text = data.decode() if isinstance(data, bytes) else Path(data).read_text()
            return _Frame(list(csv.DictReader(io.StringIO(text))))

        mod.read_csv = read_csv  # type: ignore[attr-defined]
        sys.modules["polars"] = mod


def _validate(model_path: Path, pack: Path, imgsz: int, device: str) -> dict[str, Any]:
    """Validate weights on each ``val_*.yaml`` of the pack and on the merged val."""
    from ultralytics.models import YOLO

    model = YOLO(str(model_path))
    out: dict[str, Any] = {}
    for yaml_path in [pack / "data.yaml", *sorted(pack.glob("val_*.yaml"))]:
        split = "all" if yaml_path.name == "data.yaml" else yaml_path.stem[4:]
        m = model.val(data=str(yaml_path), imgsz=imgsz, batch=32, device=device, plots=False,
                      verbose=False, workers=4, split="val")
        out[split] = summarise(m)
        log.info("val %s: mAP50 %.3f %s", split, m.box.map50, {k: v["ap50"] for k, v in out[split]["classes"].items()})
    return out


def summarise(m: Any) -> dict[str, Any]:
    """mAP and per-class precision, recall, AP50, AP50-95 and instances of an Ultralytics val result."""
    per_class: dict[str, Any] = {}
    for i, c in enumerate(m.box.ap_class_index):
        p, r, ap50, ap = m.box.class_result(i)
        per_class[m.names[int(c)]] = {"precision": round(float(p), 4), "recall": round(float(r), 4),
                                      "ap50": round(float(ap50), 4), "ap50_95": round(float(ap), 4),
                                      "instances": int(m.nt_per_class[int(c)])}
    return {"map50": round(float(m.box.map50), 4), "map50_95": round(float(m.box.map), 4), "classes": per_class}


def _names(data_yaml: Path) -> list[str]:
    """Class names of a pack's data YAML (``names:`` block of ``i: name`` lines), without PyYAML."""
    names: list[str] = []
    inside = False
    for line in data_yaml.read_text().splitlines():
        if line.startswith("names:"):
            inside = True
        elif inside and line.startswith("  ") and ":" in line:
            names.append(line.split(":", 1)[1].strip())
        elif inside:
            break
    return names


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", type=Path, required=True, help="training pack folder (has data.yaml)")
    ap.add_argument("--out", type=Path, required=True, help="where best.pt, metrics.json, ... go")
    ap.add_argument("--model", default="coco", help="'coco' (the COCO-pretrained yolov5n start), a model YAML "
                    "(from scratch, e.g. yolo26n.yaml) or a local .pt to fine-tune")
    ap.add_argument("--pretrained", type=Path, default=None,
                    help="the YOLOv5n COCO checkpoint for --model coco (default: ../shared/pretrained/yolov5n-coco.pt)")
    ap.add_argument("--close-mosaic", type=int, default=10, help="last epochs trained without mosaic")
    ap.add_argument("--freeze", type=int, default=0,
                    help="keep the first N layers as they start (10: the COCO backbone of yolov5n), train the rest")
    ap.add_argument("--hyp", nargs="*", default=[], metavar="KEY=VALUE",
                    help="other Ultralytics training settings, numbers only (e.g. cutmix=0.3 scale=0.9)")
    ap.add_argument("--warmup-epochs", type=float, default=None,
                    help="epochs of learning-rate warm-up (default: 1 with --lr0, else Ultralytics' 3)")
    ap.add_argument("--minutes", type=float, default=8.5, help="training time budget (0: train --epochs)")
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 2))
    ap.add_argument("--device", default="0")
    ap.add_argument("--threads", type=int, default=0,
                    help="PyTorch threads on a CPU (0: every core; Ultralytics alone would leave one idle)")
    ap.add_argument("--epochs", type=int, default=400, help="upper bound; the time budget decides")
    ap.add_argument("--data", default="data.yaml", help="data YAML inside the pack (e.g. only_synthetic.yaml)")
    ap.add_argument("--classes", default="", help="train on these class names only, comma-separated")
    ap.add_argument("--multi-scale", type=float, default=0.0,
                    help="train each batch at a random size within imgsz*(1 +- this), so one model serves several "
                         "input sizes (e.g. 480 and 0.34: 320 to 640 px)")
    ap.add_argument("--lr0", type=float, default=0.0,
                    help="SGD initial learning rate with a one-epoch warm-up, for short fine-tunes of trained "
                         "weights (0: Ultralytics' automatic optimizer choice)")
    ap.add_argument("--last", action="store_true",
                    help="keep the final epoch's weights, not the epoch best on the validation split (where that "
                         "split is also the test, choosing on it flatters the score); written as best.pt all the "
                         "same, metrics.json's 'weights' says which")
    ap.add_argument("--work", type=Path, default=None,
                    help="folder that keeps Ultralytics' run (weights, optimizer state) for --resume (default: a "
                         "new temporary folder)")
    ap.add_argument("--resume", action="store_true",
                    help="go on with the training kept in --work from its last saved epoch (the schedule, epochs, "
                         "batch and settings are the checkpoint's; --workers, --device and --session-epochs still "
                         "apply)")
    ap.add_argument("--session-epochs", type=int, default=0,
                    help="stop after this many epochs in this run, keeping the state for --resume (0: no limit)")
    return ap


def last_checkpoint(work: Path) -> tuple[Path, dict[str, Any]]:
    """The latest resumable checkpoint of the run kept in ``work`` and its contents, for ``--resume``.

    Ultralytics saves ``last.pt`` after every epoch and strips its optimizer state when a training ends: a run
    stopped by ``--session-epochs`` keeps a copy as ``resume.pt`` (see :func:`stop_after`) and puts it back as
    ``last.pt`` once Ultralytics returns; a run killed mid-epoch leaves ``last.pt`` whole, one killed between the
    strip and the put-back leaves ``resume.pt``. The one with optimizer state and the latest epoch wins; a stripped
    ``last.pt`` alone is a finished training.

    Raises:
        SystemExit: There is none (no run was kept there, it saved no epoch yet, or its training is finished).
    """
    weights = work / "runs" / "train" / "weights"
    found: list[tuple[int, Path, dict[str, Any]]] = []
    for path in (weights / "resume.pt", weights / "last.pt"):
        if path.is_file():
            import torch

            # Our own run's checkpoint (not a downloaded one): Ultralytics loads it the same way.
            kept = torch.load(path, map_location="cpu", weights_only=False)
            if kept.get("optimizer") is not None:
                found.append((int(kept.get("epoch", -1)), path, kept))
    if not found and (weights / "last.pt").is_file():  # Ultralytics strips a training's state when it ends
        raise SystemExit(f"--resume: the training in {work} is finished")
    if not found:
        raise SystemExit(f"--resume: no resumable epoch in {weights}; start a training with --work {work} first")
    epoch, path, kept = max(found, key=lambda f: f[0])
    epochs = int((kept.get("train_args") or {}).get("epochs", 0))
    if epoch + 1 >= epochs:
        raise SystemExit(f"--resume: the training in {work} is finished ({epoch + 1} of {epochs} epochs)")
    return path, kept


def stop_after(epochs: int) -> Any:
    """An Ultralytics ``on_fit_epoch_end`` callback that stops the training after ``epochs`` epochs of this run.

    The epoch's weights and optimizer state are saved before this callback runs; it keeps them as ``resume.pt``
    beside ``last.pt`` (whose optimizer state Ultralytics strips when the training stops), so ``--resume`` goes on
    from the next epoch.
    """
    done = False

    def callback(trainer: Any) -> None:
        nonlocal done
        if done or trainer.epoch - trainer.start_epoch + 1 < epochs:
            return
        done = True  # the final validation calls this hook once more, after the strip
        shutil.copy(trainer.last, Path(trainer.last).with_name("resume.pt"))
        log.info("stopping after %d epochs of this run (epoch %d of %d): go on with --resume", epochs,
                 trainer.epoch + 1, trainer.epochs)
        trainer.stop = True

    return callback


def cpu_threads(wanted: int) -> int:
    """Give PyTorch ``wanted`` threads (0: every core) for training and validation on a CPU; returns the count.

    Ultralytics sets ``torch.set_num_threads(NUM_THREADS)`` when it picks the CPU, and ``NUM_THREADS`` is the
    core count less one, kept free for data-loader workers; but on a CPU it trains with no workers (the data is
    loaded in the training thread), so on a 2-core machine one core stayed idle. Its module constant is
    replaced, so its own device selection sets the count asked for here.
    """
    import torch
    from ultralytics.utils import torch_utils

    threads = wanted if wanted > 0 else (os.cpu_count() or 1)
    torch_utils.NUM_THREADS = threads  # type: ignore[attr-defined]  # read by its select_device at call time
    torch.set_num_threads(threads)
    return threads


def record_threads(summary: dict[str, Any]) -> Any:
    """An Ultralytics callback that notes in ``summary["torch_threads"]`` the threads PyTorch trains with."""
    import torch

    def callback(trainer: Any) -> None:
        summary["torch_threads"] = torch.get_num_threads()

    return callback


def hyp_settings(pairs: list[str]) -> dict[str, float]:
    """``KEY=VALUE`` training settings as numbers; a malformed one is an error, not a silent default."""
    out: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            if not sep or not key.isidentifier():
                raise ValueError(pair)
            out[key] = float(value)
        except ValueError:
            raise SystemExit(f"--hyp {pair!r}: expected KEY=NUMBER") from None
    return out


def warmup_epochs(args: argparse.Namespace) -> float:
    """Warm-up epochs: as asked, else one for a short fine-tune at a fixed ``--lr0``, else Ultralytics' three."""
    if args.warmup_epochs is not None:
        return float(args.warmup_epochs)
    return 1.0 if args.lr0 > 0 else 3.0


def _start(args: argparse.Namespace, summary: dict[str, Any]) -> tuple[str, list[int] | None]:
    """The model to train (the COCO start is built here) and the class ids to train on (None: all)."""
    names = _names(args.pack / args.data)
    wanted = [c for c in args.classes.split(",") if c]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise SystemExit(f"unknown classes {unknown}; the pack has {names}")
    manifest = args.pack / "manifest.json"
    if manifest.exists():
        summary["pack_manifest_sha256"] = json.loads(manifest.read_text()).get("dataset_sha256")
    if args.resume:  # the checkpoint's settings decide the rest of the training
        last, kept = last_checkpoint(args.work)
        train_args = dict(kept.get("train_args") or {})
        for key in ("imgsz", "epochs", "close_mosaic", "batch"):
            setattr(args, key, train_args[key])
            summary[key] = train_args[key]
        summary.update(resumed_from=str(last), resumed_after_epoch=int(kept["epoch"]) + 1,
                       start=f"resumed from {last.name} (its start: {train_args.get('model')})")
        return str(last), None
    model = args.model
    if model == "coco":
        ckpt = load_coco_checkpoint(args.pretrained or DEFAULT_CHECKPOINT)
        model = str(student_start(names, args.out / "start.pt", ckpt))
        summary["start"] = "COCO-pretrained yolov5n (layers 0-23 from yolov5n-coco.pt, GPL-3.0)"
    return model, [names.index(c) for c in wanted] or None


def _train(args: argparse.Namespace, model: str, class_ids: list[int] | None, device: str, work: Path,
           started: float, summary: dict[str, Any]) -> None:
    """Ultralytics' training within the time budget; data-loader workers that die early get one retry without."""
    from ultralytics.models import YOLO

    for workers in (args.workers, 0):
        minutes = args.minutes - (time.time() - started) / 60
        try:
            summary["workers"] = workers
            yolo = YOLO(model)
            yolo.add_callback("on_train_epoch_start", record_threads(summary))
            if args.session_epochs > 0:
                yolo.add_callback("on_fit_epoch_end", stop_after(args.session_epochs))
            if args.resume:  # Ultralytics restores the epochs, schedule and settings from the checkpoint
                yolo.train(resume=model, data=str(args.pack / args.data), batch=args.batch, workers=workers,
                           device=device, cache="ram", plots=False)
            else:
                settings: dict[str, Any] = {
                    "close_mosaic": args.close_mosaic, "mixup": 0.1, "multi_scale": args.multi_scale,
                    "warmup_epochs": warmup_epochs(args), "freeze": args.freeze or None,
                    **({"optimizer": "SGD", "lr0": args.lr0} if args.lr0 > 0 else {}), **hyp_settings(args.hyp)}
                yolo.train(
                    data=str(args.pack / args.data), classes=class_ids, epochs=args.epochs,
                    time=minutes / 60 if args.minutes > 0 else None, imgsz=args.imgsz,
                    batch=args.batch, workers=workers, device=device, project=str(work / "runs"), name="train",
                    exist_ok=True, plots=False, cache="ram", patience=1000, seed=0, deterministic=False, **settings)
            kept = work / "runs" / "train" / "weights" / "resume.pt"
            if kept.exists():  # stopped by --session-epochs: last.pt is whole again, resumable
                os.replace(kept, kept.with_name("last.pt"))
            return
        except Exception:
            # Data-loader workers can die where shared memory is small; retry once without them.
            if workers == 0 or time.time() - started > 120:
                raise
            log.exception("training with %d workers failed early; retrying with workers=0", workers)


def kept_weights(run_dir: Path, last: bool) -> Path:
    """The weights a run keeps: the epoch best on the validation split, or with ``last`` the final epoch's (also
    when a stopped run saved no best)."""
    best = run_dir / "weights" / "best.pt"
    return best if best.exists() and not last else run_dir / "weights" / "last.pt"


def _collect(args: argparse.Namespace, run_dir: Path, device: str, started: float, summary: dict[str, Any]) -> None:
    """Copy the weights and results out, validate and export them, and write ``metrics.json``."""
    from ultralytics.models import YOLO

    summary["train_seconds"] = round(time.time() - started, 1)
    weights = kept_weights(run_dir, args.last)
    summary["weights"] = weights.stem  # best: the epoch best on the validation split; last: the final epoch
    if (run_dir / "results.csv").exists():
        shutil.copy(run_dir / "results.csv", args.out / "results.csv")
        summary["epochs"] = sum(1 for _ in open(run_dir / "results.csv")) - 1
    if weights.exists():
        shutil.copy(weights, args.out / "best.pt")
        try:
            summary["val"] = _validate(weights, args.pack, args.imgsz, device)
        except Exception as exc:
            log.exception("validation failed: %s", exc)
        try:
            onnx = YOLO(str(weights)).export(format="onnx", imgsz=args.imgsz, dynamic=True, simplify=False,
                                             nms=False)
            shutil.copy(onnx, args.out / "best.onnx")
        except Exception as exc:
            log.warning("ONNX export skipped (do it with `streetwatch export`): %s", exc)
    summary["total_seconds"] = round(time.time() - started, 1)
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=1))
    log.info("wrote %s", sorted(p.name for p in args.out.iterdir()))


def main(argv: list[str] | None = None) -> int:
    """Train, validate and collect outputs; returns a process exit code."""
    args = build_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        handlers=[logging.StreamHandler(), logging.FileHandler(args.out / "train.log")])
    if args.resume and args.work is None:
        raise SystemExit("--resume needs --work: the folder the stopped run kept")
    work = args.work or Path(tempfile.mkdtemp(prefix="sw_train_"))
    work.mkdir(parents=True, exist_ok=True)
    _offline_environment(work)
    _polars_fallback()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    import torch
    from ultralytics.engine import trainer as trainer_mod

    # AMP self-check loads a hub checkpoint; offline it cannot, and CUDA GPUs here run AMP fine.
    trainer_mod.check_amp = lambda model: torch.cuda.is_available()  # type: ignore[attr-defined,unused-ignore]
    threads = cpu_threads(args.threads)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    device = args.device if torch.cuda.is_available() else "cpu"
    log.info("device %s, torch %s", gpu, torch.__version__)
    started = time.time()
    summary: dict[str, Any] = {"gpu": gpu, "model": args.model, "imgsz": args.imgsz, "batch": args.batch,
                               "multi_scale": args.multi_scale, "lr0": args.lr0 or "auto",
                               "time_budget_min": args.minutes, "pack_manifest_sha256": None,
                               "data": args.data, "classes": args.classes or "all", "freeze": args.freeze,
                               "close_mosaic": args.close_mosaic, "warmup_epochs": warmup_epochs(args),
                               "hyp": hyp_settings(args.hyp), "session_epochs": args.session_epochs,
                               "cpu_threads": threads}
    model, class_ids = _start(args, summary)
    try:
        _train(args, model, class_ids, device, work, started, summary)
    except KeyboardInterrupt:
        log.warning("interrupted: keeping the weights saved so far")
    finally:
        _collect(args, work / "runs" / "train", device, started, summary)
    return 0 if (args.out / "best.pt").exists() else 1


if __name__ == "__main__":
    sys.exit(main())
