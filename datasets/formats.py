"""Importers of common labelling formats into one canonical YOLO dataset, and exporters.

Importers read YOLO (``data.yaml``), COCO JSON, Pascal VOC XML, CVAT for images 1.1 XML,
CVAT for video 1.1 XML (frames are decoded from the video) and Label Studio JSON
into :class:`Record` s with pixel boxes and class *names*. :func:`write_yolo` maps
names onto the canonical label set (after an optional remap) and writes a YOLO
dataset; :func:`write_coco` writes COCO JSON. A label that maps to no canonical
name is an error that names the file, unless it is remapped or dropped.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from datasets.yolo import DatasetError, YoloDataset, names_block
from detector.types import CANONICAL_LABELS

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
FORMATS = ("yolo", "coco", "voc", "cvat-images", "cvat-video", "labelstudio")


@dataclass(frozen=True)
class Annotation:
    """One labelled box in pixels."""

    label: str
    box: Box


@dataclass
class Record:
    """One labelled image."""

    image: Path
    width: int
    height: int
    annotations: list[Annotation] = field(default_factory=list)
    split: str | None = None
    source: str = ""


def _size(path: Path) -> tuple[int, int]:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{path}: not a readable image")
    return int(img.shape[1]), int(img.shape[0])


def read_yolo(data_yaml: Path) -> list[Record]:
    """Read a YOLO dataset (class names from its ``data.yaml``)."""
    ds = YoloDataset.load(data_yaml)
    out = []
    seen: set[Path] = set()
    for split, folders in ds.splits.items():
        if seen.issuperset(folders):  # e.g. "val: images/train" when a dataset has no val split
            continue
        seen.update(folders)
        for it in ds.items(split):
            w, h = _size(it.image)
            anns = [Annotation(ds.names.get(c, str(c)), ((cx - bw / 2) * w, (cy - bh / 2) * h,
                                                         (cx + bw / 2) * w, (cy + bh / 2) * h))
                    for c, cx, cy, bw, bh in it.boxes]
            out.append(Record(it.image, w, h, anns, split, str(data_yaml)))
    return out


def read_coco(path: Path, images: Path) -> list[Record]:
    """Read COCO detection JSON; ``images`` is the folder the ``file_name`` s are relative to."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        cats = {c["id"]: c["name"] for c in data["categories"]}
        recs = {im["id"]: Record(images / im["file_name"], int(im["width"]), int(im["height"]), source=str(path))
                for im in data["images"]}
        for a in data.get("annotations", []):
            x, y, w, h = (float(v) for v in a["bbox"])
            recs[a["image_id"]].annotations.append(Annotation(cats[a["category_id"]], (x, y, x + w, y + h)))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: not a COCO detection file: {exc!r}") from exc
    return list(recs.values())


def read_voc(folder: Path, images: Path | None = None) -> list[Record]:
    """Read Pascal VOC XML files (``folder/*.xml`` or ``folder/Annotations/*.xml``)."""
    ann_dir = folder / "Annotations" if (folder / "Annotations").is_dir() else folder
    img_dir = images or (folder / "JPEGImages" if (folder / "JPEGImages").is_dir() else folder)
    out = []
    for xml_path in sorted(ann_dir.glob("*.xml")):
        try:
            root = ET.parse(xml_path).getroot()
            size = root.find("size")
            w = int(size.findtext("width", "0")) if size is not None else 0
            h = int(size.findtext("height", "0")) if size is not None else 0
            rec = Record(img_dir / root.findtext("filename", xml_path.with_suffix(".jpg").name), w, h,
                         source=str(xml_path))
            for obj in root.iter("object"):
                bb = obj.find("bndbox")
                if bb is None:
                    continue
                box = tuple(float(bb.findtext(k, "0")) for k in ("xmin", "ymin", "xmax", "ymax"))
                rec.annotations.append(Annotation(obj.findtext("name", ""), box))  # type: ignore[arg-type]
        except (ET.ParseError, ValueError) as exc:
            raise DatasetError(f"{xml_path}: not a Pascal VOC file: {exc}") from exc
        if not rec.width or not rec.height:
            rec.width, rec.height = _size(rec.image)
        out.append(rec)
    return out


