"""How well the evidence masks hide faces and plates, measured: the study behind :mod:`detector.privacy`.

Faces, on real labelled people (a YOLO dataset's own ``person`` boxes, e.g. the materialized
``vehicles_highway_id`` source): a person's head is taken as the top fifth of its labelled box (central 60 %),
and it counts as hidden when at least half of it is masked. Two ways of finding heads are compared, and their
union:

* ``person_head``: the detector's ``person`` boxes, masked by :func:`detector.privacy.head_box`;
* ``haar``: OpenCV's bundled frontal-face Haar cascade (``cv2.data.haarcascades``; Intel's BSD-style license).

Plates: where a vehicle's plate lies in its box.

* On synthetic road-camera frames (:mod:`datasets.plates`, exact plate boxes): the share of plates the
  plate band of the truck's box covers (at least 90 % of the plate), against PP-OCRv4 text detection in the
  same box (rapidocr-onnxruntime; any text box overlapping the plate by half), with the milliseconds of each.
* On real frames: every text line PP-OCRv4 finds inside a detected vehicle box (plates, but also lettering on
  truck bodies, buses' destination signs; the frames have no plate labels) and the share of them lying inside
  the plate band, with the share of the image the masks cover. Boxes found at several input sizes are all
  counted, so ``vehicles`` counts a vehicle once per size that found it.

    python -m pipelines.evaluation.privacy --data /work/ext/vehicles_highway_id/data.yaml --out privacy.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from datasets.plates import cjk_font, plate_scene
from datasets.yolo import YoloDataset
from detector.backends.base import DetectorBackend, config_for, create_backend
from detector.privacy import Box, MaskRegion, PrivacySettings, head_box, mask_regions, plate_band_box, region_mask
from detector.types import Detections
from models import DEFAULT_MODEL
from pipelines.privacy import MaskerSettings, detect_multiscale

log = logging.getLogger(__name__)

HEIGHT_BINS = ((0, 48, "under 48 px"), (48, 120, "48-120 px"), (120, 100000, "120 px and over"))


def gt_head(person: Box) -> Box:
    """The labelled person's head: top fifth of the box, its central 60 %."""
    x1, y1, x2, y2 = person
    w = x2 - x1
    return (x1 + 0.2 * w, y1, x2 - 0.2 * w, y1 + 0.2 * (y2 - y1))


def covered(mask: npt.NDArray[np.bool_], box: Box) -> float:
    """The share of ``box`` that ``mask`` covers."""
    h, w = mask.shape
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x2 <= x1 or y2 <= y1:
        return 0.0
    return float(mask[y1:y2, x1:x2].mean())


def haar_faces(gray: npt.NDArray[np.uint8], cascade: cv2.CascadeClassifier) -> list[Box]:
    """Faces found by the cascade, each widened by a quarter (as a mask would be)."""
    found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=3, minSize=(8, 8))
    return [(x - 0.25 * w, y - 0.25 * h, x + 1.25 * w, y + 1.25 * h) for x, y, w, h in np.asarray(found).reshape(-1, 4)]


def _bin(height: float) -> str:
    return next(name for lo, hi, name in HEIGHT_BINS if lo <= height < hi)


def evaluate_faces(data: Path, split: str, backend: DetectorBackend, s: PrivacySettings,
                   sizes: tuple[int, ...] = MaskerSettings.sizes, limit: int | None = None) -> dict[str, Any]:
    """Share of labelled heads each method hides, overall and by person height."""
    ds = YoloDataset.load(data)
    person = next(i for i, n in ds.names.items() if n == "person")
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades)  # type: ignore[attr-defined]
                                        / "haarcascade_frontalface_default.xml"))
    hits: dict[str, dict[str, list[bool]]] = {m: {} for m in ("person_head", "haar", "union")}
    ms: dict[str, list[float]] = {"detector": [], "haar": []}
    masked_share: list[float] = []
    for k, item in enumerate(ds.items(split)):
        if limit is not None and k >= limit:
            break
        people = [b for b in item.boxes if b[0] == person]
        if not people:
            continue
        image = cv2.imread(str(item.image), cv2.IMREAD_COLOR)
        if image is None:
            continue
        h, w = image.shape[:2]
        t0 = time.perf_counter()
        det = detect_multiscale(backend, np.asarray(image, np.uint8), sizes)
        ms["detector"].append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        faces = haar_faces(np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), np.uint8), cascade)
        ms["haar"].append((time.perf_counter() - t0) * 1000)
        heads = [MaskRegion(head_box(b, s), "face") for b in _boxes(det, backend.names, "person", s)]
        masks = {"person_head": region_mask((h, w), heads, None),
                 "haar": region_mask((h, w), [MaskRegion(f, "face") for f in faces], None)}
        masks["union"] = masks["person_head"] | masks["haar"]
        masked_share.append(float(masks["person_head"].mean()))
        for _, cx, cy, bw, bh in people:
            box = ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)
            for method, mask in masks.items():
                hits[method].setdefault(_bin(bh * h), []).append(covered(mask, gt_head(box)) >= 0.5)
    out: dict[str, Any] = {"data": str(data), "split": split, "people": sum(len(v) for v in hits["union"].values())}
    for method, by_bin in hits.items():
        every = [x for v in by_bin.values() for x in v]
        out[method] = {"hidden": round(float(np.mean(every)), 4) if every else None,
                       "by_height": {b: {"people": len(v), "hidden": round(float(np.mean(v)), 4)}
                                     for b, v in sorted(by_bin.items())}}
    out["ms_median"] = {k: round(float(np.median(v)), 1) for k, v in ms.items() if v}
    out["person_head_masked_image_share"] = round(float(np.mean(masked_share)), 4) if masked_share else None
    return out


