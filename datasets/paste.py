"""Copy-paste: real objects cut from labelled photos, pasted onto real street-camera frames.

A detector trained on a few garbage sources learns their streets as much as their garbage (leave-one-source-out
scores far below the validation splits). Pasting the same real piles onto other real streets (road and CCTV frames
of the vehicle sources, which show no garbage) shows it the object without its usual surroundings:

    streetwatch datasets paste --objects ../shared/data/garbage_roadside_in/data.yaml \\
        --backgrounds data/sources/vehicles_atl_cctv/data.yaml --classes garbage --n 700 --out data/pasted

Each object is cut with its box from the ``train`` split of an object source, scaled to a share of the frame's
height, its colours moved part of the way towards the spot it lands on, and blended in with a soft edge; it lands
on the lower part of the frame, clear of the frame's own labelled objects (vehicles, people) and of the other pasted
ones. Its label is the part of the box that shows (mask at least half opaque). The result is a YOLO folder
(``train`` and a small ``val``) with the pasted classes only, for ``datasets pack --extra`` or a
leave-one-source-out ``--sources`` entry. Object sources must not include a source the model is to be scored on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from datasets.yolo import DatasetError, YoloDataset, label_path, names_block, read_label_file

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels


@dataclass(frozen=True)
class PasteSettings:
    """How objects are pasted."""

    height: tuple[float, float] = (0.08, 0.35)  #: pasted object's height, share of the frame's
    ground: tuple[float, float] = (0.45, 1.0)  #: where its bottom edge lands, share of the frame's height
    per_image: tuple[int, int] = (1, 3)  #: objects per frame (inclusive)
    harmonise: tuple[float, float] = (0.2, 0.6)  #: how far its colour statistics move towards the spot's
    min_side: int = 24  #: objects smaller than this (pixels) are not cut
    max_share: float = 0.8  #: objects covering more of their photo than this are not cut (a close-up, no edge)
    clear_of: float = 0.3  #: the most of a pasted object that may cover a labelled object of the frame
    max_side: int = 640  #: frames are scaled down to this longest side


@dataclass(frozen=True)
class Cut:
    """An object cut from a labelled photo."""

    pixels: Image
    label: str


def cut_objects(data_yaml: Path, classes: list[str], settings: PasteSettings, split: str = "train") -> list[Cut]:
    """Every box of ``classes`` in a source's ``split``, cut out (boxes too small or filling the photo skipped)."""
    ds = YoloDataset.load(data_yaml)
    wanted = {i: n for i, n in ds.names.items() if n in classes}
    cuts: list[Cut] = []
    for item in ds.items(split):
        boxes = [b for b in item.boxes if b[0] in wanted]
        if not boxes:
            continue
        image = cv2.imread(str(item.image))
        if image is None:
            raise DatasetError(f"{item.image}: not a readable image")
        h, w = image.shape[:2]
        for c, cx, cy, bw, bh in boxes:
            x0, y0, x1, y1 = pixel_box((cx, cy, bw, bh), (w, h))
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
            if min(x1 - x0, y1 - y0) < settings.min_side or (x1 - x0) * (y1 - y0) > settings.max_share * w * h:
                continue
            cuts.append(Cut(np.ascontiguousarray(image[y0:y1, x0:x1], dtype=np.uint8), wanted[c]))
    return cuts


def pixel_box(yolo: tuple[float, float, float, float], size: tuple[int, int]) -> Box:
    """A normalised YOLO ``cx cy w h`` box in pixels of an image of ``size`` (w, h), not clipped."""
    (cx, cy, bw, bh), (w, h) = yolo, size
    return round((cx - bw / 2) * w), round((cy - bh / 2) * h), round((cx + bw / 2) * w), round((cy + bh / 2) * h)


def frame_boxes(labels: Path, size: tuple[int, int]) -> list[Box]:
    """The labelled objects of a background frame (its YOLO label file), in pixels of a frame of ``size``."""
    return [pixel_box((cx, cy, bw, bh), size) for _, cx, cy, bw, bh in read_label_file(labels)]


