"""Self-labelling: a site's own unlabelled frames labelled by the shipped model, to fine-tune on without a labeller.

Site adaptation (:mod:`datasets.mix`, README "Adapting to a city's own cameras") needs labelled frames of the
bureau's cameras. Frames alone are always at hand (recordings, snapshots), labels are not. ``datasets self-label``
runs the model over such frames and keeps its own boxes of the violation classes scored at least ``conf`` as
labels (self-training): fine-tuned on them, with the backbone frozen and a replay of its training pack, the model
fits what it already finds on that street and finds more of it there. The context classes are left to the COCO
teacher of ``datasets pack --teacher``. Measured in stop 40 (README, the model card): on a source the model never
saw, garbage AP50 0.185 -> 0.233 with 395 self-labelled frames (0.285 with the same frames labelled by hand).

The output is a YOLO dataset with the canonical class names (``data.yaml``, ``images/{train,val}``,
``labels/{train,val}``; the frames of one input file all in one split) and ``manifest.json`` naming the model
(name, version, SHA-256 of its weights), the threshold, every frame's origin and the boxes per class, ready for
``datasets pack --extra``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from datasets.formats import video_frames
from datasets.pseudo import to_yolo_lines
from datasets.yolo import IMAGE_SUFFIXES, names_block
from detector.backends.base import DetectorBackend
from detector.types import CANONICAL_LABELS, VIOLATION_LABELS

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".ts", ".flv", ".m4v"})

#: What a self-labelled folder's frames are, for ``datasets pack`` and the dataset card.
LICENSE_NOTE = "Frames of this deployment's own cameras, labelled by its model (not for redistribution)."

Image = npt.NDArray[np.uint8]


@dataclass
class SelfLabelResult:
    """What :func:`self_label` wrote and what it could not read."""

    data_yaml: Path
    frames: dict[str, int] = field(default_factory=dict)  # split -> frames written
    boxes: Counter[str] = field(default_factory=Counter)  # class -> boxes written
    errors: list[str] = field(default_factory=list)  # one line per unreadable input


def input_files(inputs: Sequence[Path]) -> list[Path]:
    """The images and videos ``inputs`` name: files as given, folders searched recursively, sorted."""
    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        else:
            out.append(p)
    return out


def frames_of(path: Path, every_s: float) -> Iterator[tuple[str, Image]]:
    """``(name, BGR frame)`` of an input: an image as it is, a video's frame every ``every_s`` seconds.

    Raises:
        ValueError: The file is not a readable image or video (``DatasetError`` for a video).
    """
    if path.suffix.lower() in IMAGE_SUFFIXES:
        img = cv2.imread(str(path))
        if img is None:
            raise ValueError(f"{path}: not a readable image")
        yield path.stem, np.asarray(img, np.uint8)
        return
    next_s, got = 0.0, 0
    for _, t, frame in video_frames(path):
        if t + 1e-6 < next_s:
            continue
        next_s += every_s
        got += 1
        yield f"{path.stem}_{round(t * 1000):09d}ms", frame
    if not got:
        raise ValueError(f"{path}: no frame could be decoded")


def split_of(path: Path, val_fraction: float) -> str:
    """``val`` for a stable ``val_fraction`` of input files (all frames of a file in one split), else ``train``."""
    h = int(hashlib.sha256(path.name.encode()).hexdigest(), 16) % 1000
    return "val" if h < val_fraction * 1000 else "train"


def own_labels(backend: DetectorBackend, frame: Image, conf: float) -> list[str]:
    """YOLO label lines (canonical class ids) of the model's own boxes of the violation classes scored >= ``conf``
    on a frame."""
    keep = [i for i, n in enumerate(backend.names) if n in VIOLATION_LABELS]
    det = backend.detect([frame])[0]
    mask = (det.confidence >= conf) & np.isin(det.class_id, keep)
    h, w = frame.shape[:2]
    return to_yolo_lines((backend.names[int(c)], (x1 / w, y1 / h, x2 / w, y2 / h))
                         for (x1, y1, x2, y2), c in zip(det.xyxy[mask].tolist(), det.class_id[mask], strict=True))


def self_label(inputs: Sequence[Path], backend: DetectorBackend, out: Path, conf: float = 0.25,
               every_s: float = 10.0, val_fraction: float = 0.1) -> SelfLabelResult:
    """Label the frames of ``inputs`` with ``backend``'s own boxes of the violation classes scored >= ``conf``.

    An unreadable input is recorded in ``errors`` and the others go on. Frames where the model finds nothing are
    kept with an empty label file: they teach what the street looks like without a violation.
    """
    if not 0 < conf <= 1:
        raise ValueError(f"conf must be in (0, 1], got {conf}")
    if every_s <= 0:
        raise ValueError(f"every must be positive, got {every_s}")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty: give a new --out (frames of two runs would mix)")
    result = SelfLabelResult(out / "data.yaml")
    files: list[dict[str, object]] = []
    used: set[str] = set()
    for path in input_files(inputs):
        split = split_of(path, val_fraction)
        img_dir, lbl_dir = out / "images" / split, out / "labels" / split
        try:
            for name, frame in frames_of(path, every_s):
                lines = own_labels(backend, frame, conf)
                stem, n = name, 1
                while stem in used:  # two inputs of one name in different folders
                    n += 1
                    stem = f"{name}_{n}"
                used.add(stem)
                if not img_dir.is_dir():
                    img_dir.mkdir(parents=True)
                    lbl_dir.mkdir(parents=True)
                cv2.imwrite(str(img_dir / f"{stem}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
                (lbl_dir / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
                result.frames[split] = result.frames.get(split, 0) + 1
                counts = Counter(CANONICAL_LABELS[int(line.split()[0])] for line in lines)
                result.boxes.update(counts)
                files.append({"file": f"images/{split}/{stem}.jpg", "input": str(path), "split": split,
                              "boxes": dict(counts)})
        except (ValueError, cv2.error) as exc:
            log.warning("%s", exc)
            result.errors.append(str(exc))
    if not files:
        raise ValueError("no frame could be read from the inputs: " + "; ".join(result.errors or ["none given"]))
    if not result.frames.get("train"):  # every input fell in val: training needs them more
        for kind in ("images", "labels"):
            (out / kind / "val").rename(out / kind / "train")
        result.frames = {"train": result.frames.pop("val")}
        for f in files:
            f["split"], f["file"] = "train", str(f["file"]).replace("images/val/", "images/train/")
    names = names_block()
    val = "images/val" if result.frames.get("val") else "images/train"
    result.data_yaml.write_text(f"train: images/train\nval: {val}\nnames:\n{names}")
    identity = backend.identity
    (out / "manifest.json").write_text(json.dumps(
        {"name": out.name, "license": LICENSE_NOTE, "labelled_by": {
            "model": identity.name if identity else "", "sha256": identity.sha256 if identity else "",
            "conf": conf, "every_s": every_s},
         "classes": sorted(result.boxes), "counts": {"frames": result.frames, "boxes": dict(result.boxes)},
         "errors": result.errors, "files": files}, indent=1, ensure_ascii=False) + "\n")
    return result


def self_label_pack(pack: Path, out: Path, backend: DetectorBackend, conf: float = 0.25) -> Path:
    """A copy of a site's pack whose training labels are the model's own (its violation boxes scored >= ``conf``;
    the pack's other labels, the teacher's context classes, kept) and whose validation labels stay as labelled:
    how :mod:`pipelines.evaluation.adapt` measures self-labelling against labelling by hand. Images are linked,
    not copied. Returns ``out``."""
    violations = {str(CANONICAL_LABELS.index(n)) for n in VIOLATION_LABELS}
    out.mkdir(parents=True, exist_ok=True)
    for f in pack.iterdir():
        if f.is_file():
            (out / f.name).write_bytes(f.read_bytes())
    for folder in sorted(d for d in (pack / "images").iterdir() if d.is_dir()):
        (out / "images").mkdir(exist_ok=True)
        link = out / "images" / folder.name
        if not link.exists():
            link.symlink_to(folder.resolve())
        labels_in, labels_out = pack / "labels" / folder.name, out / "labels" / folder.name
        labels_out.mkdir(parents=True, exist_ok=True)
        for img_path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            src = labels_in / f"{img_path.stem}.txt"
            lines = src.read_text().splitlines() if src.is_file() else []
            if folder.name.startswith("train"):
                img = cv2.imread(str(img_path))
                if img is None:
                    raise ValueError(f"{img_path}: not a readable image")
                own = own_labels(backend, np.asarray(img, np.uint8), conf)
                lines = [line for line in lines if line.split()[0] not in violations] + own
            (labels_out / f"{img_path.stem}.txt").write_text("".join(line + "\n" for line in lines))
    return out