def read_cvat_images(path: Path, images: Path) -> list[Record]:
    """Read CVAT for images 1.1 XML (``<image name width height><box label xtl ytl xbr ybr>``)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise DatasetError(f"{path}: not a CVAT XML file: {exc}") from exc
    out = []
    for im in root.iter("image"):
        rec = Record(images / im.get("name", ""), int(im.get("width", "0")), int(im.get("height", "0")),
                     source=str(path))
        for b in im.iter("box"):
            rec.annotations.append(Annotation(b.get("label", ""), tuple(float(b.get(k, "0")) for k in  # type: ignore[arg-type]
                                                                        ("xtl", "ytl", "xbr", "ybr"))))
        out.append(rec)
    return out


def video_frames(video: Path) -> Iterator[tuple[int, float, npt.NDArray[np.uint8]]]:
    """Yield ``(index, seconds, BGR image)`` of every frame of a video, in order (CVAT counts from 0; the time is
    the index over the video's frame rate, 25 where it states none).

    Raises:
        DatasetError: The video is missing or not readable.
    """
    if not video.is_file():
        raise DatasetError(f"{video}: video not found")
    cap = cv2.VideoCapture(str(video))
    try:
        if not cap.isOpened():
            raise DatasetError(f"{video}: not a readable video")
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        index = 0
        while True:
            ok, image = cap.read()
            if not ok:
                return
            yield index, index / fps, np.asarray(image, np.uint8)
            index += 1
    finally:
        cap.release()


def read_cvat_video(path: Path, video: Path, frames_dir: Path, step: int = 10) -> list[Record]:
    """Read CVAT for video 1.1 XML; every ``step``-th annotated frame is decoded from ``video`` into ``frames_dir``."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise DatasetError(f"{path}: not a CVAT XML file: {exc}") from exc
    per_frame: dict[int, list[Annotation]] = {}
    for track in root.iter("track"):
        for b in track.iter("box"):
            if b.get("outside", "0") == "1":
                continue
            box = tuple(float(b.get(k, "0")) for k in ("xtl", "ytl", "xbr", "ybr"))
            per_frame.setdefault(int(b.get("frame", "0")), []).append(Annotation(track.get("label", ""), box))  # type: ignore[arg-type]
    wanted = {f for f in per_frame if f % step == 0}
    frames_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for index, _, image in video_frames(video):
        if index in wanted:
            img_path = frames_dir / f"{video.stem}_{index:06d}.jpg"
            cv2.imwrite(str(img_path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            h, w = image.shape[:2]
            out.append(Record(img_path, w, h, per_frame[index], source=f"{path}#frame={index}"))
    return out


def read_labelstudio(path: Path, images: Path) -> list[Record]:
    """Read a Label Studio JSON export of rectangle labels (percent coordinates)."""
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not a Label Studio export: {exc}") from exc
    out = []
    for t in tasks:
        ref = str(t.get("data", {}).get("image", ""))
        rec = Record(images / Path(ref.split("?")[0]).name, 0, 0, source=f"{path}#task={t.get('id')}")
        for ann in t.get("annotations", []):
            for r in ann.get("result", []):
                if r.get("type") != "rectanglelabels":
                    continue
                rec.width, rec.height = int(r["original_width"]), int(r["original_height"])
                v = r["value"]
                x, y = v["x"] / 100 * rec.width, v["y"] / 100 * rec.height
                w, h = v["width"] / 100 * rec.width, v["height"] / 100 * rec.height
                for label in v.get("rectanglelabels", []):
                    rec.annotations.append(Annotation(label, (x, y, x + w, y + h)))
        if not rec.width:
            rec.width, rec.height = _size(rec.image)
        out.append(rec)
    return out


def read_any(fmt: str, src: Path, images: Path | None = None, video: Path | None = None,
             frames_dir: Path | None = None) -> list[Record]:
    """Read records in one of :data:`FORMATS`."""
    if fmt == "yolo":
        return read_yolo(src)
    if fmt == "voc":
        return read_voc(src, images)
    if images is None and fmt != "cvat-video":
        images = src.parent
    if fmt == "coco":
        return read_coco(src, images or src.parent)
    if fmt == "cvat-images":
        return read_cvat_images(src, images or src.parent)
    if fmt == "labelstudio":
        return read_labelstudio(src, images or src.parent)
    if fmt == "cvat-video":
        if video is None or frames_dir is None:
            raise DatasetError("cvat-video needs the video file")
        return read_cvat_video(src, video, frames_dir)
    raise DatasetError(f"unknown format '{fmt}' (one of {', '.join(FORMATS)})")


def canonical(records: list[Record], remap: dict[str, str], drop_unknown: bool = False) -> list[Record]:
    """Rename labels onto the canonical set; unknown labels are an error unless dropped."""
    unknown: Counter[str] = Counter()
    out = []
    for r in records:
        anns = []
        for a in r.annotations:
            name = remap.get(a.label, a.label)
            if name in CANONICAL_LABELS:
                anns.append(Annotation(name, a.box))
            else:
                unknown[name] += 1
        out.append(Record(r.image, r.width, r.height, anns, r.split, r.source))
    if unknown and not drop_unknown:
        raise DatasetError(f"labels {dict(unknown)} are not canonical ({', '.join(CANONICAL_LABELS)}); "
                           "remap them with --names old=new or pass --drop-unknown")
    return out


def assign_splits(records: list[Record], val_fraction: float, seed: int) -> None:
    """Give records without a split one, at random with a fixed seed."""
    rng = random.Random(seed)
    for r in records:
        if r.split is None:
            r.split = "val" if rng.random() < val_fraction else "train"


def write_yolo(records: list[Record], out: Path, copy_images: bool = True) -> tuple[Path, list[Path]]:
    """Write canonical records as a YOLO dataset (boxes clipped to the image).

    Returns:
        ``data.yaml`` and the written image path of each record, in order.
    """
    index = {n: i for i, n in enumerate(CANONICAL_LABELS)}
    splits = sorted({r.split or "train" for r in records})
    used: set[str] = set()
    written: list[Path] = []
    for r in records:
        split = r.split or "train"
        stem = r.image.stem
        k = 1
        while f"{split}/{stem}" in used:
            stem = f"{r.image.stem}_{k}"
            k += 1
        used.add(f"{split}/{stem}")
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        dst = out / "images" / split / f"{stem}{r.image.suffix or '.jpg'}"
        if copy_images:
            shutil.copy(r.image, dst)
        written.append(dst)
        lines = []
        for a in r.annotations:
            x1, y1 = max(0.0, min(a.box[0], a.box[2])), max(0.0, min(a.box[1], a.box[3]))
            x2, y2 = min(float(r.width), max(a.box[0], a.box[2])), min(float(r.height), max(a.box[1], a.box[3]))
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            lines.append(f"{index[a.label]} {(x1 + x2) / 2 / r.width:.6f} {(y1 + y2) / 2 / r.height:.6f} "
                         f"{(x2 - x1) / r.width:.6f} {(y2 - y1) / r.height:.6f}")
        (out / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    names = names_block()
    entries = "".join(f"{s}: images/{s}\n" for s in splits)
    if "val" not in splits:
        entries += f"val: images/{splits[0]}\n"
    (out / "data.yaml").write_text(entries + f"names:\n{names}")
    return out / "data.yaml", written


def write_coco(records: list[Record], path: Path, relative_to: Path | None = None) -> Path:
    """Write records as COCO detection JSON (category ids are canonical indices + 1)."""
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(CANONICAL_LABELS)]
    ids = {n: i + 1 for i, n in enumerate(CANONICAL_LABELS)}
    images: list[dict[str, object]] = []
    anns: list[dict[str, object]] = []
    for k, r in enumerate(records, 1):
        name = str(r.image.relative_to(relative_to)) if relative_to else r.image.name
        images.append({"id": k, "file_name": name, "width": r.width, "height": r.height})
        for a in r.annotations:
            x1, y1, x2, y2 = a.box
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": ids.get(a.label, 0), "iscrowd": 0,
                         "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                         "area": round((x2 - x1) * (y2 - y1), 2)})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def parse_renames(pairs: list[str]) -> dict[str, str]:
    """Class renames written ``OLD=NEW`` (the ``--names`` option of the dataset and evaluate commands).

    Raises:
        DatasetError: A pair is not ``OLD=NEW``.
    """
    out = {}
    for p in pairs:
        old, sep, new = p.partition("=")
        if not sep or not old or not new:
            raise DatasetError(f"--names takes old=new pairs, got '{p}'")
        out[old] = new
    return out
