"""Site adaptation: what labelling ``k`` frames of a new city buys the shipped model there.

Leave-one-source-out (:mod:`pipelines.evaluation.loso`) says what a city the model never saw should expect.
What a bureau can do about it is label frames of its own cameras (or review cases: ``datasets from-reviews``)
and fine-tune. This measures that remedy on a source the model never saw. The start weights (the shipped
model) are fine-tuned on the first ``k`` training images of the site (one fixed shuffle, so each smaller set
is part of every larger one) together with a replay sample of the start's own training pack, so that the
classes the site does not label are not forgotten; the final epoch's weights (the held-out images are the test,
so no epoch is chosen on them) are scored with the product's evaluator on the
site's held-out images and on gauges of what the start knew (other sources' validation images). Held-out
images that show a scene of the site's training images (:mod:`datasets.neardup`) are not scored::

    python -m pipelines.evaluation.adapt --site SITE_PACK --replay TRAINING_PACK --k 0 50 150 395 \\
        --replay-images 800 --epochs 4 --gauge ../shared/data/smoke/data.yaml --out runs/adapt

``SITE_PACK`` is a pack of the site alone (``datasets pack --data EMPTY --extra SITE --synth 0 --teacher``:
the teacher adds the context classes the site does not label). ``--self-label CONF`` trains on the start
model's own boxes instead of the site's training labels (:func:`datasets.self_label.self_label_pack`): what
a bureau without a labeller gets from ``datasets self-label``. ``k = 0`` scores the start as it is. Writes
``OUT/k<k>/`` (split, weights, scores) and ``OUT/adapt.json`` + ``OUT/adapt.md`` over every run under ``OUT``;
a run whose ``best.pt`` exists is not trained again, one whose ``scores.json`` exists not scored again.
Needs the ``train`` extra.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from datasets.mix import common_names, first_k, pack_images, write_mix
from datasets.neardup import features, same_scenes
from datasets.self_label import self_label_pack
from datasets.yolo import DatasetError
from detector.backends.base import config_for, create_backend
from models import DEFAULT_MODEL
from models.train_gpu import main as train_main
from pipelines.evaluation.score import evaluate_images

log = logging.getLogger("adapt")


def unseen_scenes(val: list[Path], train: list[Path]) -> tuple[list[Path], dict[str, tuple[str, int]]]:
    """The held-out images that show no scene of the training images, and the others with their match.

    A pack prefixes its file names with the source (``source__name``); the match looks at the original name,
    whose number says which photos were taken one after another."""
    def feats(paths: list[Path]) -> dict[str, Any]:
        out = {}
        for p in paths:
            img = cv2.imread(str(p))
            if img is None:
                raise ValueError(f"{p}: not a readable image")
            out[p.name] = features(p.name.split("__", 1)[-1], np.asarray(img, np.uint8))
        return out

    found = same_scenes(feats(val), feats(train))
    return [p for p in val if p.name not in found], found


def gauge_name(data_yaml: Path) -> str:
    """A gauge's name: its folder's for a ``data.yaml`` (``smoke/data.yaml``: smoke), else the file's stem."""
    return data_yaml.parent.name if data_yaml.name == "data.yaml" else data_yaml.stem


def score(weights: Path, site: Path, gauges: list[Path], out: Path, imgsz: int) -> dict[str, Any]:
    """AP50 of ``weights``: on the site's held-out images (detector alone and product view) and on each gauge
    (product view), every class the data labels."""
    def ap50(data: Path, where: Path, view: str) -> dict[str, float | None]:
        m = evaluate_images(data, where, weights, {}, imgsz, 0.25, "val", view)
        return {c: v.get("ap50") for c, v in m["classes"].items() if not v.get("absent") and v.get("instances", 0)}

    result: dict[str, Any] = {"site": {v: ap50(site, out / "site" / v, v) for v in ("detector", "product")}}
    result["gauges"] = {gauge_name(g): ap50(g, out / "gauges" / gauge_name(g), "product") for g in gauges}
    return result


