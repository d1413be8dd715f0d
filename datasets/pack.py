"""Compact training packs: merged real and synthetic data under a size budget.

A pack is one self-contained YOLO folder (canonical labels) small enough to
travel to a lent GPU machine: images are re-encoded at a reduced size and
quality chosen so the whole pack fits ``max_mb``, as JPEG or WebP (measured on
this project's data at equal quality setting: WebP is about half the bytes of
JPEG for the rendered scenes and 15-25 % less for the real photos, so a WebP
pack carries larger images in the same budget). Each source keeps its own
validation split (``val_<source>.yaml``) so metrics stay per source, and
``manifest.json`` records provenance and licenses of every file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import numpy.typing as npt

from datasets.pseudo import TeacherBox, correct_teacher, merge_teacher, to_yolo_lines
from datasets.yolo import DatasetError, LabeledImage, YoloDataset, names_block
from detector.types import CANONICAL_LABELS

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """One dataset going into a pack."""

    name: str
    data_yaml: Path
    license: str
    remap: dict[str, str]
    labelled: frozenset[str] | None = None  # classes the source labels itself (default: its data.yaml's names)
    uncovered: frozenset[tuple[str, int]] = frozenset()  # (image file name, label line) of trucks with a loose load
    #: Corrections of the teacher's boxes by image file name: (COCO name, cx, cy, label), see datasets/teacher_fixes.py
    teacher_fixes: Mapping[str, Sequence[tuple[str, float, float, str]]] = field(default_factory=dict, hash=False)


#: The license line of a folder given to ``pack --extra`` without a manifest (a bureau's own labelled frames).
OWN_FRAMES = "this deployment's own frames (no manifest.json: not for redistribution)"


def license_line(manifest: Mapping[str, Any]) -> str:
    """The license line of a source's ``manifest.json``: its license, and the repository and commit it came from
    when it has them (``datasets materialize``)."""
    origin = f" ({manifest['repo']} @ {manifest['commit'][:10]})" if manifest.get("repo") else ""
    return f"{manifest['license']}{origin}"


def extra_source(folder: Path) -> tuple[str, frozenset[str]]:
    """The license line and the classes it labels of a folder for ``pack --extra``: from its ``manifest.json``
    (``datasets materialize``, ``datasets self-label``), else a bureau's own labelled frames (``datasets
    import``): :data:`OWN_FRAMES` and the classes its label files use.

    Raises:
        DatasetError: The folder has no ``data.yaml``.
    """
    if not (folder / "data.yaml").is_file():
        raise DatasetError(f"{folder}: no data.yaml (a YOLO dataset folder is needed)")
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        return license_line(manifest), frozenset(manifest["classes"])
    ds = YoloDataset.load(folder / "data.yaml")
    used = {box[0] for split in ds.splits for item in ds.items(split) for box in item.boxes}
    return OWN_FRAMES, frozenset(ds.names[i] for i in used if i in ds.names)


def read_license(data_yaml: Path) -> str:
    """Return the license line of a shared-data folder's README, or 'unknown'."""
    readme = data_yaml.parent / "README.md"
    if readme.exists():
        for line in readme.read_text().splitlines():
            if "licen" in line.lower():
                return re.sub(r"[*_`#]", "", line).strip(" -") or "unknown"
    return "unknown"


IMAGE_FORMATS = {"jpg": cv2.IMWRITE_JPEG_QUALITY, "webp": cv2.IMWRITE_WEBP_QUALITY}
"""Image formats a pack can be written in (both read by Ultralytics and OpenCV), with their quality flag."""


def _shrink(img: npt.NDArray[np.uint8], max_side: int) -> npt.NDArray[np.uint8]:
    h, w = img.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s >= 1.0:
        return img
    return np.asarray(cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA), np.uint8)


def _encode(img: npt.NDArray[np.uint8], max_side: int, quality: int, fmt: str = "jpg") -> bytes:
    ok, buf = cv2.imencode(f".{fmt}", _shrink(img, max_side), [IMAGE_FORMATS[fmt], quality])
    if not ok:
        raise ValueError(f"{fmt} encoding failed")
    return bytes(buf)


