"""Dataset health checks and dataset cards: ``streetwatch datasets check``.

Checks: unreadable or empty images, label lines with the wrong field count,
class ids out of range, coordinates outside 0..1, zero-size boxes, images
without a label file, exact duplicates (same bytes) and near-duplicates
(64-bit difference hash within ``near_bits`` bits, flipped and rotated
copies included) inside a split and across
splits (a leak from train into val inflates scores), and class balance.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from datasets.pack import read_license
from datasets.yolo import IMAGE_SUFFIXES, YoloDataset, label_path

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def dhash(image: npt.NDArray[np.uint8]) -> int:
    """64-bit difference hash of an image (robust to resizing and re-encoding)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def dhash_variants(image: npt.NDArray[np.uint8]) -> list[int]:
    """Hashes of an image under the 8 flips and right-angle rotations (augmented copies are duplicates too)."""
    out = []
    for flip in (False, True):
        img = image[:, ::-1] if flip else image
        for k in range(4):
            out.append(dhash(np.ascontiguousarray(np.rot90(img, k))))
    return out


def near_pairs(hashes: list[int] | list[list[int]], max_bits: int) -> list[tuple[int, int]]:
    """Index pairs whose hashes differ in at most ``max_bits`` bits.

    Each entry is one hash, or a list of variant hashes whose first is the
    image itself: then ``i`` and ``j`` pair when ``i``'s own hash is near any
    variant of ``j``.
    """
    if len(hashes) < 2:
        return []
    rows = [h if isinstance(h, list) else [h] for h in hashes]
    nv = max(len(r) for r in rows)
    rows = [r + [r[0]] * (nv - len(r)) for r in rows]
    arr = np.array(rows, dtype=np.uint64).view(np.uint8).reshape(len(rows), nv, 8)
    pairs = []
    for i in range(len(rows) - 1):
        dist = _POPCOUNT[np.bitwise_xor(arr[i + 1 :], arr[i, 0])].sum(axis=2).min(axis=1)
        for j in np.flatnonzero(dist <= max_bits):
            pairs.append((i, i + 1 + int(j)))
    return pairs


@dataclass
class ImageInfo:
    """What the checker learnt about one image."""

    path: Path
    split: str
    sha256: str
    dhash: list[int] | None


def check_dataset(data_yaml: Path, near_bits: int = 4) -> dict[str, Any]:
    """Run every check on a YOLO dataset; returns a JSON-ready report."""
    ds = YoloDataset.load(data_yaml)
    nc = len(ds.names)
    problems: list[dict[str, str]] = []
    infos: list[ImageInfo] = []
    balance: dict[str, Counter[str]] = {}
    counts: dict[str, dict[str, int]] = {}
    for split, folders in ds.splits.items():
        balance[split] = Counter()
        c = counts.setdefault(split, {"images": 0, "boxes": 0, "background": 0, "unlabelled": 0})
        for folder in folders:
            for img_path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
                c["images"] += 1
                data = img_path.read_bytes()
                img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
                if img is None or img.size == 0:
                    problems.append({"file": str(img_path), "problem": "unreadable or empty image"})
                infos.append(ImageInfo(img_path, split, hashlib.sha256(data).hexdigest(),
                                       dhash_variants(np.asarray(img, np.uint8)) if img is not None and img.size
                                       else None))
                lbl = label_path(img_path)
                if not lbl.exists():
                    c["unlabelled"] += 1
                    problems.append({"file": str(img_path), "problem": "no label file"})
                    continue
                lines = [ln for ln in lbl.read_text().splitlines() if ln.strip()]
                if not lines:
                    c["background"] += 1
                for n, line in enumerate(lines, 1):
                    f = line.split()
                    where = f"{lbl}:{n}"
                    if len(f) != 5:
                        problems.append({"file": where, "problem": f"{len(f)} fields, expected 5"})
                        continue
                    try:
                        cls, vals = int(f[0]), [float(v) for v in f[1:]]
                    except ValueError:
                        problems.append({"file": where, "problem": "non-numeric field"})
                        continue
                    if not 0 <= cls < nc:
                        problems.append({"file": where, "problem": f"class id {cls} outside 0..{nc - 1}"})
                        continue
                    cx, cy, w, h = vals
                    if w <= 0 or h <= 0:
                        problems.append({"file": where, "problem": "zero-size box"})
                    elif cx - w / 2 < -1e-3 or cy - h / 2 < -1e-3 or cx + w / 2 > 1 + 1e-3 or cy + h / 2 > 1 + 1e-3:
                        problems.append({"file": where, "problem": "box extends outside the image (coordinates 0..1)"})
                    balance[split][ds.names[cls]] += 1
                    c["boxes"] += 1
    exact: dict[str, list[ImageInfo]] = {}
    for info in infos:
        exact.setdefault(info.sha256, []).append(info)
    dup_groups = [[str(i.path) for i in g] for g in exact.values() if len(g) > 1]
    hashed = [i for i in infos if i.dhash is not None]
    near = []
    for a, b in near_pairs([i.dhash for i in hashed if i.dhash is not None], near_bits):
        ia, ib = hashed[a], hashed[b]
        if ia.sha256 != ib.sha256:
            near.append({"a": str(ia.path), "b": str(ib.path), "splits": f"{ia.split}/{ib.split}"})
    cross = [p for p in near if p["splits"].split("/")[0] != p["splits"].split("/")[1]]
    cross_exact = [g for g in exact.values() if len({i.split for i in g}) > 1]
    return {
        "data": str(data_yaml), "names": ds.names, "counts": counts,
        "class_balance": {s: dict(sorted(b.items())) for s, b in balance.items()},
        "problems": problems,
        "duplicates": {"exact_groups": dup_groups, "exact_across_splits": len(cross_exact),
                       "near_pairs": near, "near_across_splits": len(cross), "near_bits": near_bits},
        "ok": not problems and not cross_exact,
    }


