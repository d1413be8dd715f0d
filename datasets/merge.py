"""Merging datasets: ``streetwatch datasets merge``.

Several sources (any importable format) become one canonical YOLO dataset with
a ``manifest.json`` that records, for every output image, its source, its
original file, its original split and its license. The new train/val split
keeps near-duplicates together: images whose difference hashes are within
``near_bits`` bits form one group (union-find), and whole groups are assigned
to a split, so no scene leaks from train into val.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from datasets.check import dhash_variants, near_pairs
from datasets.formats import Record, canonical, write_yolo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MergeSource:
    """One dataset to merge, already read into records."""

    name: str
    records: list[Record]
    license: str = "unknown"


def group_near_duplicates(records: list[Record], near_bits: int) -> list[int]:
    """Return a group id per record; near-duplicates share a group."""
    hashes: list[list[int]] = []
    for r in records:
        img = cv2.imread(str(r.image), cv2.IMREAD_COLOR)
        hashes.append(dhash_variants(np.asarray(img, np.uint8)) if img is not None
                      else [int(hashlib.sha256(str(r.image).encode()).hexdigest()[:15], 16)])
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in near_pairs(hashes, near_bits):
        parent[find(a)] = find(b)
    return [find(i) for i in range(len(records))]


def merge(sources: list[MergeSource], out: Path, remap: dict[str, str], val_fraction: float = 0.2,
          near_bits: int = 4, seed: int = 0, drop_unknown: bool = False) -> dict[str, Any]:
    """Merge sources into ``out`` with a near-duplicate-aware split; returns the manifest."""
    records: list[Record] = []
    origin: list[tuple[str, str | None, str]] = []
    for src in sources:
        recs = canonical(src.records, remap, drop_unknown)
        for r in recs:
            origin.append((src.name, r.split, src.license))
        records.extend(recs)
    groups = group_near_duplicates(records, near_bits)
    for r, g in zip(records, groups, strict=True):
        # A stable pseudo-random draw per group: the same data and seed always give the same split.
        h = int(hashlib.sha256(f"{seed}:{g}:{records[g].image}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        r.split = "val" if h < val_fraction else "train"
    data_yaml, written = write_yolo(records, out)
    files = []
    for r, dst, (name, orig_split, lic), g in zip(records, written, origin, groups, strict=True):
        files.append({"file": str(dst.relative_to(out)), "source": name, "original": str(r.image),
                      "original_split": orig_split, "split": r.split, "license": lic, "group": g,
                      "boxes": len(r.annotations)})
    manifest = {"sources": [{"name": s.name, "license": s.license, "images": len(s.records)} for s in sources],
                "remap": remap, "val_fraction": val_fraction, "near_bits": near_bits, "seed": seed,
                "groups": len(set(groups)), "files": files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    log.info("merged %d images from %d sources into %s (%d near-duplicate groups)", len(records), len(sources),
             data_yaml, len(set(groups)))
    return manifest
