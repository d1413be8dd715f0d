"""Validate detector weights on the original validation images of every real source (and a synthetic set).

The training pack carries re-encoded, downsized copies; model cards report numbers measured here,
on the original images, with each source's labels mapped to the canonical names:

    python -m models.validate --weights runs/gpu/best.pt --data ../shared/data --synthetic pack_synth \
        --out runs/gpu/val_original.json

Each split is validated with Ultralytics' ``val`` (AP50 and AP50-95 per class, 320 px unless told).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from datasets.yolo import YoloDataset
from detector.types import CANONICAL_LABELS
from models import SHARED_DATA
from models.train_gpu import _offline_environment, _polars_fallback, cpu_threads, summarise

log = logging.getLogger("validate")


def canonical_val(data_yaml: Path, out: Path) -> Path | None:
    """Write a val-only YOLO dataset: the source's val images (linked) with canonical class ids."""

    ds = YoloDataset.load(data_yaml)
    cmap = ds.canonical_map({})
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    n = 0
    for it in ds.items("val"):
        link = out / "images" / it.image.name
        if not link.exists():
            os.symlink(it.image.resolve(), link)
        lines = [f"{cmap[c]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}" for c, cx, cy, w, h in it.boxes if c in cmap]
        (out / "labels" / f"{it.image.stem}.txt").write_text("".join(line + "\n" for line in lines))
        n += 1
    if not n:
        return None
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(CANONICAL_LABELS))
    (out / "data.yaml").write_text(f"path: {out}\ntrain: images\nval: images\nnames:\n{names}")
    return out / "data.yaml"


def validate(weights: Path, splits: dict[str, Path], imgsz: int) -> dict[str, Any]:
    """Ultralytics val of ``weights`` on each split; per-class P, R, AP50, AP50-95."""
    work = Path(tempfile.mkdtemp(prefix="sw_val_"))

    _offline_environment(work)
    _polars_fallback()
    cpu_threads(0)  # every core, not Ultralytics' one less
    from ultralytics.models import YOLO

    model = YOLO(str(weights))
    out: dict[str, Any] = {}
    for name, data in splits.items():
        m = model.val(data=str(data), imgsz=imgsz, batch=16, device="cpu", plots=False, verbose=False, workers=0,
                      project=str(work / "val"), name=name)
        out[name] = summarise(m)
        log.info("%s: mAP50 %.3f %s", name, m.box.map50, {k: v["ap50"] for k, v in out[name]["classes"].items()})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=SHARED_DATA, help="folder of YOLO sources")
    ap.add_argument("--synthetic", type=Path, help="a synthetic YOLO dataset (its val split) to validate too")
    ap.add_argument("--extra", type=Path, nargs="*", default=[],
                    help="materialized external sources (`datasets materialize`) to validate too")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tmp = Path(tempfile.mkdtemp(prefix="sw_canon_"))
    sources = sorted(args.data.glob("*/data.yaml")) + [d / "data.yaml" for d in args.extra]
    if args.synthetic is not None:
        sources.append(args.synthetic / "data.yaml")
    splits: dict[str, Path] = {}
    for data_yaml in sources:
        synthetic = args.synthetic is not None and data_yaml.parent == args.synthetic
        name = "synthetic" if synthetic else data_yaml.parent.name
        made = canonical_val(data_yaml, tmp / name)
        if made is not None:
            splits[name] = made
    result = {"weights": str(args.weights), "protocol": f"{args.imgsz} px, original validation images, CPU",
              "splits": validate(args.weights, splits, args.imgsz)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
