"""Reading YOLO-format datasets (``data.yaml`` + ``images/`` + ``labels/``).

A dataset's class names are mapped onto the canonical label set by name, with
an optional remap (``{"overflow": "overflowing_bin"}``); names that map to
nothing canonical are reported, never silently renumbered.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from detector.types import CANONICAL_LABELS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class DatasetError(ValueError):
    """A dataset that cannot be read, with the file that is wrong."""


@dataclass(frozen=True)
class LabeledImage:
    """One image with its boxes in YOLO normalised ``cls cx cy w h`` form (dataset class ids)."""

    image: Path
    boxes: list[tuple[int, float, float, float, float]]
    split: str


@dataclass(frozen=True)
class YoloDataset:
    """A YOLO dataset described by its ``data.yaml``."""

    root: Path
    names: dict[int, str]
    splits: dict[str, list[Path]]

    @classmethod
    def load(cls, data_yaml: Path) -> YoloDataset:
        """Parse ``data.yaml``; split folders resolve relative to ``path:`` or the yaml's folder."""
        try:
            spec = yaml.safe_load(data_yaml.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise DatasetError(f"{data_yaml}: cannot read dataset description: {exc}") from exc
        if not isinstance(spec, dict) or "names" not in spec:
            raise DatasetError(f"{data_yaml}: needs a 'names' key")
        raw = spec["names"]
        if isinstance(raw, list):
            names = {i: str(n) for i, n in enumerate(raw)}
        else:
            names = {int(k): str(v) for k, v in raw.items()}
        root = data_yaml.parent / spec["path"] if spec.get("path") else data_yaml.parent
        splits: dict[str, list[Path]] = {}
        for split in ("train", "val", "test"):
            entry = spec.get(split)
            if entry is None:
                continue
            entries = entry if isinstance(entry, list) else [entry]
            splits[split] = [(root / e).resolve() for e in entries]
        return cls(root=root.resolve(), names=names, splits=splits)

    def canonical_map(self, remap: dict[str, str] | None = None) -> dict[int, int]:
        """Map dataset class ids to canonical ids by name (after ``remap``)."""
        remap = remap or {}
        out: dict[int, int] = {}
        unknown = []
        for i, name in self.names.items():
            name = remap.get(name, name)
            if name in CANONICAL_LABELS:
                out[i] = CANONICAL_LABELS.index(name)
            else:
                unknown.append(name)
        if unknown:
            raise DatasetError(f"{self.root}: classes {unknown} are not canonical labels; remap them")
        return out

    def items(self, split: str) -> Iterator[LabeledImage]:
        """Yield the labelled images of a split, sorted by path."""
        for folder in self.splits.get(split, []):
            for img in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
                yield LabeledImage(image=img, boxes=read_label_file(label_path(img)), split=split)


def names_block(names: Sequence[str] = CANONICAL_LABELS) -> str:
    """The lines under a data.yaml's ``names:`` key, one ``  id: name`` per class in id order."""
    return "".join(f"  {i}: {n}\n" for i, n in enumerate(names))


def label_path(image: Path) -> Path:
    """Return the label file of an image (``.../images/x.jpg`` -> ``.../labels/x.txt``)."""
    parts = list(image.parts)
    idx = len(parts) - 1 - parts[::-1].index("images") if "images" in parts else None
    if idx is None:
        return image.with_suffix(".txt")
    parts[idx] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_label_file(path: Path) -> list[tuple[int, float, float, float, float]]:
    """Read a YOLO label file; a missing file means no objects."""
    if not path.exists():
        return []
    boxes = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise DatasetError(f"{path}:{lineno}: expected 5 fields 'cls cx cy w h', got {len(fields)}")
        cls, cx, cy, w, h = int(fields[0]), *map(float, fields[1:])
        boxes.append((cls, cx, cy, w, h))
    return boxes
