"""Synthetic, labelled street-camera images and clips.

Covers the classes with no real street-level data (street stalls, barbecue
grills, covered/uncovered trucks) plus garbage, bins and smoke, so the detector
sees them from the elevated, wide-angle view of a fixed city camera. Scenes are
rendered by :mod:`datasets.render`; domain randomisation (time of day, night IR,
rain, blur, noise, compression, lens distortion) is applied to the image and,
for distortion, to the label boxes too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from datasets.render import (
    Camera,
    Color,
    Image,
    Obj,
    Part,
    cone,
    cuboid,
    cylinder,
    draw_objects,
    ellipsoid,
    plume,
    render_background,
)
from datasets.render_gl import Light, RendererUnavailable, get_renderer
from detector.types import CANONICAL_LABELS

log = logging.getLogger(__name__)

#: The labels the renderer gives exactly (everything it labels is labelled wherever it is visible).
RENDERED_LABELS: frozenset[str] = frozenset({"street_stall", "uncovered_truck", "truck", "garbage", "garbage_bin",
                                             "overflowing_bin", "barbecue", "smoke", "person"})

Box = tuple[float, float, float, float]

BRIGHT: list[Color] = [(40, 40, 200), (200, 80, 30), (230, 230, 230), (30, 160, 230), (60, 170, 60),
                       (180, 60, 160), (20, 200, 200), (90, 90, 220)]
BAG: list[Color] = [(25, 25, 25), (40, 40, 40), (160, 90, 30), (60, 140, 60), (220, 220, 220), (30, 30, 120)]
LOAD: list[Color] = [(60, 90, 120), (110, 150, 180), (90, 90, 90), (40, 60, 80), (150, 170, 190)]


def _rand_color(rng: np.random.Generator, choices: list[Color], jitter: int = 20) -> Color:
    base = choices[int(rng.integers(len(choices)))]
    return tuple(int(np.clip(c + rng.integers(-jitter, jitter + 1), 0, 255)) for c in base)  # type: ignore[return-value]


def person(rng: np.random.Generator, x: float, y: float) -> Obj:
    """A standing person (a context label: never a violation by itself)."""
    h = rng.uniform(1.55, 1.85)
    o = Obj("person")
    o.parts.append(cylinder(x, y, 0, 0.18, h * 0.5, _rand_color(rng, BAG), n=8))
    o.parts.append(cylinder(x, y, h * 0.5, 0.22, h * 0.35, _rand_color(rng, BRIGHT), n=8))
    o.parts.append(ellipsoid(x, y, h * 0.92, 0.11, 0.11, 0.13, (60, 90, 140), n=6))
    return o


def street_stall(rng: np.random.Generator, x: float, y: float) -> list[Obj]:
    """A vendor stall: table or cart with goods under an umbrella or a tent, plus its vendor."""
    o = Obj("street_stall")
    w, d = rng.uniform(1.0, 2.2), rng.uniform(0.6, 1.1)
    yaw = rng.uniform(-0.3, 0.3)
    kind = int(rng.integers(3))
    table = _rand_color(rng, [(200, 200, 200), (60, 90, 140), (40, 40, 40), (30, 120, 200)])
    o.parts.append(cuboid(x, y, 0.0, w, d, 0.78, table, yaw=yaw))
    if kind == 1:  # tricycle cart: wheels
        for dx in (-w / 2, w / 2):
            o.parts.append(cylinder(x + dx * 0.8, y - d / 2, 0, 0.22, 0.05, (20, 20, 20), n=8))
    for _ in range(int(rng.integers(3, 9))):
        gx, gy = x + rng.uniform(-w / 2.4, w / 2.4), y + rng.uniform(-d / 2.6, d / 2.6)
        gs = rng.uniform(0.12, 0.35)
        o.parts.append(cuboid(gx, gy, 0.78, gs, gs, rng.uniform(0.08, 0.3), _rand_color(rng, BRIGHT, 40)))
    roof = _rand_color(rng, BRIGHT)
    stripe = _rand_color(rng, BRIGHT) if rng.uniform() < 0.5 else None
    if kind in (0, 1):  # umbrella
        r = rng.uniform(0.9, 1.5)
        o.parts.append(cylinder(x, y, 0.78, 0.03, 1.4, (120, 120, 120), n=6))
        o.parts.extend(cone(x, y, 2.1, r, rng.uniform(0.3, 0.6), roof, stripes=stripe))
    else:  # tent with four poles and a flat or peaked roof
        tw, td, th = w + rng.uniform(0.4, 1.2), d + rng.uniform(0.6, 1.4), rng.uniform(2.0, 2.5)
        for sx in (-1, 1):
            for sy in (-1, 1):
                o.parts.append(cylinder(x + sx * tw / 2, y + sy * td / 2, 0, 0.03, th, (150, 150, 150), n=6))
        o.parts.append(cuboid(x, y, th, tw, td, rng.uniform(0.05, 0.35), roof, yaw=yaw))
    out = [o]
    if rng.uniform() < 0.8:
        out.append(person(rng, x + rng.uniform(-w / 2, w / 2), y + d / 2 + 0.4))
    return out


def barbecue(rng: np.random.Generator, x: float, y: float, smoke: bool) -> list[Obj]:
    """An outdoor grill on legs with glowing coals, skewers and usually a smoke plume."""
    o = Obj("barbecue")
    w, d, hz = float(rng.uniform(0.8, 1.6)), float(rng.uniform(0.3, 0.5)), float(rng.uniform(0.7, 0.9))
    metal = _rand_color(rng, [(50, 50, 50), (90, 90, 95), (150, 150, 155)], 15)
    for sx in (-1, 1):
        for sy in (-1, 1):
            o.parts.append(cylinder(x + sx * w / 2.3, y + sy * d / 2.3, 0, 0.02, hz, (40, 40, 40), n=5))
    o.parts.append(cuboid(x, y, hz, w, d, float(rng.uniform(0.12, 0.22)), metal, top=False))
    coal = Part([np.array([(x - w / 2.1, y - d / 2.1, hz + 0.1), (x + w / 2.1, y - d / 2.1, hz + 0.1),
                           (x + w / 2.1, y + d / 2.1, hz + 0.1), (x - w / 2.1, y + d / 2.1, hz + 0.1)],
                          np.float32)], (30, int(rng.integers(60, 140)), 230), emissive=True)
    o.parts.append(coal)
    for i in range(int(rng.integers(4, 12))):
        skewer_x = x - w / 2.2 + (i + 0.5) * w / 12
        o.parts.append(cuboid(skewer_x, y, hz + 0.13, 0.04, d * 1.3, 0.03, (40, 80, 150), texture=15))
    out = [o]
    if smoke:
        s = Obj("smoke" if rng.uniform() < 0.7 else None)
        s.soft = plume(rng, x, y, hz + 0.2, rng.uniform(1.2, 3.0), int(rng.integers(150, 235)), rng.uniform(0.5, 1.0))
        out.append(s)
    for _ in range(int(rng.integers(0, 4))):  # customers on stools
        out.append(person(rng, x + rng.uniform(-2, 2), y + rng.uniform(0.8, 2.0)))
    return out


def truck(rng: np.random.Generator, x: float, y: float, load: str) -> list[Obj]:
    """A two-axle dump truck seen on the road; ``load`` is covered, uncovered or empty."""
    label = "uncovered_truck" if load == "uncovered" else "truck"
    o = Obj(label)
    length, width = rng.uniform(6.0, 8.5), rng.uniform(2.3, 2.5)
    yaw = math.pi / 2 + rng.uniform(-0.15, 0.15) if rng.uniform() < 0.5 else rng.uniform(-0.15, 0.15)
    along = np.array([math.cos(yaw + math.pi / 2), math.sin(yaw + math.pi / 2)]) if abs(yaw) > 1 else np.array([0, 1.0])
    cab_c = np.array([x, y]) + along * (length / 2 - 1.0)
    bed_c = np.array([x, y]) - along * 0.9
    bed_len = length - 2.2
    cab_col = _rand_color(rng, [(40, 40, 180), (200, 120, 30), (30, 160, 220), (230, 230, 230), (40, 130, 40)])
    ry = yaw if abs(yaw) < 1 else yaw - math.pi / 2
    sx, sy = (width, 2.0) if abs(yaw) < 1 else (2.0, width)
    bx, by = (width, bed_len) if abs(yaw) < 1 else (bed_len, width)
    o.parts.append(cuboid(cab_c[0], cab_c[1], 0.5, sx, sy, 2.4, cab_col, yaw=ry))
    bed_col = _rand_color(rng, [(50, 60, 70), (40, 100, 160), (30, 140, 200), (60, 60, 60)])
    o.parts.append(cuboid(bed_c[0], bed_c[1], 1.0, bx, by, 0.12, bed_col, yaw=ry))
    wall_h = rng.uniform(0.8, 1.3)
    # Bed walls: four thin boxes, so the inside of the bed is visible from above.
    t = 0.08
    for off, size in ((np.array([bx / 2, 0]), (t, by)), (np.array([-bx / 2, 0]), (t, by)),
                      (np.array([0, by / 2]), (bx, t)), (np.array([0, -by / 2]), (bx, t))):
        c = bed_c + off
        o.parts.append(cuboid(c[0], c[1], 1.12, size[0], size[1], wall_h, bed_col, yaw=ry))
    top = 1.12 + wall_h
    if load == "covered":
        tarp = _rand_color(rng, [(60, 140, 40), (160, 90, 20), (40, 40, 40), (200, 200, 200)])
        o.parts.append(cuboid(bed_c[0], bed_c[1], top - 0.05, bx + 0.1, by + 0.1, rng.uniform(0.05, 0.3), tarp, yaw=ry))
    elif load == "uncovered":
        mat = _rand_color(rng, LOAD, 25)
        for _ in range(int(rng.integers(4, 9))):
            hx = bed_c[0] + rng.uniform(-bx / 3, bx / 3)
            hy = bed_c[1] + rng.uniform(-by / 3, by / 3)
            o.parts.append(ellipsoid(hx, hy, top - 0.2, bx / 3, by / 3.5, rng.uniform(0.3, 0.8), mat, texture=25))
    for wy in (-1.0, 1.0):
        for side in (-1, 1):
            c = np.array([x, y]) + along * wy * length / 3
            perp = np.array([-along[1], along[0]])
            p = c + perp * side * width / 2
            o.parts.append(cylinder(p[0], p[1], 0, 0.5, 0.3, (20, 20, 20), n=8))
    return [o]


def garbage_pile(rng: np.random.Generator, x: float, y: float) -> list[Obj]:
    """A pile of bags and bulky waste dumped on the pavement."""
    o = Obj("garbage")
    spread = rng.uniform(0.5, 1.8)
    for _ in range(int(rng.integers(3, 12))):
        bx, by = x + rng.uniform(-spread, spread), y + rng.uniform(-spread / 2, spread / 2)
        r = rng.uniform(0.2, 0.45)
        o.parts.append(ellipsoid(bx, by, r * 0.8, r, r * rng.uniform(0.8, 1.2), r * 0.8, _rand_color(rng, BAG), 18))
    for _ in range(int(rng.integers(0, 4))):
        o.parts.append(cuboid(x + rng.uniform(-spread, spread), y + rng.uniform(-0.4, 0.4), 0,
                              rng.uniform(0.3, 1.6), rng.uniform(0.3, 0.9), rng.uniform(0.1, 0.9),
                              _rand_color(rng, [(120, 160, 190), (60, 100, 140), (200, 200, 200)], 30),
                              yaw=rng.uniform(0, 3)))
    return [o]


def bin_(rng: np.random.Generator, x: float, y: float, overflowing: bool) -> list[Obj]:
    """A wheelie bin or a round bin; overflowing bins carry bags above the lid and around."""
    o = Obj("overflowing_bin" if overflowing else "garbage_bin")
    col = _rand_color(rng, [(40, 120, 40), (140, 80, 20), (80, 80, 80), (30, 60, 180), (40, 160, 200)])
    h = rng.uniform(0.9, 1.2)
    if rng.uniform() < 0.6:
        o.parts.append(cuboid(x, y, 0, rng.uniform(0.55, 0.8), rng.uniform(0.6, 0.8), h, col))
    else:
        o.parts.append(cylinder(x, y, 0, rng.uniform(0.3, 0.4), h, col))
    if overflowing:
        for _ in range(int(rng.integers(2, 6))):
            r = rng.uniform(0.2, 0.35)
            o.parts.append(ellipsoid(x + rng.uniform(-0.3, 0.3), y + rng.uniform(-0.3, 0.3), h + r * 0.5,
                                     r, r, r * 0.8, _rand_color(rng, BAG), 18))
        for _ in range(int(rng.integers(0, 4))):
            r = rng.uniform(0.15, 0.3)
            o.parts.append(ellipsoid(x + rng.uniform(-0.9, 0.9), y + rng.uniform(-0.5, 0.5), r * 0.8,
                                     r, r, r * 0.8, _rand_color(rng, BAG), 18))
    return [o]


def car(rng: np.random.Generator, x: float, y: float) -> Obj:
    """A parked or passing car (distractor for trucks)."""
    o = Obj(None)
    col = _rand_color(rng, [(230, 230, 230), (30, 30, 30), (150, 150, 150), (40, 40, 160), (160, 60, 30)])
    o.parts.append(cuboid(x, y, 0.25, 1.8, 4.4, 0.8, col))
    o.parts.append(cuboid(x, y - 0.2, 1.05, 1.6, 2.2, 0.55, (60, 60, 60)))
    return o


def bench_or_tree(rng: np.random.Generator, x: float, y: float) -> Obj:
    """Street furniture: a bench or a tree."""
    o = Obj(None)
    if rng.uniform() < 0.5:
        o.parts.append(cuboid(x, y, 0.4, 1.6, 0.5, 0.08, (40, 70, 110)))
        o.parts.append(cuboid(x, y + 0.22, 0.48, 1.6, 0.06, 0.45, (40, 70, 110)))
    else:
        o.parts.append(cylinder(x, y, 0, 0.12, 2.6, (40, 60, 80), n=8))
        o.parts.append(ellipsoid(x, y, 3.4, 1.3, 1.3, 1.0, _rand_color(rng, [(50, 120, 50), (40, 90, 40)]), 20))
    return o


@dataclass(frozen=True)
class Layout:
    """Where the street is, relative to the camera."""

    road_x: float
    road_w: float
    walk_w: float


def sample_camera(rng: np.random.Generator, width: int, height: int) -> Camera:
    """Draw an elevated wide-angle street camera."""
    return Camera(width=width, height=height, cam_height=float(rng.uniform(3.0, 8.0)),
                  pitch_deg=float(rng.uniform(12, 35)), hfov_deg=float(rng.uniform(55, 95)),
                  yaw_deg=float(rng.uniform(-20, 20)))


def sample_palette(rng: np.random.Generator) -> dict[str, Color]:
    """Draw colours of road, pavement, kerb, facade and sky."""
    g = int(rng.integers(70, 130))
    return {
        "road": (g, g, g + int(rng.integers(-5, 6))),
        "walk": _rand_color(rng, [(150, 150, 160), (110, 120, 150), (170, 170, 170), (90, 100, 130)]),
        "kerb": (190, 190, 190),
        "wall": _rand_color(rng, [(170, 180, 190), (120, 140, 180), (200, 200, 200), (90, 110, 140)], 30),
        "window": _rand_color(rng, [(90, 70, 50), (140, 120, 100)]),
        "shop": _rand_color(rng, BRIGHT, 30),
        "sky": _rand_color(rng, [(235, 210, 180), (220, 220, 220), (200, 180, 170)]),
    }


def populate(rng: np.random.Generator, cam: Camera, lay: Layout, focus: str | None = None) -> list[Obj]:
    """Place violations and distractors on the street as seen by ``cam``."""
    near, far = cam.ground_visible_y()
    far = min(far, near + 35)
    objs: list[Obj] = []
    taken: list[tuple[float, float, float]] = []

    def spot(xlo: float, xhi: float, radius: float) -> tuple[float, float] | None:
        for _ in range(20):
            y = float(rng.uniform(near + 1.0, far))
            half_w = y * math.tan(math.radians(cam.hfov_deg) / 2) * 0.9
            lo, hi = max(xlo, -half_w), min(xhi, half_w)
            if lo >= hi:
                continue
            x = float(rng.uniform(lo, hi))
            if all(math.hypot(x - tx, y - ty) > radius + tr for tx, ty, tr in taken):
                taken.append((x, y, radius))
                return x, y
        return None

    road_l, road_r = lay.road_x - lay.road_w / 2, lay.road_x + lay.road_w / 2
    walk = (road_r + 0.6, road_r + lay.walk_w - 0.6)
    far_walk = (road_l - lay.walk_w, road_l - 0.6)
    wanted = {
        "street_stall": rng.poisson(1.0), "barbecue": rng.poisson(0.7), "truck": rng.poisson(0.8),
        "garbage": rng.poisson(0.9), "bin": rng.poisson(0.9),
    }
    if focus:
        wanted[focus] = wanted.get(focus, 0) + 1
    for kind, count in wanted.items():
        for _ in range(int(count)):
            if kind == "truck":
                s = spot(road_l + 1.3, road_r - 1.3, 4.0)
                if s:
                    objs += truck(rng, *s, load=str(rng.choice(["uncovered", "uncovered", "covered", "empty"])))
                continue
            side = walk if rng.uniform() < 0.7 else far_walk
            s = spot(side[0], side[1], 1.8)
            if not s:
                continue
            if kind == "street_stall":
                objs += street_stall(rng, *s)
            elif kind == "barbecue":
                objs += barbecue(rng, *s, smoke=rng.uniform() < 0.75)
            elif kind == "garbage":
                objs += garbage_pile(rng, *s)
            else:
                objs += bin_(rng, *s, overflowing=rng.uniform() < 0.5)
    for _ in range(int(rng.integers(0, 6))):
        s = spot(road_l - lay.walk_w, road_r + lay.walk_w, 0.5)
        if s:
            objs.append(person(rng, *s))
    for _ in range(int(rng.integers(0, 4))):
        s = spot(road_l + 1, road_r - 1, 2.5)
        if s:
            objs.append(car(rng, *s))
    for _ in range(int(rng.integers(0, 3))):
        s = spot(*walk, 1.0)
        if s:
            objs.append(bench_or_tree(rng, *s))
    return objs


def _distort_points(pts: npt.NDArray[np.float64], w: int, h: int, k1: float) -> npt.NDArray[np.float64]:
    """Map undistorted pixel points to where barrel distortion ``k1`` moves them."""
    f = max(w, h) / 2
    n = (pts - [w / 2, h / 2]) / f
    out = n.copy()
    for _ in range(8):  # invert src = dst * (1 + k1 r^2) by fixed-point iteration
        r2 = (out**2).sum(axis=1, keepdims=True)
        out = n / (1 + k1 * r2)
    return out * f + [w / 2, h / 2]


def randomise(img: Image, boxes: list[tuple[str, Box]], rng: np.random.Generator
              ) -> tuple[Image, list[tuple[str, Box]], list[str]]:
    """Apply domain randomisation; returns the image, boxes and tags (e.g. ``night``)."""
    tags: list[str] = []
    h, w = img.shape[:2]
    out = img.astype(np.float32)
    mode = rng.uniform()
    if mode < 0.18:  # night infrared: greyscale, flat contrast, blooming lights
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
        grey = grey * rng.uniform(0.5, 0.9) + rng.uniform(10, 50)
        out = np.repeat(grey[..., None], 3, axis=2)
        tags.append("night")
    elif mode < 0.3:  # dusk / street lights
        out = out * rng.uniform(0.35, 0.6) + np.array([0, 10, 30], np.float32)
        tags.append("dusk")
    else:
        out = out * rng.uniform(0.75, 1.25) + rng.uniform(-20, 20)
        out = out * np.array([rng.uniform(0.9, 1.1) for _ in range(3)], np.float32)
    if rng.uniform() < 0.15:  # rain streaks
        streak = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(200, 600))):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            ln = int(rng.integers(5, 20))
            cv2.line(streak, (x0, y0), (x0 + ln // 4, y0 + ln), (60,), 1)
        out = out * 0.85 + streak[..., None].astype(np.float32)
        tags.append("rain")
    if rng.uniform() < 0.3:
        k = int(rng.choice([3, 5]))
        out = np.asarray(cv2.GaussianBlur(out, (k, k), 0), np.float32)
    out = out + rng.normal(0, rng.uniform(1, 8), out.shape).astype(np.float32)
    img = np.clip(out, 0, 255).astype(np.uint8)
    if rng.uniform() < 0.3:  # barrel distortion of a wide lens
        k1 = float(rng.uniform(0.03, 0.12))
        f = max(w, h) / 2
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        nx, ny = (xs - w / 2) / f, (ys - h / 2) / f
        r2 = nx**2 + ny**2
        img = np.asarray(cv2.remap(img, nx * (1 + k1 * r2) * f + w / 2, ny * (1 + k1 * r2) * f + h / 2,
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), np.uint8)
        new_boxes = []
        for name, (x1, y1, x2, y2) in boxes:
            edge = np.linspace(0, 1, 9)
            pts = np.concatenate([np.stack([x1 + (x2 - x1) * edge, np.full(9, y1)], 1),
                                  np.stack([x1 + (x2 - x1) * edge, np.full(9, y2)], 1),
                                  np.stack([np.full(9, x1), y1 + (y2 - y1) * edge], 1),
                                  np.stack([np.full(9, x2), y1 + (y2 - y1) * edge], 1)])
            d = _distort_points(pts, w, h, k1)
            new_boxes.append((name, (float(max(0, d[:, 0].min())), float(max(0, d[:, 1].min())),
                                     float(min(w, d[:, 0].max())), float(min(h, d[:, 1].max())))))
        boxes = new_boxes
    q = int(rng.integers(25, 92))  # compression, as a camera stream would deliver
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
    if ok:
        img = np.asarray(cv2.imdecode(enc, cv2.IMREAD_COLOR), np.uint8)
    return img, boxes, tags


RENDERERS = ("auto", "gl", "cpu")


def resolve_renderer(name: str = "auto") -> str:
    """Return ``gl`` or ``cpu`` for a requested renderer.

    ``auto`` takes the OpenGL renderer where an EGL driver exists (Mesa's llvmpipe on a CPU
    counts) and falls back, with a warning, to the painter's renderer of :mod:`datasets.render`.

    Raises:
        RendererUnavailable: ``gl`` was asked for and no OpenGL context can be made.
    """
    if name not in RENDERERS:
        raise ValueError(f"unknown renderer {name!r}; choose from {', '.join(RENDERERS)}")
    if name == "cpu":
        return "cpu"
    try:
        get_renderer()
        return "gl"
    except RendererUnavailable as exc:
        if name == "gl":
            raise
        log.warning("OpenGL renderer unavailable (%s); using the painter's renderer", exc)
        return "cpu"


def draw(img: Image, cam: Camera, objs: list[Obj], rng: np.random.Generator, renderer: str = "gl",
         light: Light | None = None) -> list[tuple[str, Box]]:
    """Draw ``objs`` onto ``img`` with the chosen renderer (``gl`` or ``cpu``); returns label boxes."""
    if renderer == "gl":
        return get_renderer().draw(img, cam, objs, rng, light)
    return draw_objects(img, cam, objs, rng)


def render_scene(rng: np.random.Generator, width: int = 640, height: int = 384, focus: str | None = None,
                 renderer: str = "cpu") -> tuple[Image, list[tuple[str, Box]], list[str]]:
    """Render one randomised street image with its label boxes and tags (``renderer``: gl or cpu)."""
    cam = sample_camera(rng, width, height)
    lay = Layout(road_x=float(rng.uniform(-6, 2)), road_w=float(rng.uniform(6, 14)), walk_w=float(rng.uniform(3, 7)))
    bg = render_background(cam, rng, lay.road_x, lay.road_w, lay.walk_w, sample_palette(rng))
    objs = populate(rng, cam, lay, focus)
    light = Light.sample(rng) if renderer == "gl" else None
    boxes = draw(bg, cam, objs, rng, renderer, light)
    return randomise(bg, boxes, rng)


def write_yolo_dataset(out: Path, n: int, seed: int, val_fraction: float = 0.15,
                       width: int = 640, height: int = 384, renderer: str = "auto") -> Path:
    """Render ``n`` images into a YOLO dataset folder with the canonical label map.

    ``renderer``: ``auto`` (OpenGL where available, else the painter's), ``gl`` or ``cpu``.

    A folder that already holds a finished render of the same settings and renderer code (``render_stamp.json``)
    is reused as it is; any other render there (its ``images/`` and ``labels/``) is replaced.

    Returns:
        The path of the written ``data.yaml``.
    """
    renderer = resolve_renderer(renderer)
    stamp = render_stamp(n, seed, val_fraction, width, height, renderer)
    data_yaml = out / "data.yaml"
    if data_yaml.exists() and _read_stamp(out) == stamp:
        log.info("synth: %s already holds these %d renders (same settings and renderer code); reused", out, n)
        return data_yaml
    (out / STAMP_FILE).unlink(missing_ok=True)
    for folder in ("images", "labels"):  # another render's images would stay beside these
        shutil.rmtree(out / folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    index = {name: i for i, name in enumerate(CANONICAL_LABELS)}
    focus_cycle = ["street_stall", "barbecue", "truck", "garbage", "bin", None]
    tags_out: dict[str, list[str]] = {}
    for i in range(n):
        split = "val" if (i % max(1, round(1 / val_fraction))) == 0 else "train"
        img, boxes, tags = render_scene(rng, width, height, focus_cycle[i % len(focus_cycle)], renderer)
        stem = f"synth_{seed}_{i:06d}"
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / "images" / split / f"{stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        lines = []
        for name, (x1, y1, x2, y2) in boxes:
            cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
            lines.append(f"{index[name]} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
        (out / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        tags_out[stem] = tags
        if (i + 1) % 200 == 0:
            log.info("synth: %d/%d images", i + 1, n)
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CANONICAL_LABELS))
    data_yaml.write_text(f"train: images/train\nval: images/val\nnames:\n{names}\n")
    (out / "tags.json").write_text(json.dumps(tags_out))
    (out / "README.md").write_text(
        f"Synthetic street-camera scenes rendered by `streetwatch synth --n {n} --seed {seed} --renderer {renderer}` "
        "(datasets/render_gl.py or datasets/render.py, datasets/synth.py). Generated by this project; "
        "no third-party content.\n")
    (out / STAMP_FILE).write_text(json.dumps(stamp))  # last: a render stopped midway is never reused
    return data_yaml


STAMP_FILE = "render_stamp.json"


def render_stamp(n: int, seed: int, val_fraction: float, width: int, height: int, renderer: str) -> dict[str, object]:
    """What decides a rendered dataset: its settings and the SHA-256 of the renderer's source code."""
    code = hashlib.sha256()
    for module in ("synth.py", "render.py", "render_gl.py"):
        code.update((Path(__file__).parent / module).read_bytes())
    return {"n": n, "seed": seed, "val_fraction": val_fraction, "width": width, "height": height,
            "renderer": renderer, "code_sha256": code.hexdigest()}


def _read_stamp(out: Path) -> object:
    try:
        return json.loads((out / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None
