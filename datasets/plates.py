"""Synthetic Chinese number plates: random valid plates, drawn as the real ones look (blue, yellow for heavy
vehicles, green for new-energy), and pasted onto vehicles of generated scenes with perspective, blur and noise.

The plate reader is measured on them (``tests``: a floor on the share read exactly). Chinese characters need a
CJK font: Debian's ``fonts-wqy-microhei`` (``scripts/install-test-services.sh``) or any of :data:`FONTS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from detector.plates import DIGITS, LETTERS, PROVINCES

PlateColour = Literal["blue", "yellow", "green"]
FONTS: tuple[Path, ...] = (Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
                           Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
                           Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"))
#: Plate and character colours (RGB) of each kind.
_COLOURS: dict[PlateColour, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "blue": ((20, 70, 190), (245, 245, 245)), "yellow": ((245, 190, 20), (15, 15, 15)),
    "green": ((120, 210, 140), (10, 10, 10))}


def cjk_font() -> Path | None:
    """The first CJK font installed, if any."""
    return next((f for f in FONTS if f.is_file()), None)


def random_plate(rng: np.random.Generator, colour: PlateColour) -> str:
    """A random valid plate of a colour's format (green: new-energy, 8 characters)."""
    alnum = LETTERS + DIGITS
    head = str(rng.choice(list(PROVINCES))) + str(rng.choice(list(LETTERS)))
    if colour == "green":
        return head + str(rng.choice(list("DF"))) + str(rng.choice(list(alnum))) + "".join(
            str(rng.choice(list(DIGITS))) for _ in range(4))
    return head + "".join(str(rng.choice(list(alnum))) for _ in range(5))


def draw_plate(text: str, colour: PlateColour, font: Path, height: int = 140) -> npt.NDArray[np.uint8]:
    """A plate as an image (BGR): its background, a rim, and ``京A·12345`` in the plate's text colour."""
    from PIL import Image, ImageDraw, ImageFont

    width = int(height * (480 / 140 if len(text) == 8 else 440 / 140))
    bg, fg = _COLOURS[colour]
    im = Image.new("RGB", (width, height), bg)
    d = ImageDraw.Draw(im)
    d.rectangle([4, 4, width - 5, height - 5], outline=fg, width=max(2, height // 35))
    f = ImageFont.truetype(str(font), int(height * 0.62))
    label = f"{text[:2]}·{text[2:]}"
    left, top, right, bottom = d.textbbox((0, 0), label, font=f)
    d.text(((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top), label, font=f, fill=fg)
    return np.asarray(cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2BGR), np.uint8)


@dataclass(frozen=True)
class PlateScene:
    """A generated image with one plated vehicle: the image, the vehicle's box, the plate's text and the plate's
    bounding box (pixels; where it would be when ``with_plate=False``)."""

    image: npt.NDArray[np.uint8]
    vehicle: tuple[float, float, float, float]
    plate: str
    colour: PlateColour
    plate_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


def plate_scene(rng: np.random.Generator, font: Path, size: tuple[int, int] = (1280, 720),
                with_plate: bool = True) -> PlateScene:
    """A road-camera-like image: a box-bodied truck seen from behind, its plate under the tailboard (perspective,
    blur, light, JPEG artefacts), on a noisy road, with a camera's time overlay. ``with_plate=False``: the same
    truck without a plate (``plate`` is then what it would have carried)."""
    w, h = size
    img = np.full((h, w, 3), rng.integers(70, 130), np.uint8)
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    tw = int(rng.uniform(0.12, 0.3) * w)
    th = int(tw * rng.uniform(0.8, 1.1))
    x0, y0 = int(rng.uniform(0.05, 0.9) * (w - tw)), int(rng.uniform(0.1, 0.9) * (h - th))
    body = tuple(int(c) for c in rng.integers(30, 220, 3))
    cv2.rectangle(img, (x0, y0), (x0 + tw, y0 + th), body, -1)
    cv2.rectangle(img, (x0, y0 + int(th * 0.75)), (x0 + tw, y0 + th), (40, 40, 40), -1)  # bumper
    colour: PlateColour = str(rng.choice(["yellow", "yellow", "blue", "green"]))  # type: ignore[assignment]
    text = random_plate(rng, colour)
    plate = draw_plate(text, colour, font)
    pw = int(tw * rng.uniform(0.3, 0.42))
    ph = int(pw * plate.shape[0] / plate.shape[1])
    px, py = x0 + (tw - pw) // 2 + int(rng.uniform(-0.1, 0.1) * tw), y0 + int(th * 0.78)
    skew = rng.uniform(-0.08, 0.08) * pw
    src = np.asarray([[0, 0], [plate.shape[1], 0], [plate.shape[1], plate.shape[0]], [0, plate.shape[0]]],
                     np.float32)
    dst = np.asarray([[px, py + skew], [px + pw, py - skew], [px + pw, py + ph - skew], [px, py + ph + skew]],
                     np.float32)
    warp = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(plate, warp, (w, h))
    mask = cv2.warpPerspective(np.full(plate.shape[:2], 255, np.uint8), warp, (w, h))
    if with_plate:
        img[mask > 127] = warped[mask > 127]
    cv2.putText(img, f"2026-12-01 {rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}:{rng.integers(0, 60):02d} CAM-03",
                (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)  # a camera's overlay: not a plate
    img = np.clip(img.astype(np.float32) * rng.uniform(0.6, 1.3), 0, 255).astype(np.uint8)  # light
    k = int(rng.choice([1, 3]))
    img = np.asarray(cv2.GaussianBlur(img, (k, k), 0), np.uint8) if k > 1 else img
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 85))])
    image = np.asarray(cv2.imdecode(enc, cv2.IMREAD_COLOR), np.uint8) if ok else img
    lo, hi = dst.min(axis=0), dst.max(axis=0)
    return PlateScene(image, (float(x0), float(y0), float(x0 + tw), float(y0 + th)), text, colour,
                      (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])))