def _boxes(det: Detections, names: list[str], label: str, s: PrivacySettings) -> list[Box]:
    if label not in names:
        return []
    keep = det[(det.class_id == names.index(label)) & (det.confidence >= s.person_confidence)]
    return [(float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in keep.xyxy]


def _text_boxes(engine: Any, image: npt.NDArray[np.uint8], region: Box) -> list[Box]:
    """Text lines PP-OCRv4 detects in a region (pixels of the image)."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = max(0, int(region[0])), max(0, int(region[1])), min(w, int(region[2])), min(h, int(region[3]))
    crop = image[y1:y2, x1:x2]
    if crop.size == 0:
        return []
    scale = max(1.0, 480 / crop.shape[0])
    crop = np.asarray(cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC), np.uint8)
    result, _ = engine(crop, use_det=True, use_cls=False, use_rec=False)
    out = []
    for quad in result or []:
        q = np.asarray(quad, np.float32).reshape(-1, 2) / scale
        out.append((x1 + float(q[:, 0].min()), y1 + float(q[:, 1].min()), x1 + float(q[:, 0].max()),
                    y1 + float(q[:, 1].max())))
    return out


def _overlap(a: Box, b: Box) -> float:
    """The share of ``b`` inside ``a``."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = max(1e-6, (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / area


def evaluate_plates_synthetic(frames: int, seed: int, s: PrivacySettings, engine: Any | None) -> dict[str, Any]:
    """Plate band vs text detection on synthetic frames with exact plate boxes (the truck's box given)."""
    font = cjk_font()
    if font is None:
        raise RuntimeError("no CJK font: run scripts/install-test-services.sh")
    rng = np.random.default_rng(seed)
    band, text, text_ms = [], [], []
    for _ in range(frames):
        sc = plate_scene(rng, font)
        band.append(_overlap(plate_band_box(sc.vehicle, s), sc.plate_box) >= 0.9)
        if engine is not None:
            t0 = time.perf_counter()
            found = _text_boxes(engine, sc.image, sc.vehicle)
            text_ms.append((time.perf_counter() - t0) * 1000)
            text.append(any(_overlap(f, sc.plate_box) >= 0.5 for f in found))
    out: dict[str, Any] = {"frames": frames, "seed": seed, "band_hides": round(float(np.mean(band)), 4)}
    if text:
        out["text_detection_hides"] = round(float(np.mean(text)), 4)
        out["text_detection_ms_median"] = round(float(np.median(text_ms)), 1)
    return out


def evaluate_plates_real(data: Path, split: str, backend: DetectorBackend, s: PrivacySettings, engine: Any,
                         limit: int, sizes: tuple[int, ...] = MaskerSettings.sizes) -> dict[str, Any]:
    """Where text found inside detected vehicles lies: the share inside the plate band."""
    ds = YoloDataset.load(data)
    inside, vehicles, masked_share = [], 0, []
    for k, item in enumerate(ds.items(split)):
        if k >= limit:
            break
        image = cv2.imread(str(item.image), cv2.IMREAD_COLOR)
        if image is None:
            continue
        img = np.asarray(image, np.uint8)
        det = detect_multiscale(backend, img, sizes)
        regions = mask_regions(det, backend.names, None, s)
        masked_share.append(float(region_mask((img.shape[0], img.shape[1]), regions, None).mean()))
        for r in regions:
            if r.kind != "plate":
                continue
            vehicles += 1
            x1, _, x2, y2 = r.box
            full = (x1, y2 - (y2 - r.box[1]) / s.plate_band, x2, y2)
            for t in _text_boxes(engine, img, full):
                inside.append(_overlap(r.box, t) >= 0.9)
    return {"images": min(limit, k + 1), "vehicles": vehicles, "text_lines_in_vehicles": len(inside),
            "in_plate_band": round(float(np.mean(inside)), 4) if inside else None,
            "masked_image_share": round(float(np.mean(masked_share)), 4) if masked_share else None}


def main(argv: list[str] | None = None) -> int:
    """Run the study and write its JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="YOLO data.yaml with own person labels")
    ap.add_argument("--split", default="val")
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled one)")
    ap.add_argument("--plates", type=int, default=40, help="synthetic plate frames")
    ap.add_argument("--real-images", type=int, default=150, help="real frames for where text lies in vehicles")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(MaskerSettings.sizes),
                    help="detector input sizes for masking (merged)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    s = PrivacySettings()
    conf = min(s.person_confidence, s.vehicle_confidence)
    backend = create_backend(config_for(args.model or DEFAULT_MODEL, conf=conf, imgsz=max(args.sizes)))
    sizes = tuple(args.sizes)
    try:
        from rapidocr_onnxruntime import RapidOCR
        engine: Any | None = RapidOCR()
    except ImportError:
        engine = None
    result: dict[str, Any] = {"settings": s.__dict__, "sizes": sizes,
                              "faces": evaluate_faces(args.data, args.split, backend, s, sizes),
                              "plates_synthetic": evaluate_plates_synthetic(args.plates, 5, s, engine)}
    if engine is not None:
        result["plates_real"] = evaluate_plates_real(args.data, args.split, backend, s, engine, args.real_images,
                                                       sizes)
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
