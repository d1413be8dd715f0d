"""Leave-one-source-out: train without a source, score on it — the honest proxy for a city never seen.

Validation splits of the sources a model was trained on flatter it (same cameras, same photographers, near
duplicates across splits). For each source named, this trains the same recipe on every *other* source and
scores the weights on the left-out source's validation images with the product's own evaluator (detector
plus the scene stage, see :mod:`detector.scene`), and with the detector alone:

    python -m pipelines.evaluation.loso --sources garbage_bags garbage_roadside_in garbage_street_cn \
        --classes garbage garbage_bin overflowing_bin --start coco --epochs 12 --imgsz 320 --out runs/loso

``--start coco`` fine-tunes Ultralytics' ``yolov5n.yaml`` whose backbone and neck come from the COCO
checkpoint (:mod:`models.pretrained`); ``--start scratch`` trains ``--scratch-model`` (``yolo26n.yaml``)
from random weights. Same data, input size and epochs, so the two can be compared. Writes
``OUT/<start>/<source>/`` (weights, Ultralytics metrics, evaluator metrics) and ``OUT/loso.json`` +
``OUT/loso.md`` with every run made so far under ``OUT``. A run whose ``best.pt`` exists is not trained again.

Needs the ``train`` extra.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from datasets.mix import link_image, role_dirs
from datasets.yolo import YoloDataset
from models import SHARED_DATA
from models.export import loso_lines
from models.pretrained import student_start
from models.train_gpu import main as train_main
from pipelines.evaluation.images import collect as collect_detections
from pipelines.evaluation.score import report_images, scoring_backend

log = logging.getLogger("loso")


def source_yaml(data: Path, source: str) -> Path:
    """A source's ``data.yaml``: a folder name under ``data`` or a path to a ``data.yaml``."""
    path = Path(source)
    return path if path.suffix == ".yaml" else data / source / "data.yaml"


def source_name(source: str) -> str:
    """The short name of a source (its folder's name)."""
    path = Path(source)
    return path.parent.name if path.suffix == ".yaml" else source


def source_manifest(data: Path, source: str) -> dict[str, Any]:
    """A folder's ``manifest.json`` when it is an object (``datasets materialize``, ``datasets paste``), else
    empty (none, or the per-file list of a ../shared folder)."""
    manifest = source_yaml(data, source).parent / "manifest.json"
    if manifest.is_file():
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        if isinstance(meta, dict):
            return meta
    return {}


def source_group(data: Path, source: str) -> str:
    """The source a folder belongs to: the folder it ``extends`` (its ``manifest.json``, written by
    ``datasets materialize``), else its own name. Leaving a source out leaves out its whole group."""
    extends = source_manifest(data, source).get("extends")
    return str(extends) if extends else source_name(source)


def objects_from(data: Path, source: str) -> list[str]:
    """The sources a pasted folder's objects were cut from (its ``manifest.json``, written by ``datasets paste``);
    none for any other folder. Leaving a source out leaves out what was pasted from it."""
    objects = source_manifest(data, source).get("objects")
    return [str(o) for o in objects] if isinstance(objects, list) else []