def covered(a: Box, b: Box) -> float:
    """The share of ``a`` that ``b`` covers."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / max(1, (a[2] - a[0]) * (a[3] - a[1]))


def harmonise(obj: Image, spot: Image, share: float) -> Image:
    """Move ``obj``'s per-channel LAB mean and spread ``share`` of the way towards ``spot``'s."""
    lo = cv2.cvtColor(obj, cv2.COLOR_BGR2LAB).astype(np.float32)
    ls = cv2.cvtColor(spot, cv2.COLOR_BGR2LAB).astype(np.float32)
    for k in range(3):
        mo, so = float(lo[..., k].mean()), float(lo[..., k].std()) + 1e-3
        ms, ss = float(ls[..., k].mean()), float(ls[..., k].std()) + 1e-3
        lo[..., k] = (lo[..., k] - mo) * ((1 - share) + share * ss / so) + ((1 - share) * mo + share * ms)
    return np.asarray(cv2.cvtColor(np.clip(lo, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR), dtype=np.uint8)


def soft_mask(w: int, h: int, oval: bool) -> npt.NDArray[np.float32]:
    """An opacity mask (h, w, 1): an oval or a rectangle inset by a tenth, its edge blurred."""
    mask = np.zeros((h, w), np.float32)
    ex, ey = max(1, w // 10), max(1, h // 10)
    if oval:
        cv2.ellipse(mask, (w // 2, h // 2), (max(1, w // 2 - ex // 2), max(1, h // 2 - ey // 2)), 0, 0, 360, (1.0,), -1)
    else:
        cv2.rectangle(mask, (ex, ey), (w - 1 - ex, h - 1 - ey), (1.0,), -1)
    k = max(3, (min(w, h) // 5) | 1)
    return np.asarray(cv2.GaussianBlur(mask, (k, k), 0), dtype=np.float32)[..., None]


def place(frame: Image, cut: Cut, rng: np.random.Generator, settings: PasteSettings) -> tuple[Image, Box] | None:
    """``frame`` with ``cut`` pasted at a random spot, and the box that shows; ``None`` if it cannot fit."""
    fh, fw = frame.shape[:2]
    ch, cw = cut.pixels.shape[:2]
    th = round(fh * rng.uniform(*settings.height))
    tw = round(cw * th / ch)
    if tw > 0.6 * fw:
        tw, th = round(0.6 * fw), round(ch * 0.6 * fw / cw)
    if min(tw, th) < 12 or th > fh:
        return None
    obj = np.asarray(cv2.resize(cut.pixels, (tw, th), interpolation=cv2.INTER_AREA), dtype=np.uint8)
    bottom = round(rng.uniform(*settings.ground) * fh)
    y0 = min(max(0, bottom - th), fh - th)
    x0 = int(rng.integers(0, fw - tw + 1))
    spot = frame[y0:y0 + th, x0:x0 + tw]
    obj = harmonise(obj, spot, float(rng.uniform(*settings.harmonise)))
    if rng.random() < 0.5:  # a photo is sharper than a camera frame
        obj = np.asarray(cv2.GaussianBlur(obj, (3, 3), 0), dtype=np.uint8)
    mask = soft_mask(tw, th, oval=bool(rng.random() < 0.5))
    out = frame.copy()
    out[y0:y0 + th, x0:x0 + tw] = (mask * obj + (1 - mask) * spot).astype(np.uint8)
    ys, xs = np.nonzero(mask[..., 0] >= 0.5)
    if not len(xs):
        return None
    return out, (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)


def backgrounds_of(data_yamls: list[Path], split: str = "train") -> list[tuple[Path, Path]]:
    """(image, label file) of every frame of the background sources' ``split``."""
    out = []
    for data_yaml in data_yamls:
        out += [(it.image, label_path(it.image)) for it in YoloDataset.load(data_yaml).items(split)]
    return out