def sources_and_licenses(data_yaml: Path) -> list[dict[str, str]]:
    root = data_yaml.parent
    manifest = root / "manifest.json"
    if manifest.exists():
        try:
            m = json.loads(manifest.read_text())
            if isinstance(m, dict) and "sources" in m:
                return [{"name": s.get("name", ""), "license": s.get("license", "")} for s in m["sources"]]
        except json.JSONDecodeError:
            pass
    return [{"name": root.name, "license": read_license(data_yaml)}]


def write_card(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write the dataset card as ``card.json`` and ``card.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    data_yaml = Path(report["data"])
    card = {**report, "sources": sources_and_licenses(data_yaml)}
    (out / "card.json").write_text(json.dumps(card, indent=1, ensure_ascii=False))
    lines = [f"# Dataset card: {data_yaml.parent.name}", "", f"`{data_yaml}`", "", "## Counts", "",
             "| split | images | boxes | background | unlabelled |", "|---|---|---|---|---|"]
    lines += [f"| {s} | {c['images']} | {c['boxes']} | {c['background']} | {c['unlabelled']} |"
              for s, c in report["counts"].items()]
    lines += ["", "## Class balance (boxes)", "", "| class | " + " | ".join(report["class_balance"]) + " |",
              "|---|" + "---|" * len(report["class_balance"])]
    for name in report["names"].values():
        lines.append(f"| {name} | " + " | ".join(str(b.get(name, 0)) for b in report["class_balance"].values())
                     + " |")
    d = report["duplicates"]
    lines += ["", "## Duplicates", "", f"- exact duplicate groups: {len(d['exact_groups'])} "
              f"({d['exact_across_splits']} across splits)",
              f"- near-duplicate pairs (dHash within {d['near_bits']} bits): {len(d['near_pairs'])} "
              f"({d['near_across_splits']} across splits)", "", "## Problems", ""]
    lines += [f"- `{p['file']}`: {p['problem']}" for p in report["problems"][:200]] or ["- none"]
    if len(report["problems"]) > 200:
        lines.append(f"- ... and {len(report['problems']) - 200} more (card.json has all)")
    lines += ["", "## Sources and licenses", ""] + [f"- {s['name']}: {s['license']}" for s in card["sources"]]
    (out / "card.md").write_text("\n".join(lines) + "\n")
    return out / "card.json", out / "card.md"