def table_lines(table: dict[str, Any], site_classes: list[str] | None = None) -> list[str]:
    """Markdown rows of every run: images of the site trained on, the site's AP50 (every class it has, or
    ``site_classes``: the teacher's context boxes on the site are not its labels), the gauges' AP50."""
    runs = sorted(table.items(), key=lambda kv: kv[1]["k"])
    gauge_cols = sorted({f"{g} {c}" for _, r in runs for g, cs in r["scores"]["gauges"].items() for c in cs})
    site_cols = sorted({c for _, r in runs for c in r["scores"]["site"]["detector"]
                        if site_classes is None or c in site_classes})
    head = ["site images", "replay images", "epochs", "train s",
            *[f"site {c} detector" for c in site_cols], *[f"site {c} product" for c in site_cols], *gauge_cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in runs:
        s, g = r["scores"]["site"], r["scores"]["gauges"]
        cells = [r["k"], r["replay"], r.get("epochs", 0), r.get("train_seconds", "")]
        cells += [s["detector"].get(c, "") for c in site_cols] + [s["product"].get(c, "") for c in site_cols]
        cells += [g.get(col.split(" ")[0], {}).get(col.split(" ", 1)[1], "") for col in gauge_cols]
        lines.append("| " + " | ".join(str(round(c, 4) if isinstance(c, float) else c) for c in cells) + " |")
    return lines


def write_table(out: Path, site_classes: list[str] | None = None) -> dict[str, Any]:
    """Write ``adapt.json`` and ``adapt.md`` of every scored run under ``out``; return the table."""
    table = {f.parent.name: json.loads(f.read_text()) for f in sorted(out.glob("k*/scores.json"))}
    (out / "adapt.json").write_text(json.dumps(table, indent=1) + "\n")
    (out / "adapt.md").write_text("\n".join(table_lines(table, site_classes)) + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", type=Path, required=True, help="pack of the site alone (train_* and val_* folders)")
    ap.add_argument("--replay", type=Path, required=True, help="the start model's training pack")
    ap.add_argument("--replay-sources", nargs="*", help="its sources to replay (default: every train_* folder)")
    ap.add_argument("--replay-images", type=int, default=800, help="replay images drawn from them")
    ap.add_argument("--k", type=int, nargs="+", required=True, help="site training images, one run each")
    ap.add_argument("--site-repeat", type=int, default=1, help="the site's images listed this many times")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL.with_suffix(".pt"), help="start weights (.pt)")
    ap.add_argument("--gauge", type=Path, nargs="*", default=[], help="data.yaml of what the start must keep")
    ap.add_argument("--site-classes", nargs="*", help="classes the site labels itself, for the table (default: all)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--close-mosaic", type=int, default=1, help="last epochs trained without mosaic")
    ap.add_argument("--warmup-epochs", type=float, default=0.5)
    ap.add_argument("--lr0", type=float, default=0.0, help="SGD learning rate (0: Ultralytics' automatic choice)")
    ap.add_argument("--freeze", type=int, default=0, help="first layers kept as they start (10: the backbone)")
    ap.add_argument("--hyp", nargs="*", default=[], metavar="KEY=VALUE", help="other Ultralytics training settings")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--self-label", type=float, metavar="CONF", help="train on the start model's own boxes scored "
                    ">= CONF instead of the site's training labels (`datasets self-label`; the held-out labels stay)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.self_label is not None:
        onnx = args.model.with_suffix(".onnx")
        labeller = create_backend(config_for(onnx if onnx.is_file() else args.model, conf=args.self_label,
                                             imgsz=args.imgsz))
        args.site = self_label_pack(args.site, args.out / "self_labelled", labeller, args.self_label)
        log.info("site's training images labelled by %s at >= %s: %s", labeller.identity, args.self_label, args.site)
    try:
        names = common_names(args.site, args.replay)
    except DatasetError as exc:
        raise SystemExit(str(exc)) from exc
    site_train, site_val = pack_images(args.site, "train"), pack_images(args.site, "val")
    leaks_file = args.out / "same_scene.json"
    if leaks_file.is_file():
        leaks = json.loads(leaks_file.read_text())
        site_val = [p for p in site_val if p.name not in leaks]
    else:
        site_val, leaks = unseen_scenes(site_val, site_train)
        args.out.mkdir(parents=True, exist_ok=True)
        leaks_file.write_text(json.dumps(leaks, indent=1) + "\n")
    log.info("site: %d training images, %d held-out images scored (%d show a training scene)", len(site_train),
             len(site_val), len(leaks))
    replay = first_k(pack_images(args.replay, "train", args.replay_sources), args.replay_images, args.seed)
    for k in args.k:
        run = args.out / f"k{k}"
        if (run / "scores.json").is_file():
            log.info("k=%d: scored before (%s)", k, run / "scores.json")
            continue
        _, site = write_mix(first_k(site_train, k, args.seed), site_val, replay if k else [], names,
                            run / "split", args.site_repeat)
        weights, summary = args.model, {"epochs": 0, "train_seconds": 0.0}
        if k:
            weights = run / "best.pt"
            if not weights.exists():
                rc = train_main(["--pack", str(run / "split"), "--out", str(run), "--model", str(args.model),
                                 "--minutes", "0", "--epochs", str(args.epochs), "--imgsz", str(args.imgsz),
                                 "--batch", str(args.batch), "--workers", str(args.workers), "--device", "0",
                                 "--close-mosaic", str(args.close_mosaic),
                                 "--warmup-epochs", str(args.warmup_epochs), "--lr0", str(args.lr0), "--last",
                                 "--freeze", str(args.freeze),
                                 *(["--hyp", *args.hyp] if args.hyp else [])])
                if rc != 0:
                    raise SystemExit(f"training {run} failed (exit {rc})")
            metrics = json.loads((run / "metrics.json").read_text())
            summary = {"epochs": metrics.get("epochs"), "train_seconds": metrics.get("train_seconds")}
        scores = score(weights, site, args.gauge, run / "eval", args.imgsz)
        (run / "scores.json").write_text(json.dumps(
            {"k": k, "replay": len(replay) if k else 0, "site": args.site.name, "held_out": len(site_val),
             "start": str(args.model), "imgsz": args.imgsz, "seed": args.seed, "lr0": args.lr0, "hyp": args.hyp,
             "site_repeat": args.site_repeat, "freeze": args.freeze,
             **summary, "scores": scores},
            indent=1) + "\n")
        write_table(args.out, args.site_classes)
        log.info("k=%d: %s", k, scores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