def _read_teacher_cache(path: Path, teacher_id: str) -> dict[str, list[TeacherBox]]:
    """The teacher's boxes by image SHA-1 from an earlier run of the same teacher; empty when absent, made by
    another teacher or unreadable (then the teacher runs again)."""
    if not path.is_file():
        return {}
    try:
        stored = json.loads(path.read_text())
        if stored.get("teacher") != teacher_id:
            log.warning("teacher cache %s was made by another teacher: not used", path)
            return {}
        return {k: [(n, sc, (b[0], b[1], b[2], b[3])) for n, sc, b in v] for k, v in stored["boxes"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("teacher cache %s is unreadable (%s): not used", path, exc)
        return {}


def _write_teacher_cache(path: Path, teacher_id: str, cache: dict[str, list[TeacherBox]]) -> None:
    """Save the cache atomically (a crash mid-write leaves the previous file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"teacher": teacher_id, "boxes": {
        k: [[n, round(sc, 4), [round(v, 5) for v in b]] for n, sc, b in boxes] for k, boxes in cache.items()}}))
    os.replace(tmp, path)


_Item = tuple[Source, str, LabeledImage, dict[int, int]]  # source, split, image and labels, class map


def _evenly(items: list[T], cap: int) -> list[T]:
    """At most ``cap`` of ``items``, evenly spaced in their order (all of them when ``cap`` is 0 or enough)."""
    if not 0 < cap < len(items):
        return items
    step = len(items) / cap
    return [items[int(i * step)] for i in range(cap)]


def _pack_items(sources: list[Source], val_cap: int, train_caps: Mapping[str, int] | None = None) -> list[_Item]:
    """Every image of the sources (validation splits capped at ``val_cap`` per source when > 0, the training split
    of a source in ``train_caps`` at that many images)."""
    items: list[_Item] = []
    for src in sources:
        ds = YoloDataset.load(src.data_yaml)
        cmap = ds.canonical_map(src.remap)
        for split in ("train", "val"):
            cap = val_cap if split == "val" else (train_caps or {}).get(src.name, 0)
            items.extend((src, split, it, cmap) for it in _evenly(list(ds.items(split)), cap))
    return items


@dataclass
class _Labelled:
    images: dict[Path, npt.NDArray[np.uint8]] = field(default_factory=dict)  # shrunk pixels by original path
    lines_of: dict[Path, list[str]] = field(default_factory=dict)  # YOLO label lines by original path
    added: dict[str, dict[str, int]] = field(default_factory=dict)  # teacher boxes per "source/split" and class
    uncovered: dict[str, int] = field(default_factory=dict)  # truck boxes made uncovered_truck per source
    fixed: dict[str, list[int]] = field(default_factory=dict)  # teacher corrections per source: [applied, unmatched]


def _label(items: list[_Item], max_side: int, teacher: Callable[[npt.NDArray[np.uint8]], list[TeacherBox]] | None,
           teacher_cache: Path | None, teacher_id: str) -> _Labelled:
    """Read every image, merge its labels with the teacher's, and shrink it to ``max_side``."""
    out = _Labelled()
    cache: dict[str, list[TeacherBox]] = {}
    if teacher_cache is not None and teacher is not None:
        cache = _read_teacher_cache(teacher_cache, teacher_id)
    for k, (src, split, it, cmap) in enumerate(items):
        raw = it.image.read_bytes()
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            log.warning("skipping unreadable image %s", it.image)
            continue
        own: list[tuple[str, tuple[float, float, float, float]]] = []
        for line, (c, cx, cy, w, h) in enumerate(it.boxes):
            if c not in cmap:
                continue
            name = CANONICAL_LABELS[cmap[c]]
            if (it.image.name, line) in src.uncovered:  # the project's load label: a loose load, uncovered
                if name != "truck":
                    raise ValueError(f"{src.name}/{it.image.name}: label line {line} is {name}, not a truck, but "
                                     "has an uncovered load in the load labels")
                name = "uncovered_truck"
                out.uncovered[src.name] = out.uncovered.get(src.name, 0) + 1
            own.append((name, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
        if teacher is not None:
            key = hashlib.sha1(raw).hexdigest()
            if key not in cache:
                cache[key] = teacher(np.asarray(img, np.uint8))
            boxes = cache[key]
            fixes = src.teacher_fixes.get(it.image.name, ())
            if fixes:
                boxes, matched = correct_teacher(boxes, fixes)
                tally = out.fixed.setdefault(src.name, [0, 0])
                tally[0] += matched
                tally[1] += len(fixes) - matched
                if matched < len(fixes):  # another teacher, or the image changed: said, not silently ignored
                    log.warning("%s/%s: %d of %d teacher corrections match no teacher box", src.name,
                                it.image.name, len(fixes) - matched, len(fixes))
            merged = merge_teacher(own, boxes,
                                   src.labelled or frozenset(CANONICAL_LABELS[c] for c in cmap.values()))
            own = merged.boxes
            split_added = out.added.setdefault(f"{src.name}/{split}", {})
            for name, n in merged.added.items():
                split_added[name] = split_added.get(name, 0) + n
            if (k + 1) % 500 == 0:
                log.info("teacher: %d/%d images", k + 1, len(items))
                if teacher_cache is not None:  # hours of teacher work survive a crash
                    _write_teacher_cache(teacher_cache, teacher_id, cache)
        out.lines_of[it.image] = to_yolo_lines(own)
        out.images[it.image] = _shrink(np.asarray(img, np.uint8), max_side)
    if teacher_cache is not None and teacher is not None:
        _write_teacher_cache(teacher_cache, teacher_id, cache)
    return out


def _fit(images: dict[Path, npt.NDArray[np.uint8]], max_mb: float, max_side: int, qualities: tuple[int, ...],
         fmt: str) -> tuple[dict[Path, bytes], int]:
    """The images encoded at the highest quality that fits ``max_mb``, and that quality."""
    budget = max_mb * 1024 * 1024 * 0.97  # leave room for labels and yaml files
    # Estimate on an evenly spaced sample first, so a tight budget does not encode everything at each quality.
    paths = list(images)
    sample = paths[:: max(1, len(paths) // 200)]
    start = len(qualities) - 1
    for i, q in enumerate(qualities):
        estimate = sum(len(_encode(images[p], max_side, q, fmt)) for p in sample) * len(paths) / max(1, len(sample))
        if estimate <= budget * 0.95:
            start = i
            break
    for q in qualities[start:]:
        encoded = {p: _encode(img, max_side, q, fmt) for p, img in images.items()}
        total = sum(len(b) for b in encoded.values())
        log.info("pack: %s quality %d -> %.1f MB", fmt, q, total / 2**20)
        if total <= budget:
            return encoded, q
    raise ValueError(f"pack does not fit {max_mb} MB even at {fmt} quality {qualities[-1]}; lower --max-side")


def _write_images(items: list[_Item], encoded: dict[Path, bytes], lines_of: dict[Path, list[str]], out: Path,
                  fmt: str) -> tuple[list[dict[str, object]], dict[str, dict[str, dict[str, int]]]]:
    """Write images and labels as ``images|labels/<split>_<source>/``; the files and counts per source/split."""
    files: list[dict[str, object]] = []
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for src, split, it, _cmap in items:
        if it.image not in encoded:
            continue
        stem = f"{src.name}__{it.image.stem}"
        img_path = out / "images" / f"{split}_{src.name}" / f"{stem}.{fmt}"
        lbl_path = out / "labels" / f"{split}_{src.name}" / f"{stem}.txt"
        img_path.parent.mkdir(parents=True, exist_ok=True)
        lbl_path.parent.mkdir(parents=True, exist_ok=True)
        img_path.write_bytes(encoded[it.image])
        lines = lines_of[it.image]
        tally = counts.setdefault(src.name, {}).setdefault(split, {"images": 0})
        tally["images"] += 1
        for line in lines:
            name = CANONICAL_LABELS[int(line.split()[0])]
            tally[name] = tally.get(name, 0) + 1
        lbl_path.write_text("\n".join(lines) + ("\n" if lines else ""))
        files.append({"file": str(img_path.relative_to(out)), "labels": str(lbl_path.relative_to(out)),
                      "source": src.name, "split": split, "original": str(it.image), "boxes": len(lines)})
    return files, counts


def _write_yamls(out: Path, sources: list[Source], repeats: Mapping[str, int] | None = None) -> None:
    """``data.yaml`` (every source; a source of ``repeats`` has its training folder listed that many times in all,
    so each epoch shows its images as often), ``val_<source>.yaml`` and ``only_<source>.yaml`` (one source)."""
    names = names_block()
    train_dirs = sorted({f"images/train_{s.name}" for s in sources if (out / f"images/train_{s.name}").exists()})
    for name, times in sorted((repeats or {}).items()):
        if f"images/train_{name}" not in train_dirs:
            raise ValueError(f"repeat: the pack has no training images of {name!r}")
        train_dirs += [f"images/train_{name}"] * (times - 1)
    val_dirs = sorted({f"images/val_{s.name}" for s in sources if (out / f"images/val_{s.name}").exists()})
    (out / "data.yaml").write_text(
        "# no path key: folders resolve relative to this file\n"
        f"train: [{', '.join(train_dirs)}]\nval: [{', '.join(val_dirs)}]\nnames:\n{names}")
    for s in sources:
        if (out / f"images/val_{s.name}").exists():
            (out / f"val_{s.name}.yaml").write_text(
                f"train: images/val_{s.name}\nval: images/val_{s.name}\nnames:\n{names}")
            if (out / f"images/train_{s.name}").exists():  # to train on one source alone (e.g. sim-to-real)
                (out / f"only_{s.name}.yaml").write_text(
                    f"train: images/train_{s.name}\nval: images/val_{s.name}\nnames:\n{names}")


def pack_sha256(out: Path, files: list[dict[str, object]]) -> str:
    """The pack's identity: SHA-256 over every image and label file, names and bytes, in name order.

    Labels count: a pack rebuilt with one box relabelled (a truck's load) is another training set. Packs written
    before stop 32 hashed their images only (0.4.0's card quotes such a hash).
    """
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda x: str(x["file"])):
        for key in ("file", "labels"):
            digest.update(str(f[key]).encode())
            digest.update((out / str(f[key])).read_bytes())
    return digest.hexdigest()


def build_pack(sources: list[Source], out: Path, max_mb: float, max_side: int = 416,
               qualities: tuple[int, ...] = (82, 75, 68, 60, 52, 45, 38, 32, 26, 20), val_cap: int = 0,
               fmt: str = "jpg", teacher: Callable[[npt.NDArray[np.uint8]], list[TeacherBox]] | None = None,
               teacher_cache: Path | None = None, teacher_id: str = "",
               repeats: Mapping[str, int] | None = None,
               train_caps: Mapping[str, int] | None = None) -> dict[str, object]:
    """Write a pack of ``sources`` into ``out``, lowering the quality until it fits ``max_mb``.

    ``repeats``: sources whose training images ``data.yaml`` lists more than once (source name -> times), to keep
    a small source's share of each epoch as other sources grow.

    ``train_caps``: sources whose training split is cut to at most that many images (source name -> images,
    evenly spaced in file order), for a pack that must fit a transfer limit (the GPU machine's 64 MiB).

    ``fmt`` is the image format, ``jpg`` or ``webp`` (see ``IMAGE_FORMATS``).

    ``teacher`` labels context classes on every image (full resolution, normalised boxes), merged with the
    source's own labels by :func:`datasets.pseudo.merge_teacher`: the source's labels win for its classes.
    ``teacher_cache``: a JSON file of the teacher's boxes by image content hash, read and updated, so a pack
    rebuilt after a label change does not run the teacher again; it is used only when it was written by the same
    ``teacher_id`` (e.g. the checkpoint's hash).

    ``val_cap`` > 0 keeps at most that many validation images per source (evenly spaced in
    file order), for a pack that must travel light; the full validation splits stay where they
    came from for evaluation on this machine.

    Returns:
        The manifest written to ``out/manifest.json``.
    """
    for name, times in (repeats or {}).items():
        if times < 1 or name not in {src.name for src in sources}:
            raise ValueError(f"repeat {name}={times}: a source of the pack, listed at least once")
    for name, cap in (train_caps or {}).items():
        if cap < 1 or name not in {src.name for src in sources}:
            raise ValueError(f"train cap {name}={cap}: a source of the pack, at least one image")
    items = _pack_items(sources, val_cap, train_caps)
    if not items:
        raise ValueError("no images in the given sources")
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"unknown image format {fmt!r}; use one of {sorted(IMAGE_FORMATS)}")
    labelled = _label(items, max_side, teacher, teacher_cache, teacher_id)
    encoded, chosen = _fit(labelled.images, max_mb, max_side, qualities, fmt)
    if out.exists():
        shutil.rmtree(out)
    files, counts = _write_images(items, encoded, labelled.lines_of, out, fmt)
    _write_yamls(out, sources, repeats)
    added = labelled.added
    manifest: dict[str, object] = {
        "names": list(CANONICAL_LABELS),
        "max_side": max_side,
        "format": fmt,
        "quality": chosen,
        "dataset_sha256": pack_sha256(out, files),
        "train_repeats": dict(sorted((repeats or {}).items())),
        "train_caps": dict(sorted((train_caps or {}).items())),
        "sources": [{"name": s.name, "data": str(s.data_yaml), "license": s.license, "remap": s.remap,
                     "counts": counts.get(s.name, {}),
                     "uncovered_from_load_labels": labelled.uncovered.get(s.name, 0),
                     **({"teacher_fixes": dict(zip(("applied", "unmatched"), labelled.fixed[s.name], strict=True))}
                        if s.name in labelled.fixed else {}),
                     "teacher_boxes": {sp: added.get(f"{s.name}/{sp}", {}) for sp in counts.get(s.name, {})}}
                    for s in sources],
        "teacher": teacher is not None,
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (out / "DATASET_CARD.md").write_text(dataset_card(manifest), encoding="utf-8")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log.info("pack: %d images, %.1f MB, %s quality %d -> %s", len(files), size / 2**20, fmt, chosen, out)
    return manifest


def dataset_card(manifest: dict[str, Any]) -> str:
    """A pack's dataset card (markdown): each source's license, images and boxes per class, teacher boxes."""
    lines = ["# Training pack: dataset card", "",
             f"{len(manifest['files'])} images re-encoded as {manifest['format']} (max side {manifest['max_side']} px, "
             f"quality {manifest['quality']}), pack sha256 `{manifest['dataset_sha256']}`. Context classes labelled "
             f"by the COCO teacher: {'yes' if manifest.get('teacher') else 'no'} (a source's own labels win for "
             "the classes it labels; see datasets/pseudo.py).", "",
             "| source | license | split | images | boxes by class (own + teacher) | of which teacher |",
             "|---|---|---|---|---|---|"]
    for src in manifest["sources"]:
        for split, tally in src.get("counts", {}).items():
            boxes = ", ".join(f"{k} {v}" for k, v in sorted(tally.items()) if k != "images")
            teacher = ", ".join(f"{k} {v}" for k, v in sorted(src.get("teacher_boxes", {}).get(split, {}).items()))
            lines.append(f"| {src['name']} | {src['license']} | {split} | {tally['images']} | {boxes} | {teacher} |")
    fixed = [(s["name"], s["teacher_fixes"]) for s in manifest["sources"] if s.get("teacher_fixes")]
    if fixed:
        lines += ["", "Teacher boxes corrected by hand (datasets/teacher_fixes.csv: a van called truck made car, a bin "
                  "dropped): " + "; ".join(f"{name} {f['applied']} applied, {f['unmatched']} matching no teacher box"
                                           for name, f in fixed) + "."]
    return "\n".join(lines) + "\n"