def write_split(data: Path, sources: list[str], left_out: str, classes: list[str], out: Path) -> Path:
    """Write a YOLO folder: the other sources' train/val images (linked) with ``classes`` as labels, and
    ``val_<left_out>.yaml`` with the left-out source's validation images. Returns ``out/data.yaml``.

    A folder that extends the left-out source (more images of the same origin), or whose pasted objects were cut
    from it, is left out with it; only the left-out source's own validation images are scored."""
    index = {c: i for i, c in enumerate(classes)}
    names = "".join(f"  {i}: {c}\n" for i, c in enumerate(classes))
    held = source_name(left_out)
    roles: dict[str, list[str]] = {"train": [], "val": []}
    for src in sources:
        ds = YoloDataset.load(source_yaml(data, src))
        name = source_name(src)
        keep = {k: index[v] for k, v in ds.names.items() if v in index}
        is_held = name == held
        if not is_held and (source_group(data, src) == held or held in objects_from(data, src)):
            log.info("%s left out with %s (made from it)", name, held)
            continue
        for split in ("train", "val"):
            if is_held and split == "train":
                continue
            items = list(ds.items(split))
            if not items:
                continue
            role = f"heldout_{name}" if is_held else f"{split}_{name}"
            if not is_held:
                roles[split].append(f"images/{role}")
            img_dir, lbl_dir = role_dirs(out, role)
            for it in items:
                link = link_image(it.image, img_dir, name)
                rows = [f"{keep[c]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for c, cx, cy, w, h in it.boxes if c in keep]
                (lbl_dir / f"{link.stem}.txt").write_text("".join(rows))
    train, val = ", ".join(roles["train"]), ", ".join(roles["val"])
    (out / "data.yaml").write_text(f"train: [{train}]\nval: [{val}]\nnames:\n{names}")
    (out / f"val_{held}.yaml").write_text(f"train: images/heldout_{held}\nval: images/heldout_{held}\nnames:\n{names}")
    return out / "data.yaml"


def train_run(split_dir: Path, out: Path, start: str, classes: list[str], epochs: int, imgsz: int, batch: int,
              workers: int, scratch_model: str, schedule: tuple[int, float] = (10, 3.0), freeze: int = 0,
              hyp: list[str] | None = None) -> Path:
    """Train one leave-one-out run with ``models/train_gpu.py`` (exact epochs, CPU or GPU).

    ``schedule``: the last epochs trained without mosaic, and the warm-up epochs; ``freeze``: the first layers
    kept as they start (10: the COCO backbone); ``hyp``: other Ultralytics settings, ``KEY=VALUE``."""
    if start == "coco":
        model = str(student_start(classes, out / "start.pt"))
    else:
        model = scratch_model
    rc = train_main(["--pack", str(split_dir), "--out", str(out), "--model", model, "--minutes", "0",
                     "--epochs", str(epochs), "--imgsz", str(imgsz), "--batch", str(batch), "--workers", str(workers),
                     "--device", "0", "--close-mosaic", str(schedule[0]), "--warmup-epochs", str(schedule[1]),
                     "--freeze", str(freeze), *(["--hyp", *hyp] if hyp else [])])
    if rc != 0:
        raise RuntimeError(f"training {out} failed (exit {rc})")
    return out / "best.pt"


def score(weights: Path, data_yaml: Path, out: Path, imgsz: int) -> dict[str, Any]:
    """Score weights on a held-out split with the product's evaluator: detector alone and product view, each on
    the source's labels as they are and as heaps (``*_heaps``: touching labelled garbage boxes merged into one,
    what a case is about; sources differ in whether they box each bag or the heap)."""
    result: dict[str, Any] = {}
    for view in ("detector", "product"):
        backend = scoring_backend(weights, imgsz, view)
        ev = collect_detections(data_yaml, backend, "val", {})  # the detector runs once a view, scored both ways
        for heaps in (False, True):
            name = f"{view}_heaps" if heaps else view
            m = report_images(ev, backend, out / name, weights, data_yaml, {}, 0.25, "val", view, heaps)
            # Only the classes the left-out source labels (a class it lacks has no AP to report).
            result[name] = {c: v.get("ap50") for c, v in m["classes"].items()
                            if not v.get("absent") and v.get("instances", 0) > 0}
    return result


def collect(out: Path) -> dict[str, Any]:
    """Every scored run under ``out``: ``{start: {source: scores}}``."""
    table: dict[str, Any] = {}
    for f in sorted(out.glob("*/*/scores.json")):
        table.setdefault(f.parent.parent.name, {})[f.parent.name] = json.loads(f.read_text())
    return table


def write_table(out: Path) -> None:
    """Write ``loso.json`` and a markdown table ``loso.md`` of every scored run."""
    table = collect(out)
    (out / "loso.json").write_text(json.dumps(table, indent=1) + "\n")
    (out / "loso.md").write_text("\n".join(loso_lines({"runs": table})) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED_DATA, help="folder of YOLO sources")
    ap.add_argument("--sources", nargs="+", required=True, help="source folders under --data, or data.yaml paths")
    ap.add_argument("--leave-out", nargs="*", help="sources to leave out in turn (default: every source)")
    ap.add_argument("--classes", nargs="+", required=True, help="canonical class names to train and score")
    ap.add_argument("--start", choices=["coco", "scratch"], default="coco")
    ap.add_argument("--scratch-model", default="yolo26n.yaml")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--close-mosaic", type=int, default=10, help="last epochs trained without mosaic")
    ap.add_argument("--warmup-epochs", type=float, default=3.0, help="epochs of learning-rate warm-up")
    ap.add_argument("--freeze", type=int, default=0, help="first layers kept as they start (10: the COCO backbone)")
    ap.add_argument("--hyp", nargs="*", default=[], metavar="KEY=VALUE", help="other Ultralytics training settings")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--score-only", action="store_true", help="re-score existing weights, train nothing")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    runs = []
    for left_out in args.leave_out or args.sources:
        name = source_name(left_out)
        run, split_dir = args.out / args.start / name, args.out / "splits" / name
        if not (split_dir / f"val_{name}.yaml").exists():
            write_split(args.data, args.sources, left_out, args.classes, split_dir)
        if not (run / "best.pt").exists() and not args.score_only:
            train_run(split_dir, run, args.start, args.classes, args.epochs, args.imgsz, args.batch, args.workers,
                      args.scratch_model, (args.close_mosaic, args.warmup_epochs), args.freeze,
                      args.hyp)
        if (run / "best.pt").exists():
            runs.append((name, run, split_dir / f"val_{name}.yaml"))
    for name, run, held in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        scores = score(run / "best.pt", held, run / "eval", args.imgsz)
        (run / "scores.json").write_text(json.dumps(
            {"scores": scores, "epochs": metrics.get("epochs"), "train_seconds": metrics.get("train_seconds"),
             "imgsz": args.imgsz, "trained_on": [source_name(s) for s in args.sources
                                                 if source_group(args.data, s) != name and source_name(s) != name],
             "close_mosaic": args.close_mosaic, "warmup_epochs": args.warmup_epochs, "freeze": args.freeze,
             "hyp": args.hyp,
             "ultralytics_val": metrics.get("val", {}).get(name)}, indent=1) + "\n")
        write_table(args.out)
        log.info("%s without %s: %s", args.start, name, scores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