def compose(frame_path: Path, labels: Path, cuts: list[Cut], rng: np.random.Generator,
            settings: PasteSettings) -> tuple[Image, list[tuple[str, Box]]]:
    """One background frame with objects pasted, and their labels."""
    read = cv2.imread(str(frame_path))
    if read is None:
        raise DatasetError(f"{frame_path}: not a readable image")
    frame: Image = np.asarray(read, dtype=np.uint8)
    h, w = frame.shape[:2]
    if max(h, w) > settings.max_side:
        s = settings.max_side / max(h, w)
        size = (round(w * s), round(h * s))
        frame = np.asarray(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    occupied = frame_boxes(labels, (frame.shape[1], frame.shape[0]))
    pasted: list[tuple[str, Box]] = []
    for _ in range(int(rng.integers(settings.per_image[0], settings.per_image[1] + 1))):
        for _try in range(5):  # a few spots, then give up on this object
            cut = cuts[int(rng.integers(len(cuts)))]
            got = place(frame, cut, rng, settings)
            if got is None:
                break
            image, box = got
            if any(covered(box, o) > settings.clear_of for o in occupied) or \
                    any(covered(box, b) > 0.05 or covered(b, box) > 0.05 for _, b in pasted):
                continue
            frame = image
            pasted.append((cut.label, box))
            break
    return frame, pasted


def write_pasted(out: Path, objects: list[Path], backgrounds: list[Path], classes: list[str], n: int,
                 seed: int = 0, settings: PasteSettings | None = None, val_share: float = 0.05) -> Path:
    """Write ``n`` pasted frames (and ``val_share`` as many for ``val``) as a YOLO folder; returns its data.yaml."""
    if n < 1:
        raise DatasetError(f"n: at least one frame to write, got {n}")
    settings = settings or PasteSettings()
    cuts = [c for src in objects for c in cut_objects(src, classes, settings)]
    if not cuts:
        raise DatasetError(f"no {', '.join(classes)} objects to cut in {', '.join(map(str, objects))}")
    frames = backgrounds_of(backgrounds)
    if not frames:
        raise DatasetError(f"no background frames in {', '.join(map(str, backgrounds))}")
    log.info("pasting %d objects onto %d frames", len(cuts), len(frames))
    rng = np.random.default_rng(seed)
    index = {c: i for i, c in enumerate(classes)}
    for split, count in (("train", n), ("val", max(1, round(n * val_share)))):
        img_dir, lbl_dir = out / "images" / split, out / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            frame_path, labels = frames[int(rng.integers(len(frames)))]
            image, pasted = compose(frame_path, labels, cuts, rng, settings)
            h, w = image.shape[:2]
            name = f"paste_{split}_{i:05d}"
            cv2.imwrite(str(img_dir / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 93))])
            rows = [f"{index[c]} {(b[0] + b[2]) / 2 / w:.6f} {(b[1] + b[3]) / 2 / h:.6f} {(b[2] - b[0]) / w:.6f} "
                    f"{(b[3] - b[1]) / h:.6f}\n" for c, b in pasted]
            (lbl_dir / f"{name}.txt").write_text("".join(rows))
    data_yaml = out / "data.yaml"
    data_yaml.write_text(f"train: images/train\nval: images/val\nnames:\n{names_block(classes)}")
    manifest = {"kind": "pasted", "objects": [source_of(p) for p in objects],
                "backgrounds": [source_of(p) for p in backgrounds], "classes": classes, "n": n, "seed": seed,
                "cuts": len(cuts), "frames": len(frames), "settings": asdict(settings),
                "license": "pasted from: " + "; ".join(f"{source_of(p)}: {source_license(p)}"
                                                      for p in dict.fromkeys([*objects, *backgrounds]))}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return data_yaml


def source_of(data_yaml: Path) -> str:
    """A source's name: the folder of its data.yaml."""
    return data_yaml.resolve().parent.name


def source_license(data_yaml: Path) -> str:
    """A source's license line: its ``manifest.json`` (``datasets materialize``: license, repository and commit),
    else its README's license line."""
    from datasets.pack import license_line, read_license

    manifest = data_yaml.parent / "manifest.json"
    if manifest.is_file():
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        if isinstance(meta, dict) and meta.get("license"):
            return license_line(meta)
    return read_license(data_yaml)
